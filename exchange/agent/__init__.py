"""The data agent an enterprise runs on its own machine (``ibx agent``).

It long-polls the exchange for tasks; for each it checks, before reading any
data, the decision on the ledger under the ledger key it was given and its
own signed consent (:mod:`exchange.agent.verify`); only then reads the
request's fields from its source (:mod:`exchange.agent.sources`) and
contributes ciphertexts, sealed shares or blinded items signed with the
enterprise's key (:mod:`exchange.agent.contribute`), or sends a signed
refusal with the reason. Its state dir keeps the journal, the last verified
checkpoint and any rank tags (:mod:`exchange.agent.journal`).
"""

from exchange.agent.assemble import assemble_agent
from exchange.agent.contribute import Contribution, Contributor
from exchange.agent.errors import AgentError, LedgerAlarm, SourceError, TaskRefused
from exchange.agent.journal import AgentState, Journal
from exchange.agent.loop import AgentConfig, AgentStopped, DataAgent
from exchange.agent.reads import ExchangeReads, VerifierReads
from exchange.agent.sources import (
    ColumnMap,
    CsvSource,
    EdgeSource,
    FieldReader,
    Source,
    SqlSource,
    open_source,
    parse_column_options,
)
from exchange.agent.task import Task
from exchange.agent.verify import Authorization, TaskVerifier, check_consent, check_decision

__all__ = [
    "AgentConfig",
    "AgentError",
    "AgentState",
    "AgentStopped",
    "Authorization",
    "ColumnMap",
    "Contribution",
    "Contributor",
    "CsvSource",
    "DataAgent",
    "EdgeSource",
    "ExchangeReads",
    "FieldReader",
    "Journal",
    "LedgerAlarm",
    "Source",
    "SourceError",
    "SqlSource",
    "Task",
    "TaskRefused",
    "TaskVerifier",
    "VerifierReads",
    "assemble_agent",
    "check_consent",
    "check_decision",
    "open_source",
    "parse_column_options",
]
