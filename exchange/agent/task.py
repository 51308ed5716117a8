"""A task as the exchange hands it to a data agent (``GET /v1/agent/tasks``).

``{"job_id", "round", "decision_index", "engine", "request", "dataset",
"consent_id", "deadline", "material"}`` (docs/pipeline.md). Nothing in a task
is believed: the agent checks every member that matters against the decision
it reads from the ledger itself (:mod:`exchange.agent.verify`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.canonical import JsonValue
from core.clock import parse_rfc3339
from exchange.agent.errors import TaskRefused
from exchange.pipeline.request import ComputeRequest, EngineName, InvalidRequestError

__all__ = ["Task"]


@dataclass(frozen=True)
class Task:
    """One round of one job that the exchange asks this enterprise to answer."""

    job_id: str
    round: int
    decision_index: int
    engine: EngineName
    request: ComputeRequest
    dataset: str
    consent_id: str
    deadline: datetime | None
    material: Mapping[str, JsonValue]

    @property
    def label(self) -> str:
        """``job_... round r`` for the agent's output lines."""
        return f"{self.job_id} round {self.round}"

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Task:
        """Decode a task as listed by the exchange.

        Raises:
            TaskRefused: malformed (the job id, when readable, is in ``obj``).
        """
        try:
            request = obj["request"]
            material = obj["material"]
            if not isinstance(request, dict) or not isinstance(material, dict):
                raise TypeError("request and material must be objects")
            deadline = obj.get("deadline")
            round_no, index = obj["round"], obj["decision_index"]
            for value in (round_no, index):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise TypeError("round and decision_index must be non-negative integers")
            return cls(
                job_id=str(obj["job_id"]),
                round=round_no,
                decision_index=index,
                engine=EngineName(str(obj["engine"])),
                request=ComputeRequest.from_dict(request),
                dataset=str(obj["dataset"]),
                consent_id=str(obj["consent_id"]),
                deadline=None if deadline is None else parse_rfc3339(str(deadline)),
                material=material,
            )
        except (KeyError, TypeError, ValueError, InvalidRequestError) as exc:
            raise TaskRefused(f"the task is malformed: {exc}") from exc
