"""The authorize-before-use pipeline: the one place its eight steps are composed.

Request (:class:`ComputeRequest`) → authenticate → policy decision → consent
check per owner → the decision on the ledger (:class:`DecisionRecord`, before
any data agent is asked) → jobs whose data agents contribute signed,
encrypted inputs (:class:`AgentStatement`) → the release step → the result,
its hash on the ledger. See ``docs/pipeline.md`` for the protocol.
"""

from exchange.pipeline.request import (
    ENGINE_OF,
    ComputeRequest,
    EngineName,
    InvalidRequestError,
    Parameters,
    Reduce,
)
from exchange.pipeline.statements import (
    CONTRIBUTION_KIND,
    DECISION_EVENT,
    REFUSAL_KIND,
    AgentStatement,
    DecisionRecord,
    LeftOut,
    Participant,
    StatementError,
    new_job_id,
)

__all__ = [
    "CONTRIBUTION_KIND",
    "DECISION_EVENT",
    "ENGINE_OF",
    "REFUSAL_KIND",
    "AgentStatement",
    "ComputeRequest",
    "DecisionRecord",
    "EngineName",
    "InvalidRequestError",
    "LeftOut",
    "Parameters",
    "Participant",
    "Reduce",
    "StatementError",
    "new_job_id",
]
