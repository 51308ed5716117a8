"""Consent fixtures: a real SQLite database, the real SQL ledger, real Ed25519 keys."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import ledger
from consent import (
    Classification,
    ConsentConfig,
    ConsentReceipt,
    ConsentRecord,
    ConsentRequest,
    ConsentService,
    DatasetScope,
    Engine,
    Operation,
    Purpose,
    Requester,
    RequesterProfile,
    Revocation,
    SignedReceipt,
    SignedRevocation,
    StaticDirectory,
    new_consent_id,
)
from core.db import Database, migrate
from core.keys import Ed25519Signer
from exchange.runtime import MIGRATION_BRANCHES

ORIGIN = "test.ibx.localhost/ledger"
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


@dataclass
class ExchangeClock:
    """The exchange's clock in tests: a real clock the test sets and advances (no mock)."""

    time: datetime = T0

    def __call__(self) -> datetime:
        return self.time

    def set(self, when: datetime) -> None:
        self.time = when


@dataclass
class World:
    """A consent service with enterprises ``ent-0..`` (dataset ``ent-N.energy``) and requesters."""

    db: Database
    ledger: ledger.Ledger
    directory: StaticDirectory
    service: ConsentService
    clock: ExchangeClock
    keys: dict[str, Ed25519Signer] = field(default_factory=dict)

    def add_enterprise(self, name: str, *, industry: str = "battery") -> Ed25519Signer:
        signer = Ed25519Signer.generate(name)
        self.keys[name] = signer
        self.directory.add_enterprise(name, signer.public_key)
        self.directory.add_requester(RequesterProfile(name, "enterprise", industry))
        self.service.catalog.register(
            f"{name}.energy",
            owner=name,
            fields=["energy_kwh", "output_units", "emissions_t"],
            classification=Classification.IMPORTANT,
            now=T0 - timedelta(days=30),
        )
        return signer

    def receipt(self, enterprise: str, **overrides: Any) -> ConsentReceipt:
        base = ConsentReceipt(
            consent_id=new_consent_id(),
            origin=ORIGIN,
            enterprise=enterprise,
            public_key=self.keys[enterprise].public_key,
            scope=(DatasetScope(f"{enterprise}.energy", ("energy_kwh", "output_units")),),
            requester=Requester.group("subbrain", "battery"),
            purposes=(Purpose.BENCHMARKING, Purpose.INDUSTRY_MONITORING),
            operations=(Operation.MEAN, Operation.COUNT),
            engines=(Engine.HE, Engine.MPC),
            min_cohort=1,
            valid_from=T0 - timedelta(days=1),
            valid_until=T0 + timedelta(days=30),
            signed_at=T0 - timedelta(days=1),
        )
        return replace(base, **overrides)

    def sign(self, receipt: ConsentReceipt, signer: Ed25519Signer | None = None) -> SignedReceipt:
        key = signer or self.keys[receipt.enterprise]
        return SignedReceipt(receipt, key.sign(receipt.canonical()))

    def grant(self, enterprise: str, **overrides: Any) -> ConsentRecord:
        signed = self.sign(self.receipt(enterprise, **overrides))
        return self.service.grant(signed, actor=enterprise)

    def revocation(self, record: ConsentRecord, **overrides: Any) -> SignedRevocation:
        enterprise = record.enterprise
        revocation = Revocation(
            consent_id=record.consent_id,
            origin=ORIGIN,
            enterprise=enterprise,
            public_key=self.keys[enterprise].public_key,
            signed_at=T0,
        )
        revocation = replace(revocation, **overrides)
        return SignedRevocation(
            revocation, self.keys[revocation.enterprise].sign(revocation.canonical())
        )

    def request(self, *enterprises: str, **overrides: Any) -> ConsentRequest:
        base = ConsentRequest(
            requester="sb-battery",
            purpose=Purpose.BENCHMARKING,
            operation=Operation.MEAN,
            engine=Engine.HE,
            datasets=tuple(f"{e}.energy" for e in enterprises),
            fields=("energy_kwh",),
        )
        return replace(base, **overrides)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    db = Database(f"sqlite:///{tmp_path / 'consent.db'}")
    migrate(db, MIGRATION_BRANCHES)
    led = ledger.Ledger(
        ledger.SqlLedgerBackend(db),
        Ed25519Signer.generate("ledger"),
        ledger.LedgerConfig(origin=ORIGIN),
    )
    directory = StaticDirectory()
    directory.add_requester(RequesterProfile("sb-battery", "subbrain", "battery"))
    directory.add_requester(RequesterProfile("sb-steel", "subbrain", "steel"))
    clock = ExchangeClock()
    service = ConsentService(
        db, led, directory, directory, ConsentConfig(origin=ORIGIN), clock=clock
    )
    w = World(db, led, directory, service, clock)
    for i in range(3):
        w.add_enterprise(f"ent-{i}")
    yield w
    db.dispose()
