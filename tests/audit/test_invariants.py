"""The invariants across entries (``audit.check_invariants``), on logs written by hand.

Each log is written through a real :class:`ledger.Ledger` (in-memory backend,
a clock that ticks one second per entry) by a :class:`Book` that makes every
statement as its real author would: receipts and revocations signed with the
enterprise's key in the published format (``consent.ConsentReceipt``), duties
signed with the officer's key (``core.duty``), payloads the typed entry
classes accept. The entries are parsed through the exchange's registry (as
``ibx audit verify`` does) and then checked. A clean story passes; each
scenario of the table adds what an operator holding the ledger key could
append, and the finding must name it. Hypothesis: for random interleavings of
uses and a revocation of one consent, a finding appears exactly at the uses
after the revocation or beyond the receipt's limit.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import ExportedEntry, Finding, ParsedEntry, check_invariants
from audit._parse import parse_entries
from consent import (
    ConsentReceipt,
    DatasetScope,
    Engine,
    Operation,
    Purpose,
    Requester,
    Revocation,
    new_consent_id,
)
from core.canonical import JsonValue, canonical_bytes
from core.clock import format_rfc3339
from core.duty import Duty
from core.events import Event
from core.keys import Ed25519Signer
from exchange.cli.audit_verify import entry_types
from exchange.pipeline.request import ComputeRequest
from ledger import Ledger, LedgerConfig, MemoryLedgerBackend

ORIGIN = "ibx.test/audit-invariants"
START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
VERSION = "a" * 64
OTHER_VERSION = "b" * 64


def _signer(name: str) -> Ed25519Signer:
    return Ed25519Signer(name, hashlib.sha256(f"audit-invariants:{name}".encode()).digest())


@dataclass
class Book:
    """A ledger and the statements its actors sign, one entry at a time."""

    ledger: Ledger
    clock: list[datetime]
    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls) -> Book:
        clock = [START]

        def tick() -> datetime:
            clock[0] += timedelta(seconds=1)
            return clock[0]

        log = Ledger(MemoryLedgerBackend(), _signer("ledger"), LedgerConfig(ORIGIN), clock=tick)
        return cls(log, clock)

    @property
    def now(self) -> datetime:
        return self.clock[0] + timedelta(seconds=1)  # the time the next entry gets

    def record(self, type_: str, actor: str, payload: dict[str, Any]) -> int:
        return self.ledger.record(Event(type_, actor, payload)).index

    def parsed(self) -> list[ParsedEntry]:
        size = self.ledger.size()
        leaves = [ExportedEntry(e.index, e.leaf_input) for e in self.ledger.entries(0, size)]
        parsed, findings = parse_entries(leaves, entry_types())
        assert findings == [], [f.line() for f in findings]
        return parsed

    def findings(self) -> list[Finding]:
        return check_invariants(self.parsed(), origin=ORIGIN)

    # -- identities ------------------------------------------------------------------------

    def duty(
        self,
        officer: str,
        action: str,
        subject: str,
        details: dict[str, JsonValue] | None = None,
        *,
        signer: Ed25519Signer | None = None,
    ) -> dict[str, JsonValue]:
        duty = Duty(ORIGIN, officer, action, subject, self.now, details or {})
        return duty.sign(signer or _signer(officer)).to_dict()

    def bootstrap(self, *names: str) -> None:
        for name in names:
            self.record(
                "identity.create",
                "ibx-init",
                self._create(name, "security_officer", _signer(name)) | {"bootstrap": True},
            )

    @staticmethod
    def _create(name: str, role: str, key: Ed25519Signer | None) -> dict[str, Any]:
        return {
            "name": name,
            "role": role,
            "industry": "lithium-battery" if role in ("enterprise", "subbrain") else None,
            "public_key": key.public_key.to_base64() if key else None,
            "token_expires_at": format_rfc3339(START + timedelta(days=90)),
        }

    def admin(self, name: str, role: str, *, by: str = "officer-1", duty: bool = True) -> None:
        payload = self._create(name, role, _signer(name))
        if duty:
            details: dict[str, JsonValue] = {
                "role": role,
                "public_key": _signer(name).public_key.to_base64(),
            }
            payload["duty"] = self.duty(by, "identity.create", name, details)
        self.record("identity.create", by, payload)

    def member(self, name: str, role: str = "enterprise") -> None:
        key = _signer(name) if role == "enterprise" else None
        self.record("identity.create", "sysadmin", self._create(name, role, key))

    # -- consents --------------------------------------------------------------------------

    def grant(
        self,
        enterprise: str,
        *,
        use_limit: int | None = None,
        min_cohort: int = 2,
        key: Ed25519Signer | None = None,
        edit: Callable[[dict[str, Any]], None] | None = None,
        consent_id: str | None = None,
    ) -> str:
        signer = key or _signer(enterprise)
        cid = consent_id or new_consent_id()
        signed = ConsentReceipt(
            consent_id=cid,
            origin=ORIGIN,
            enterprise=enterprise,
            public_key=signer.public_key,
            scope=(DatasetScope(f"{enterprise}.energy", ("energy_kwh",)),),
            requester=Requester.group("subbrain", "lithium-battery"),
            purposes=(Purpose.BENCHMARKING,),
            operations=(Operation.MEAN,),
            engines=(Engine.HE,),
            min_cohort=min_cohort,
            valid_from=START,
            valid_until=START + timedelta(days=30),
            use_limit=use_limit,
            signed_at=self.now,
        ).sign(signer)
        payload = signed.to_dict()
        receipt = dict(payload["receipt"])  # type: ignore[arg-type]
        if edit is not None:
            edit(receipt)
        self.receipts[cid] = {
            "consent_id": cid,
            "enterprise": enterprise,
            "receipt": receipt,
            "receipt_hash": hashlib.sha256(canonical_bytes(receipt)).hexdigest(),
            "signature": payload["signature"],
        }
        self.record("consent.grant", enterprise, self.receipts[cid])
        return cid

    def replay(self, cid: str) -> None:
        self.record("consent.grant", self.receipts[cid]["enterprise"], self.receipts[cid])

    def revoke(self, cid: str) -> None:
        enterprise = self.receipts[cid]["enterprise"]
        signer = _signer(enterprise)
        signed = Revocation(cid, ORIGIN, enterprise, signer.public_key, self.now).sign(signer)
        self.record(
            "consent.revoke",
            enterprise,
            {
                "consent_id": cid,
                "enterprise": enterprise,
                "revocation": signed.revocation.to_dict(),
                "receipt_hash": signed.receipt_hash(),
                "signature": signed.to_dict()["signature"],
            },
        )

    def _ref(self, cid: str) -> dict[str, Any]:
        grant = self.receipts[cid]
        return {
            "consent_id": cid,
            "enterprise": grant["enterprise"],
            "receipt_hash": grant["receipt_hash"],
        }

    def use(self, decision: str, *cids: str) -> None:
        self.record(
            "consent.use",
            "sb-lb",
            {
                "decision_id": decision,
                "request": {
                    "requester": "sb-lb",
                    "purpose": "benchmarking",
                    "operation": "mean",
                    "engine": "he",
                    "datasets": sorted(f"{self.receipts[c]['enterprise']}.energy" for c in cids),
                    "fields": ["energy_kwh"],
                    "time": None,
                },
                "checked_at": format_rfc3339(self.now),
                "consents": [self._ref(c) for c in cids],
            },
        )

    # -- policies --------------------------------------------------------------------------

    def step(
        self,
        step: str,
        officer: str,
        version: str = VERSION,
        *,
        proposer: str = "officer-1",
        approver: str = "officer-2",
        duty: dict[str, JsonValue] | None = None,
        previous: str | None = None,
    ) -> None:
        payload: dict[str, Any] = {
            "version": version,
            "officer": officer,
            "duty": duty or self.duty(officer, f"policy.{step}", version),
        }
        if step == "propose":
            payload["summary"] = {"rules": 1}
        elif step == "test":
            payload |= {"passed": True, "results": 1, "failed": [], "error": None, "coverage": None}
        elif step == "approve":
            payload |= {"proposer": proposer, "approver": officer}
        elif step == "activate":
            payload |= {
                "previous": previous,
                "rollback": False,
                "proposer": proposer,
                "approver": approver,
                "activator": officer,
            }
        self.record(f"policy.{step}", officer, payload)

    def four_eyes(self, version: str = VERSION, previous: str | None = None) -> None:
        self.step("propose", "officer-1", version)
        self.step("test", "officer-1", version)
        self.step("approve", "officer-2", version)
        self.step("activate", "officer-2", version, previous=previous)

    def allow(self, version: str | None = VERSION) -> None:
        self.record(
            "authz.decision",
            "sb-lb",
            {
                "role": "subbrain",
                "action": "request_submit",
                "resource": "job:*",
                "effect": "allow",
                "policy_version": version,
                "reasons": [],
            },
        )

    # -- jobs ------------------------------------------------------------------------------

    def decide(
        self,
        *cids: str,
        version: str = VERSION,
        min_cohort: int | None = None,
        count: bool = True,
    ) -> str:
        job_id = "job_" + uuid.uuid4().hex
        if count:
            self.use(job_id, *cids)
        owners = [self.receipts[c]["enterprise"] for c in cids]
        request = ComputeRequest(
            purpose=Purpose.BENCHMARKING,
            operation=Operation.MEAN,
            fields=("energy_kwh",),
            datasets=tuple(f"{o}.energy" for o in owners),
            engine="he",  # type: ignore[arg-type]
        )
        strictest = max(self.receipts[c]["receipt"]["min_cohort"] for c in cids)
        self.record(
            "pipeline.decision",
            "sb-lb",
            {
                "job_id": job_id,
                "requester": "sb-lb",
                "request": request.to_dict(),
                "request_sha256": request.digest(),
                "engine": "he",
                "policy_version": version,
                "participants": [
                    {
                        "enterprise": self.receipts[c]["enterprise"],
                        "dataset": f"{self.receipts[c]['enterprise']}.energy",
                        "consent_id": c,
                        "receipt_sha256": self.receipts[c]["receipt_hash"],
                        "min_cohort": self.receipts[c]["receipt"]["min_cohort"],
                        "public_key": self.receipts[c]["receipt"]["public_key"],
                    }
                    for c in cids
                ],
                "left_out": [],
                "min_cohort": strictest if min_cohort is None else min_cohort,
                "decided_at": format_rfc3339(self.now),
                "deadline": format_rfc3339(self.now + timedelta(minutes=5)),
            },
        )
        return job_id

    def move(self, job_id: str, before: str, to: str) -> None:
        self.record(
            "pipeline.job",
            "exchange",
            {"job_id": job_id, "requester": "sb-lb", "from": before, "state": to, "reason": None},
        )

    def decrypt(self, job_id: str, contributors: int = 2) -> None:
        self.record(
            "mpc.key.decrypt",
            "key-custodian",
            {
                "job_id": job_id,
                "key_fingerprint": "c" * 64,
                "cohort_sha256": "d" * 64,
                "contributors": contributors,
            },
        )

    def release(self, job_id: str, contributors: list[str], cohort: int | None = None) -> None:
        self.record(
            "pipeline.result",
            "exchange",
            {
                "job_id": job_id,
                "requester": "sb-lb",
                "result_sha256": "e" * 64,
                "cohort": len(contributors) if cohort is None else cohort,
                "contributors": contributors,
            },
        )

    def run(self, *cids: str, **decide: Any) -> str:
        """A whole HE job: decided, collecting, computing, decrypted once, released."""
        job_id = self.decide(*cids, **decide)
        self.move(job_id, "authorized", "collecting")
        self.move(job_id, "collecting", "computing")
        self.decrypt(job_id, len(cids))
        self.release(job_id, sorted(self.receipts[c]["enterprise"] for c in cids))
        self.move(job_id, "computing", "released")
        return job_id

    # -- certificates ----------------------------------------------------------------------

    def token(self, device: str, *, expires: timedelta = timedelta(hours=1)) -> None:
        self.record(
            "edge.token.create",
            "ent-a",
            {
                "enterprise": "ent-a",
                "device": device,
                "expires_at": format_rfc3339(self.now + expires),
            },
        )

    def issue(self, device: str, serial: str) -> None:
        self.record(
            "edge.certificate.issue",
            "ent-a",
            {
                "kind": "device",
                "serial": serial,
                "fingerprint": "f" * 64,
                "not_after": format_rfc3339(self.now + timedelta(days=30)),
                "enterprise": "ent-a",
                "device": device,
                "spiffe_id": f"spiffe://ibx.test/ent-a/{device}",
            },
        )

    def renew(self, device: str, previous: str, serial: str) -> None:
        self.record(
            "edge.certificate.renew",
            device,
            {
                "kind": "device",
                "serial": serial,
                "fingerprint": "f" * 64,
                "enterprise": "ent-a",
                "device": device,
                "spiffe_id": f"spiffe://ibx.test/ent-a/{device}",
                "not_after": format_rfc3339(self.now + timedelta(days=30)),
                "previous_serial": previous,
            },
        )

    def revoke_certificate(self, serial: str, *, by: str = "officer-1") -> None:
        self.record(
            "edge.certificate.revoke",
            by,
            {
                "serial": serial,
                "fingerprint": "f" * 64,
                "reason": "key-compromise",
                "enterprise": "ent-a",
                "device": "meter-1",
                "revoked_at": format_rfc3339(self.now),
                "line": [{"serial": serial, "fingerprint": "f" * 64}],
                "duty": self.duty(by, "certificate.revoke", serial, {"reason": "key-compromise"}),
            },
        )


@dataclass
class Story:
    """The clean story every scenario starts from, and what it made."""

    book: Book
    cids: dict[str, str]


def _story() -> Story:
    book = Book.open()
    book.bootstrap("officer-1", "officer-2")
    book.admin("aud", "auditor")
    for name in ("ent-a", "ent-b", "ent-c"):
        book.member(name)
    book.member("sb-lb", "subbrain")
    book.four_eyes()
    book.allow()
    cids = {name: book.grant(name, use_limit=3) for name in ("ent-a", "ent-b", "ent-c")}
    book.run(*cids.values())
    book.revoke(cids["ent-c"])
    book.run(cids["ent-a"], cids["ent-b"])
    book.token("meter-1")
    book.issue("meter-1", "1a")
    book.renew("meter-1", "1a", "1b")
    book.revoke_certificate("1b")
    return Story(book, cids)


@pytest.fixture
def story() -> Story:
    return _story()


def test_the_clean_story_has_no_finding(story: Story) -> None:
    assert [f.line() for f in story.book.findings()] == []


def _forged_key_grant(s: Story) -> None:
    s.book.grant("ent-a", key=_signer("not-ent-a"))


def _edited_receipt(s: Story) -> None:
    s.book.grant("ent-b", edit=lambda receipt: receipt.update(min_cohort=1))


def _other_origin(s: Story) -> None:
    s.book.grant("ent-b", edit=lambda receipt: receipt.update(origin="ibx.other/ledger"))


def _replayed_grant(s: Story) -> None:
    s.book.replay(s.cids["ent-c"])


def _use_after_revocation(s: Story) -> None:
    s.book.use("job_" + "0" * 32, s.cids["ent-c"])


def _use_beyond_limit(s: Story) -> None:
    s.book.use("job_" + "1" * 32, s.cids["ent-a"])  # the third use
    s.book.use("job_" + "2" * 32, s.cids["ent-a"])  # the fourth: the limit is 3


def _decision_on_revoked(s: Story) -> None:
    s.book.decide(s.cids["ent-c"], s.cids["ent-a"], count=False)


def _decision_uncounted(s: Story) -> None:
    s.book.decide(s.cids["ent-b"], count=False)


def _decision_old_version(s: Story) -> None:
    s.book.decide(s.cids["ent-b"], version=OTHER_VERSION)


def _allow_old_version(s: Story) -> None:
    s.book.allow(OTHER_VERSION)


def _decision_small_minimum(s: Story) -> None:
    s.book.decide(s.cids["ent-a"], s.cids["ent-b"], min_cohort=1)


def _release_small_cohort(s: Story) -> None:
    job = s.book.decide(s.cids["ent-a"], s.cids["ent-b"])
    s.book.move(job, "authorized", "collecting")
    s.book.move(job, "collecting", "computing")
    s.book.release(job, ["ent-a"])


def _decrypt_without_job(s: Story) -> None:
    s.book.decrypt("job_" + "3" * 32)


def _decrypt_refused_job(s: Story) -> None:
    job = s.book.decide(s.cids["ent-a"], s.cids["ent-b"])
    s.book.move(job, "authorized", "collecting")
    s.book.move(job, "collecting", "computing")
    s.book.decrypt(job)
    s.book.move(job, "computing", "refused")


def _decrypt_twice(s: Story) -> None:
    job = s.book.decide(s.cids["ent-a"], s.cids["ent-b"])
    s.book.move(job, "authorized", "collecting")
    s.book.move(job, "collecting", "computing")
    s.book.decrypt(job)
    s.book.decrypt(job)


def _activated_by_proposer_alone(s: Story) -> None:
    s.book.step("propose", "officer-1", OTHER_VERSION)
    s.book.step("activate", "officer-1", OTHER_VERSION, previous=VERSION)


def _approved_by_proposer(s: Story) -> None:
    s.book.step("propose", "officer-1", OTHER_VERSION)
    s.book.step("approve", "officer-1", OTHER_VERSION)


def _officers_with_no_identity(s: Story) -> None:
    s.book.step("propose", "ghost-1", OTHER_VERSION, proposer="ghost-1")
    s.book.step("approve", "ghost-2", OTHER_VERSION, proposer="ghost-1")
    s.book.step(
        "activate",
        "ghost-2",
        OTHER_VERSION,
        proposer="ghost-1",
        approver="ghost-2",
        previous=VERSION,
    )


def _officer_signature_forged(s: Story) -> None:
    forged = s.book.duty("officer-2", "policy.approve", OTHER_VERSION, signer=_signer("forger"))
    s.book.step("propose", "officer-1", OTHER_VERSION)
    s.book.step("approve", "officer-2", OTHER_VERSION, duty=forged)


def _officer_duty_of_another_deployment(s: Story) -> None:
    duty = Duty("ibx.other/ledger", "officer-2", "policy.approve", OTHER_VERSION, s.book.now)
    s.book.step("propose", "officer-1", OTHER_VERSION)
    s.book.step(
        "approve", "officer-2", OTHER_VERSION, duty=duty.sign(_signer("officer-2")).to_dict()
    )


def _admin_without_duty(s: Story) -> None:
    s.book.admin("aud-2", "auditor", duty=False)


def _admin_by_an_auditor(s: Story) -> None:
    s.book.admin("aud-3", "auditor", by="aud")


def _late_bootstrap(s: Story) -> None:
    s.book.bootstrap("officer-9")


def _certificate_without_token(s: Story) -> None:
    s.book.issue("meter-2", "2a")


def _token_used_twice(s: Story) -> None:
    s.book.issue("meter-1", "1c")


def _token_expired(s: Story) -> None:
    s.book.token("meter-3", expires=timedelta(seconds=1))
    s.book.member("filler")
    s.book.member("filler-2")
    s.book.issue("meter-3", "3a")


def _renewal_of_revoked(s: Story) -> None:
    s.book.renew("meter-1", "1b", "1d")


SCENARIOS: list[tuple[str, Callable[[Story], None], set[str]]] = [
    (
        "grant signed with a key not ledgered",
        _forged_key_grant,
        {"consent.key", "consent.signature"},
    ),
    ("receipt edited after signing", _edited_receipt, {"consent.signature"}),
    ("receipt of another deployment", _other_origin, {"consent.origin", "consent.signature"}),
    ("receipt granted again", _replayed_grant, {"consent.replay"}),
    ("use after revocation", _use_after_revocation, {"use.revoked_consent"}),
    ("use beyond the limit", _use_beyond_limit, {"use.over_limit"}),
    (
        "decision citing a revoked consent",
        _decision_on_revoked,
        {"decision.revoked_consent", "decision.uncounted_consent"},
    ),
    ("decision no use counted", _decision_uncounted, {"decision.uncounted_consent"}),
    ("decision under an inactive version", _decision_old_version, {"decision.policy_version"}),
    ("allow under an inactive version", _allow_old_version, {"decision.policy_version"}),
    ("decision below the consents' minimum", _decision_small_minimum, {"decision.min_cohort"}),
    ("release below the minimum cohort", _release_small_cohort, {"release.cohort"}),
    ("decryption without a job", _decrypt_without_job, {"decrypt.no_job"}),
    ("decryption of a job never released", _decrypt_refused_job, {"decrypt.unreleased"}),
    ("decryption twice", _decrypt_twice, {"decrypt.repeat"}),
    ("activated by its proposer alone", _activated_by_proposer_alone, {"policy.unapproved"}),
    ("approved by its proposer", _approved_by_proposer, {"policy.four_eyes"}),
    (
        "officers with no identity",
        _officers_with_no_identity,
        {"duty.unknown_actor", "policy.unproposed"},
    ),
    ("officer's signature forged", _officer_signature_forged, {"duty.signature"}),
    ("duty of another deployment", _officer_duty_of_another_deployment, {"duty.origin"}),
    ("administrator without a duty", _admin_without_duty, {"duty.missing"}),
    ("administrator registered by an auditor", _admin_by_an_auditor, {"duty.role"}),
    ("bootstrap officer after others", _late_bootstrap, {"identity.bootstrap"}),
    ("certificate without a token", _certificate_without_token, {"certificate.no_token"}),
    ("token used twice", _token_used_twice, {"certificate.token_reused"}),
    ("token expired", _token_expired, {"certificate.token_expired"}),
    ("renewal of a revoked certificate", _renewal_of_revoked, {"certificate.renewal"}),
]


@pytest.mark.parametrize(
    ("tamper", "codes"), [(t, c) for _, t, c in SCENARIOS], ids=[n for n, _, _ in SCENARIOS]
)
def test_each_tampering_is_found_and_named(
    story: Story, tamper: Callable[[Story], None], codes: set[str]
) -> None:
    before = story.book.ledger.size()
    tamper(story)
    found = story.book.findings()
    assert {f.code for f in found} == codes, [f.line() for f in found]
    assert all(f.index is not None and f.index >= before for f in found), [f.line() for f in found]


def _interleavings() -> st.SearchStrategy[tuple[int, int, int | None]]:
    return st.integers(0, 6).flatmap(
        lambda uses: st.tuples(
            st.just(uses),
            st.integers(1, 4),
            st.one_of(st.none(), st.integers(0, uses)),
        )
    )


@settings(max_examples=40, deadline=None)
@given(_interleavings())
def test_a_finding_appears_exactly_at_uses_after_revocation_or_beyond_the_limit(
    case: tuple[int, int, int | None],
) -> None:
    uses, limit, revoke_before = case
    book = Book.open()
    book.bootstrap("officer-1", "officer-2")
    book.member("ent-a")
    cid = book.grant("ent-a", use_limit=limit)
    expected: dict[int, set[str]] = {}
    revoked = False
    for k in range(uses):
        if revoke_before == k:
            book.revoke(cid)
            revoked = True
        index = book.ledger.size()
        book.use(f"decision-{k}", cid)
        codes = set()
        if revoked:
            codes.add("use.revoked_consent")
        if k + 1 > limit:
            codes.add("use.over_limit")
        if codes:
            expected[index] = codes
    if revoke_before == uses:
        book.revoke(cid)
    found: dict[int, set[str]] = {}
    for finding in book.findings():
        assert finding.index is not None
        found.setdefault(finding.index, set()).add(finding.code)
    assert found == expected


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_KEYS = st.sampled_from(
    [
        "name",
        "role",
        "public_key",
        "bootstrap",
        "duty",
        "consent_id",
        "enterprise",
        "receipt",
        "revocation",
        "receipt_hash",
        "signature",
        "decision_id",
        "checked_at",
        "consents",
        "version",
        "officer",
        "proposer",
        "previous",
        "effect",
        "action",
        "policy_version",
        "job_id",
        "participants",
        "min_cohort",
        "decided_at",
        "state",
        "cohort",
        "contributors",
        "device",
        "expires_at",
        "kind",
        "serial",
        "not_after",
        "previous_serial",
        "line",
        "serials",
        "superseded",
        "status",
    ]
)
_TYPES = st.sampled_from(
    [
        "identity.create",
        "identity.revoke",
        "identity.public_key",
        "consent.grant",
        "consent.revoke",
        "consent.use",
        "consent.job",
        "policy.propose",
        "policy.approve",
        "policy.activate",
        "authz.decision",
        "pipeline.decision",
        "pipeline.job",
        "pipeline.result",
        "mpc.key.decrypt",
        "edge.token.create",
        "edge.certificate.issue",
        "edge.certificate.renew",
        "edge.certificate.revoke",
        "identity.certificate.issue",
        "identity.certificate.revoke",
    ]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_TYPES, st.dictionaries(_KEYS, _JSON, max_size=8)), max_size=6))
def test_no_payload_makes_the_invariants_fail(entries: list[tuple[str, dict[str, Any]]]) -> None:
    """Whatever an entry holds (the typed parse may have refused it), the pass reports;
    it never raises."""
    from ledger import LedgerEntry

    story = _prefix()
    parsed = list(story)
    for offset, (type_, payload) in enumerate(entries):
        index = len(story) + offset
        entry = LedgerEntry(index, type_, "someone", START, payload, b"")
        parsed.append(ParsedEntry(index, entry, object()))
    found = check_invariants(parsed, origin=ORIGIN)
    assert all(isinstance(f, Finding) for f in found)


@functools.cache
def _prefix() -> tuple[ParsedEntry, ...]:
    """A short log the fuzzed entries follow: officers, an enterprise, a grant, a job."""
    book = Book.open()
    book.bootstrap("officer-1", "officer-2")
    book.member("ent-a")
    book.member("ent-b")
    book.four_eyes()
    cids = [book.grant("ent-a"), book.grant("ent-b")]
    book.run(*cids)
    book.token("meter-1")
    return tuple(book.parsed())
