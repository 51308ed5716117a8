"""A deployment with enterprises, their keys, datasets and consents, and a sub-brain.

Real parts only: a data dir with its SQLite database, the ledger, the policy
pack, the consent service; the tests call the HTTP API in-process
(:meth:`exchange.client.ExchangeClient.local`) and play the data agents with
the real HE contributor and signed :class:`exchange.pipeline.AgentStatement`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import mpc
from consent import (
    Classification,
    ConsentReceipt,
    DatasetScope,
    Engine,
    EnterpriseKey,
    Operation,
    Purpose,
    Requester,
    Revocation,
    new_consent_id,
)
from core.clock import utcnow
from exchange.client import ExchangeClient
from exchange.identities import Role
from exchange.pipeline import CONTRIBUTION_KIND, REFUSAL_KIND, AgentStatement
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.identities import bootstrap, register

LB = "lithium-battery"
NM = "new-materials"


@dataclass
class World:
    """The deployment and everyone's credentials."""

    runtime: Runtime
    root: Path
    tokens: dict[str, str] = field(default_factory=dict)
    keys: dict[str, EnterpriseKey] = field(default_factory=dict)
    consents: dict[str, str] = field(default_factory=dict)

    clients: dict[str, ExchangeClient] = field(default_factory=dict)

    @contextmanager
    def client(self, who: str) -> Iterator[ExchangeClient]:
        """``who``'s client (one app per identity, built once: the CLI builds one per run)."""
        made = self.clients.get(who)
        if made is None:
            made = ExchangeClient.local(self.runtime, token=self.tokens[who])
            self.clients[who] = made
        yield made

    def enterprise(
        self,
        name: str,
        *,
        industry: str = LB,
        classification: Classification = Classification.GENERAL,
        fields: Sequence[str] = ("energy_kwh", "output_units"),
    ) -> None:
        rt = self.runtime
        self.tokens[name] = rt.identities.create(name, Role.ENTERPRISE, industry=industry).token
        key = EnterpriseKey.generate(self.root / f"{name}.key")
        self.keys[name] = key
        rt.identities.set_public_key(name, key.signer.public_key, actor=name)
        rt.consents.catalog.register(
            f"{name}.energy",
            owner=name,
            fields=fields,
            classification=classification,
            now=utcnow(),
        )

    def consent(
        self,
        name: str,
        *,
        operations: Sequence[Operation] = (Operation.MEAN,),
        fields: Sequence[str] = ("energy_kwh",),
        min_cohort: int = 1,
        industry: str = LB,
    ) -> str:
        signer = self.keys[name].signer
        now = utcnow()
        signed = ConsentReceipt(
            consent_id=new_consent_id(),
            origin=self.runtime.settings.ledger_origin,
            enterprise=name,
            public_key=signer.public_key,
            scope=(DatasetScope(f"{name}.energy", tuple(fields)),),
            requester=Requester.group("subbrain", industry),
            purposes=(Purpose.BENCHMARKING,),
            operations=tuple(operations),
            engines=(Engine.HE, Engine.MPC, Engine.PSI),
            min_cohort=min_cohort,
            valid_from=now - timedelta(seconds=1),
            valid_until=now + timedelta(days=30),
            signed_at=now,
        ).sign(signer)
        record = self.runtime.consents.grant(signed, actor=name)
        self.consents[name] = record.consent_id
        return record.consent_id

    def revoke(self, name: str) -> None:
        signer = self.keys[name].signer
        revocation = Revocation(
            consent_id=self.consents[name],
            origin=self.runtime.settings.ledger_origin,
            enterprise=name,
            public_key=signer.public_key,
            reason="test",
            signed_at=utcnow(),
        ).sign(signer)
        self.runtime.consents.revoke(revocation, actor=name)

    def submit(self, who: str = "sb-lb", **request: Any) -> dict[str, Any]:
        body = {"purpose": "benchmarking", "operation": "mean", "fields": ["energy_kwh"]}
        body.update(request)
        with self.client(who) as client:
            answer: dict[str, Any] = client.post("/v1/requests", body)
        return answer

    def job(self, job_id: str, who: str = "sb-lb") -> dict[str, Any]:
        with self.client(who) as client:
            answer: dict[str, Any] = client.get(f"/v1/jobs/{job_id}")
        return answer

    def wait_state(
        self, job_id: str, states: Sequence[str], timeout: float = 20.0
    ) -> dict[str, Any]:
        until = time.monotonic() + timeout
        while True:
            view = self.job(job_id)
            if view["state"] in states or time.monotonic() > until:
                return view
            time.sleep(0.02)

    def tasks(self, name: str, wait: float = 0) -> list[dict[str, Any]]:
        with self.client(name) as client:
            answer: list[dict[str, Any]] = client.get("/v1/agent/tasks", wait=wait)["tasks"]
        return answer

    def he_body(
        self,
        name: str,
        task: dict[str, Any],
        values: Sequence[float],
        *,
        signer_of: str | None = None,
    ) -> dict[str, Any]:
        """What ``name``'s agent sends for an HE task (signed by ``signer_of``'s key)."""
        with self.client(name) as client:
            context = client.call("GET", f"/v1/agent/jobs/{task['job_id']}/he-context").content
        spec = mpc.HeJobSpec.from_dict(task["material"]["spec"])
        public = mpc.HeJobPublic(spec, context)
        assert public.key_fingerprint == task["material"]["context_sha256"]
        contribution = mpc.HeContributor(public).encrypt(name, list(values))
        statement = AgentStatement(
            CONTRIBUTION_KIND, task["job_id"], name, task["round"], contribution.digest
        )
        return {
            "statement": statement.to_dict(),
            "signature": statement.sign(self.keys[signer_of or name].signer),
            "payload": {
                "key_fingerprint": contribution.key_fingerprint,
                "chunks": [base64.b64encode(c).decode() for c in contribution.chunks],
            },
        }

    def post_answer(
        self, name: str, job_id: str, body: dict[str, Any], kind: str = "contributions"
    ) -> Any:
        with self.client(name) as client:
            return client.call("POST", f"/v1/agent/jobs/{job_id}/{kind}", json=body)

    def refusal_body(self, name: str, job_id: str, reason: str = "not today") -> dict[str, Any]:
        statement = AgentStatement(REFUSAL_KIND, job_id, name, 1, reason=reason)
        return {
            "statement": statement.to_dict(),
            "signature": statement.sign(self.keys[name].signer),
        }


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    runtime = Runtime(Settings(data_dir=initialised(tmp_path / "data")))
    made = World(runtime, tmp_path)
    bootstrap(runtime)
    made.tokens["sb-lb"] = runtime.identities.create("sb-lb", Role.SUBBRAIN, industry=LB).token
    made.tokens["sb-nm"] = runtime.identities.create("sb-nm", Role.SUBBRAIN, industry=NM).token
    made.tokens["aud"] = register(runtime, "aud", Role.AUDITOR).token
    made.tokens["ops"] = register(runtime, "ops", Role.SYSADMIN).token
    yield made
    for client in made.clients.values():
        client.close()
    runtime.close()
