"""What can go wrong for a data agent, and what each outcome means::

    IbxError
    └── AgentError                 the agent cannot go on as configured
        ├── TaskRefused            this task is refused, with the reason sent back signed
        │   └── SourceError        the data source cannot give what the task needs
        └── LedgerAlarm            the ledger is not consistent with what the agent saw
                                   before: every task is refused until an operator looks

A :class:`TaskRefused` never stops the agent: it becomes a signed refusal
(``ibx.refusal/v1``) and a journal line. A :class:`LedgerAlarm` is louder: the
agent keeps both checkpoints as evidence in its state dir and refuses every
task while the alarm file is there.
"""

from __future__ import annotations

from core.errors import IbxError

__all__ = ["AgentError", "LedgerAlarm", "SourceError", "TaskRefused"]


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
