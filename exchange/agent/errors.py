"""What can go wrong for a data agent, and what each outcome means::

    IbxError
    └── AgentError                 the agent cannot go on as configured
        ├── TaskRefused            this task is refused, with the reason sent back signed
        │   └── SourceError        the data source cannot give what the task needs
        ├── LedgerAlarm            the ledger is not consistent with what the agent saw
        │                          before: every task is refused until an operator looks
        └── AwaitingWitnesses      (``--witness-quorum``) the task's decision is on the
                                   served ledger but no checkpoint covering it carries the
                                   quorum yet: the task waits, neither refused nor answered

A :class:`TaskRefused` never stops the agent: it becomes a signed refusal
(``ibx.refusal/v1``) and a journal line. A :class:`LedgerAlarm` is louder: the
agent keeps both checkpoints as evidence in its state dir and refuses every
task while the alarm file is there.
"""

from __future__ import annotations

from core.errors import IbxError

__all__ = ["AgentError", "AwaitingWitnesses", "LedgerAlarm", "SourceError", "TaskRefused"]


class AgentError(IbxError):
    """Root of the data agent's errors."""

    title = "data agent error"


class TaskRefused(AgentError):  # noqa: N818 - a verdict the agent signs, not a malfunction
    """The agent will not take part in this task; ``str(exc)`` is the reason it signs."""

    title = "task refused"


class SourceError(TaskRefused):
    """The source cannot be opened, lacks a column, or holds a non-number where one is needed."""

    title = "data source error"


class LedgerAlarm(AgentError):  # noqa: N818 - named for what the operator sees
    """The exchange's ledger was rolled back, forked or rewritten since the kept checkpoint."""

    title = "ledger inconsistent with the kept checkpoint"


class AwaitingWitnesses(AgentError):  # noqa: N818 - a state the task is in, not a failure
    """Entry ``index`` a task needs lies beyond every checkpoint the witness quorum
    cosigned (though on the served, verified ledger): the task waits for a witness."""

    title = "waiting for witness cosignatures"

    def __init__(self, index: int, quorum: int, what: str = "decision") -> None:
        plural = "" if quorum == 1 else "s"
        super().__init__(
            f"waiting for {quorum} witness cosignature{plural} on a checkpoint covering "
            f"{what} #{index}"
        )
        self.index = index
        self.quorum = quorum
