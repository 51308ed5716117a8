"""The invariants across entries (``ibx audit verify`` items 3 to 5, docs/audit.md).

One pass over the entries in index order, keeping what earlier entries
established (who held which key, which consents stand, which policy version is
active, which jobs were decided), checks each entry against it:

* identities and their keys (``identity.create`` / ``identity.public_key`` /
  ``identity.revoke``); an administrator's registration carries a valid
  ``identity.create`` duty by a security officer active then (the bootstrap
  officers only before any other identity entry);
* every consent receipt and revocation verified, from the published format
  alone (RFC 8785 bytes of ``receipt``/``revocation``, Ed25519), under the key
  the ledger recorded for the enterprise at that time; a receipt granted once,
  a nonce used once; a use never beyond the limit, after a revocation or
  outside the validity;
* every signed duty on ``policy.*`` (and certificate revocations) under the
  officer's ledgered key; every activation approved by a second officer and
  activated by one who did not propose it;
* every decision cites the policy version active then and consents valid,
  unrevoked and counted at that time; every release's cohort meets its
  decision's minimum, itself the strictest of the consents'; every decryption
  belongs to a job that was released, once;
* every certificate issuance follows an unexpired, unused enrolment token or
  renews a valid, unrevoked certificate of the same device.

Free of I/O: entries in, findings out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from audit._facts import (
    ADMINISTRATIVE_ROLES,
    OFFICER,
    CertificateFact,
    ConsentFact,
    IdentityFact,
    JobFact,
    ParsedEntryLike,
    Payload,
    TokenFact,
)
from audit._findings import Finding
from core.canonical import canonical_bytes
from core.duty import DUTY_SKEW, DutyError, SignedDuty
from core.errors import CanonicalJsonError
from core.keys import verify_ed25519

__all__ = [
    "ACTIVATION_GRACE",
    "STATED_TIME_SKEW",
    "LedgerFacts",
    "check_invariants",
    "derive_facts",
]

ACTIVATION_GRACE: Final = timedelta(seconds=5)
"""How long after an activation a decision may still name the version it replaced
(a decision point reuses the active version for up to a second, and a decision
is recorded after it was made)."""
STATED_TIME_SKEW: Final = DUTY_SKEW
"""How far a time an entry states (``checked_at``, ``decided_at``) may be from its
ledger time."""
_TERMINAL: Final = frozenset({"refused", "failed", "cancelled"})


def check_invariants(entries: Sequence[ParsedEntryLike], *, origin: str) -> list[Finding]:
    """Every invariant across ``entries`` (read in index order) that does not hold.

    ``origin`` is the deployment's ledger origin (the export header's): every
    receipt, revocation and duty must name it.
    """
    return derive_facts(entries, origin=origin)[0]


@dataclass(frozen=True)
class LedgerFacts:
    """What the whole log establishes: what the exchange's rows must agree with."""

    identities: Mapping[str, IdentityFact]
    consents: Mapping[str, ConsentFact]
    active_policy: str | None
    activated: int | None
    """The index of the activation that made :attr:`active_policy` active."""


def derive_facts(
    entries: Sequence[ParsedEntryLike], *, origin: str
) -> tuple[list[Finding], LedgerFacts]:
    """:func:`check_invariants` and the facts the pass derived, in one pass."""
    state = _Pass(origin)
    for parsed in sorted(entries, key=lambda p: p.index):
        state.visit(parsed)
    state.finish()
    facts = LedgerFacts(state.identities, state.consents, state.active, state.activation)
    return state.findings, facts


@dataclass
class _Version:
    proposer: str | None
    proposed: int
    approver: str | None = None


@dataclass
class _Pass:
    """What the entries so far established, and what was found wrong."""

    origin: str
    findings: list[Finding] = field(default_factory=list)
    identities: dict[str, IdentityFact] = field(default_factory=dict)
    non_bootstrap_seen: bool = False
    consents: dict[str, ConsentFact] = field(default_factory=dict)
    nonces: dict[tuple[str, str], int] = field(default_factory=dict)
    counted: dict[str, set[str]] = field(default_factory=dict)
    """decision id → consent ids a ``consent.use`` counted for it."""
    versions: dict[str, _Version] = field(default_factory=dict)
    active: str | None = None
    replaced: str | None = None
    activated_at: datetime | None = None
    activation: int | None = None
    jobs: dict[str, JobFact] = field(default_factory=dict)
    tokens: list[TokenFact] = field(default_factory=list)
    certificates: dict[str, CertificateFact] = field(default_factory=dict)
    _index: int = 0
    _time: datetime | None = None

    # -- the pass -------------------------------------------------------------------------

    def visit(self, parsed: ParsedEntryLike) -> None:
        """Check one entry against what came before, then remember what it establishes."""
        entry = parsed.entry
        handler = _HANDLERS.get(entry.type)
        if handler is None:
            return
        self._index, self._time = parsed.index, entry.time
        try:
            handler(self, Payload(entry.payload), entry.actor)
        except (ValueError, TypeError, KeyError) as exc:  # PayloadShapeError, and whatever a
            # hostile payload the typed parse refused could still make a reader raise
            if parsed.typed is not None:  # an untyped entry is already an entry.parse finding
                self.find("entry.shape", f"{entry.type}: {exc}")

    def finish(self) -> None:
        """Findings that need the whole log: decryptions of jobs never released."""
        for job in self.jobs.values():
            if job.released is not None or job.ended is None:
                continue  # released, or still running when the log was exported
            for index in job.decryptions:
                self.find(
                    "decrypt.unreleased",
                    f"job {job.job_id}'s aggregate was decrypted but the job ended "
                    f"{job.state} (#{job.ended}) without a release",
                    index=index,
                )

    def find(self, code: str, message: str, *, index: int | None = None) -> None:
        """Report one finding (at the current entry unless ``index`` is given)."""
        self.findings.append(Finding(code, self._index if index is None else index, message))

    @property
    def now(self) -> datetime:
        assert self._time is not None
        return self._time

    # -- identities -----------------------------------------------------------------------

    def identity_create(self, p: Payload, actor: str) -> None:
        name, role = p.text("name"), p.text("role")
        key = p.key("public_key") if p.opt_text("public_key") is not None else None
        if p.flag("bootstrap"):
            if role != OFFICER:
                self.find("identity.bootstrap", f"{name} is registered as bootstrap but is {role}")
            elif self.non_bootstrap_seen:
                self.find(
                    "identity.bootstrap",
                    f"{name} is registered as a bootstrap officer after other identities: only "
                    "the officers of ibx init, before any other identity entry, are",
                )
        else:
            self.non_bootstrap_seen = True
            if role in ADMINISTRATIVE_ROLES:
                details = {"role": role, "public_key": key.to_base64() if key else None}
                self.duty(p, actor, action="identity.create", subjects=(name,), details=details)
        if name in self.identities:
            self.find(
                "identity.duplicate",
                f"{name} is registered again (first #{self.identities[name].created})",
            )
        self.identities[name] = IdentityFact(name, role, self._index, key, self._index)

    def identity_revoke(self, p: Payload, actor: str) -> None:
        self.non_bootstrap_seen = True
        name = p.text("name")
        known = self.identities.get(name)
        if known is None:
            self.find("identity.unknown", f"revokes {name}, an identity never registered")
            return
        if known.role in ADMINISTRATIVE_ROLES:
            self.duty(
                p, actor, action="identity.revoke", subjects=(name,), details={"role": known.role}
            )
        if known.revoked is None:
            known.revoked = self._index

    def identity_public_key(self, p: Payload, _actor: str) -> None:
        self.non_bootstrap_seen = True
        name = p.text("name")
        known = self.identities.get(name)
        if known is None:
            self.find(
                "identity.unknown", f"registers a key for {name}, an identity never registered"
            )
            return
        if known.role in ADMINISTRATIVE_ROLES:
            self.find(
                "identity.admin_key",
                f"replaces the key of {name} ({known.role}): an administrator's key is the one "
                "an officer's duty registered",
            )
        known.key, known.key_index = p.key("public_key"), self._index

    def other_identity_entry(self, _p: Payload, _actor: str) -> None:
        self.non_bootstrap_seen = True

    # -- signed duties --------------------------------------------------------------------

    def duty(
        self,
        p: Payload,
        actor: str,
        *,
        action: str,
        subjects: Collection[str],
        details: Mapping[str, object] | None = None,
        officer: str | None = None,
    ) -> str | None:
        """The officer whose valid duty the entry carries, or None (each fault a finding)."""
        raw = p.opt_obj("duty")
        what = f"{action} on {', '.join(sorted(subjects)) or '-'}"
        if raw is None:
            self.find("duty.missing", f"{what} carries no officer's signed duty")
            return None
        try:
            signed = SignedDuty.from_dict(raw.data)
        except DutyError as exc:
            self.find("duty.malformed", f"{what}: {exc}")
            return None
        duty = signed.duty
        if duty.origin != self.origin:
            self.find("duty.origin", f"{what}: signed for deployment {duty.origin!r}")
            return None
        if duty.action != action or duty.subject not in subjects:
            self.find("duty.mismatch", f"{what}: the duty signs {duty.action} on {duty.subject!r}")
            return None
        if details is not None and dict(duty.details) != dict(details):
            self.find("duty.mismatch", f"{what}: the duty signs other details {dict(duty.details)}")
            return None
        for claimed in (actor, officer):
            if claimed is not None and claimed != duty.actor:
                self.find(
                    "duty.mismatch", f"{what}: the entry names {claimed}, the duty {duty.actor}"
                )
                return None
        known = self.identities.get(duty.actor)
        if known is None:
            self.find("duty.unknown_actor", f"{what}: signed as {duty.actor}, who has no identity")
            return None
        if known.role != OFFICER or not known.active:
            state = "revoked" if not known.active else known.role
            self.find("duty.role", f"{what}: {duty.actor} is {state}, not an active officer")
            return None
        if known.key is None or not signed.verify(known.key):
            self.find(
                "duty.signature",
                f"{what}: the signature does not verify under {duty.actor}'s ledgered key",
            )
            return None
        if abs(duty.signed_at - self.now) > DUTY_SKEW:
            self.find("duty.time", f"{what}: signed more than 5 minutes from its entry's time")
            return None
        return duty.actor

    # -- consents -------------------------------------------------------------------------

    def _statement(self, p: Payload, member: str, code: str) -> tuple[Payload, bool]:
        """Verify a signed consent statement (``receipt`` or ``revocation``): hash,
        origin, signer and signature under the enterprise's key at this time."""
        doc = p.obj(member)
        cid, enterprise = p.text("consent_id"), p.text("enterprise")
        what = f"{member} of {cid} by {enterprise}"
        try:
            signed = canonical_bytes(doc.data)
        except CanonicalJsonError as exc:
            self.find(f"{code}.shape", f"{what} has no canonical form: {exc}")
            return doc, False
        ok = True
        if hashlib.sha256(signed).hexdigest() != p.text("receipt_hash"):
            self.find(f"{code}.hash", f"{what}: receipt_hash is not the SHA-256 of its bytes")
            ok = False
        if doc.text("consent_id") != cid or doc.text("enterprise") != enterprise:
            self.find(f"{code}.mismatch", f"{what}: the signed document names another consent")
            ok = False
        if doc.text("origin") != self.origin:
            self.find(f"{code}.origin", f"{what}: signed for deployment {doc.text('origin')!r}")
            ok = False
        known = self.identities.get(enterprise)
        if known is None or known.role != "enterprise" or known.key is None:
            self.find(f"{code}.no_key", f"{what}: the ledger records no key for {enterprise}")
            return doc, False
        if doc.key("public_key") != known.key:
            self.find(
                f"{code}.key",
                f"{what}: signed with a key the ledger does not record for {enterprise} "
                "at that time",
            )
            ok = False
        try:
            signature = base64.b64decode(p.text("signature"), validate=True)
        except (binascii.Error, ValueError):
            signature = b""
        if not verify_ed25519(known.key, signed, signature):
            self.find(
                f"{code}.signature",
                f"{what}: the signature does not verify under {enterprise}'s ledgered key",
            )
            ok = False
        return doc, ok

    def _nonce(self, enterprise: str, nonce: str, what: str) -> None:
        first = self.nonces.setdefault((enterprise, nonce), self._index)
        if first != self._index:
            self.find("consent.replay", f"{what} reuses the nonce of #{first}")

    def consent_grant(self, p: Payload, _actor: str) -> None:
        receipt, _ok = self._statement(p, "receipt", "consent")
        cid, enterprise = p.text("consent_id"), p.text("enterprise")
        self._nonce(enterprise, receipt.text("nonce"), f"the grant of {cid}")
        earlier = self.consents.get(cid)
        if earlier is not None:
            self.find(
                "consent.replay",
                f"consent {cid} is granted again (first #{earlier.granted}"
                + (f", revoked #{earlier.revoked}" if earlier.revoked is not None else "")
                + ")",
            )
            return
        self.consents[cid] = ConsentFact(
            consent_id=cid,
            enterprise=enterprise,
            granted=self._index,
            receipt_hash=p.text("receipt_hash"),
            valid_from=receipt.time("valid_from"),
            valid_until=receipt.time("valid_until"),
            use_limit=receipt.opt_integer("use_limit"),
            min_cohort=receipt.integer("min_cohort"),
            nonce=receipt.text("nonce"),
        )

    def consent_revoke(self, p: Payload, _actor: str) -> None:
        revocation, _ok = self._statement(p, "revocation", "revocation")
        cid, enterprise = p.text("consent_id"), p.text("enterprise")
        self._nonce(enterprise, revocation.text("nonce"), f"the revocation of {cid}")
        known = self.consents.get(cid)
        if known is None:
            self.find("revocation.unknown_consent", f"revokes {cid}, a consent never granted")
            return
        if known.enterprise != enterprise:
            self.find(
                "revocation.mismatch", f"{enterprise} revokes {cid}, granted by {known.enterprise}"
            )
            return
        if known.revoked is not None:
            self.find("revocation.repeat", f"revokes {cid} again (first #{known.revoked})")
            return
        known.revoked, known.revoked_at = self._index, self.now

    def _stated_time(self, p: Payload, key: str) -> datetime:
        stated = p.time(key)
        if abs(stated - self.now) > STATED_TIME_SKEW:
            self.find("entry.time", f"{key} is more than 5 minutes from the entry's time")
        return stated

    def _cited(
        self, ref: Payload, *, at: datetime, code: str, receipt_key: str
    ) -> ConsentFact | None:
        """A consent an entry relies on: granted, same receipt, unrevoked and valid at ``at``."""
        cid = ref.text("consent_id")
        known = self.consents.get(cid)
        if known is None:
            self.find(f"{code}.unknown_consent", f"cites {cid}, a consent never granted")
            return None
        if ref.text(receipt_key) != known.receipt_hash:
            self.find(f"{code}.receipt_mismatch", f"cites {cid} with another receipt's hash")
        if known.revoked is not None:
            self.find(
                f"{code}.revoked_consent", f"cites {cid}, revoked at #{known.revoked} before it"
            )
        elif not known.valid_at(at):
            self.find(f"{code}.invalid_consent", f"cites {cid} outside its validity")
        return known

    def consent_use(self, p: Payload, _actor: str) -> None:
        at = self._stated_time(p, "checked_at")
        decision = p.text("decision_id")
        counted = self.counted.setdefault(decision, set())
        for ref in p.objs("consents"):
            known = self._cited(ref, at=at, code="use", receipt_key="receipt_hash")
            if known is None:
                continue
            counted.add(known.consent_id)
            known.uses.append(self._index)
            if known.use_limit is not None and len(known.uses) > known.use_limit:
                self.find(
                    "use.over_limit",
                    f"use {len(known.uses)} of {known.consent_id}, whose receipt allows "
                    f"{known.use_limit}",
                )

    def consent_job(self, p: Payload, _actor: str) -> None:
        if p.text("status") != "released":
            return
        at = self._stated_time(p, "checked_at")
        for ref in p.objs("consents"):
            self._cited(ref, at=at, code="release", receipt_key="receipt_hash")

    # -- policies -------------------------------------------------------------------------

    def policy_propose(self, p: Payload, actor: str) -> None:
        version = p.text("version")
        officer = self.duty(
            p, actor, action="policy.propose", subjects=(version,), officer=p.text("officer")
        )
        if version not in self.versions:
            self.versions[version] = _Version(officer, self._index)

    def policy_test(self, p: Payload, actor: str) -> None:
        version = p.text("version")
        self.duty(p, actor, action="policy.test", subjects=(version,), officer=p.text("officer"))

    def policy_approve(self, p: Payload, actor: str) -> None:
        version = p.text("version")
        officer = self.duty(
            p, actor, action="policy.approve", subjects=(version,), officer=p.text("officer")
        )
        known = self.versions.get(version)
        if known is None or known.proposer is None:
            self.find(
                "policy.unproposed",
                f"approves {version[:12]}, never proposed by a verified officer",
            )
            return
        if p.text("proposer") != known.proposer:
            self.find(
                "policy.proposer_mismatch",
                f"approval of {version[:12]} names proposer {p.text('proposer')}, the ledger "
                f"{known.proposer}",
            )
        if officer is not None and officer == known.proposer:
            self.find("policy.four_eyes", f"{officer} approves {version[:12]}, which they proposed")
        elif officer is not None:
            known.approver = officer

    def policy_activate(self, p: Payload, actor: str) -> None:
        version = p.text("version")
        officer = self.duty(
            p, actor, action="policy.activate", subjects=(version,), officer=p.text("officer")
        )
        known = self.versions.get(version)
        if known is None or known.proposer is None:
            self.find(
                "policy.unproposed",
                f"activates {version[:12]}, never proposed by a verified officer",
            )
        elif known.approver is None:
            self.find(
                "policy.unapproved",
                f"activates {version[:12]}, never approved by a second verified officer",
            )
        elif officer is not None and officer == known.proposer:
            self.find(
                "policy.four_eyes", f"{officer} activates {version[:12]}, which they proposed"
            )
        if p.opt_text("previous") != self.active:
            self.find(
                "policy.previous",
                f"activation of {version[:12]} says it replaces "
                f"{(p.opt_text('previous') or 'none')[:12]}, the ledger's active version is "
                f"{(self.active or 'none')[:12]}",
            )
        self.replaced, self.active, self.activated_at = self.active, version, self.now
        self.activation = self._index

    def _policy_version(self, version: str | None, what: str) -> None:
        """A decision's policy version must be the one active then (after the first activation)."""
        if self.activated_at is None:
            return  # before any activation the exchange decides under its bootstrap pack
        if version == self.active:
            return
        if (
            version is not None
            and version == self.replaced
            and self.now - self.activated_at <= ACTIVATION_GRACE
        ):
            return
        self.find(
            "decision.policy_version",
            f"{what} names policy version {(version or 'none')[:12]}; the active version was "
            f"{(self.active or 'none')[:12]}",
        )

    # -- decisions, jobs, keys ------------------------------------------------------------

    def authz_decision(self, p: Payload, actor: str) -> None:
        if p.text("effect") == "allow":
            self._policy_version(
                p.opt_text("policy_version"), f"{actor}'s allowed {p.text('action')}"
            )

    def pipeline_decision(self, p: Payload, _actor: str) -> None:
        job_id = p.text("job_id")
        at = self._stated_time(p, "decided_at")
        self._policy_version(p.opt_text("policy_version"), f"the decision of {job_id}")
        counted = self.counted.get(job_id, set())
        participants: dict[str, str] = {}
        strictest = 0
        for part in p.objs("participants"):
            known = self._cited(part, at=at, code="decision", receipt_key="receipt_sha256")
            if known is None:
                continue
            participants[part.text("enterprise")] = known.consent_id
            if known.enterprise != part.text("enterprise"):
                self.find(
                    "decision.receipt_mismatch",
                    f"names {part.text('enterprise')} for {known.consent_id} of {known.enterprise}",
                )
            if known.consent_id not in counted:
                self.find(
                    "decision.uncounted_consent",
                    f"cites {known.consent_id}, which no consent.use counted for {job_id}",
                )
            if part.integer("min_cohort") != known.min_cohort:
                self.find(
                    "decision.min_cohort",
                    f"states min_cohort {part.integer('min_cohort')} for {known.consent_id}, "
                    f"whose receipt says {known.min_cohort}",
                )
            strictest = max(strictest, known.min_cohort)
        minimum = p.integer("min_cohort")
        if minimum < strictest:
            self.find(
                "decision.min_cohort",
                f"{job_id}'s minimum cohort {minimum} is below its consents' {strictest}",
            )
        if job_id in self.jobs:
            self.find(
                "decision.repeat", f"{job_id} is decided again (#{self.jobs[job_id].decided})"
            )
            return
        self.jobs[job_id] = JobFact(job_id, self._index, minimum, participants)

    def pipeline_job(self, p: Payload, _actor: str) -> None:
        job = self.jobs.get(p.text("job_id"))
        if job is None:
            return
        job.state = p.text("state")
        if job.state == "computing" and job.computing is None:
            job.computing = self._index
        elif job.state in _TERMINAL and job.ended is None:
            job.ended = self._index

    def pipeline_result(self, p: Payload, _actor: str) -> None:
        job_id = p.text("job_id")
        job = self.jobs.get(job_id)
        if job is None:
            self.find("release.no_decision", f"releases {job_id}, a job never decided")
            return
        if job.released is not None:
            self.find("release.repeat", f"releases {job_id} again (first #{job.released})")
            return
        job.released = self._index
        cohort = p.integer("cohort")
        if cohort < job.min_cohort:
            self.find(
                "release.cohort",
                f"{job_id} released over {cohort} contributors; its decision's minimum is "
                f"{job.min_cohort}",
            )
        cutoff = job.computing if job.computing is not None else self._index
        for enterprise in p.texts("contributors"):
            cid = job.participants.get(enterprise)
            if cid is None:
                self.find("release.contributor", f"{job_id} counts {enterprise}, not a participant")
                continue
            known = self.consents[cid]
            if known.revoked is not None and known.revoked < cutoff:
                self.find(
                    "release.revoked_consent",
                    f"{job_id} counts {enterprise}, whose consent {cid} was revoked at "
                    f"#{known.revoked} before the job computed",
                )

    def key_decrypt(self, p: Payload, _actor: str) -> None:
        job_id = p.text("job_id")
        job = self.jobs.get(job_id)
        if job is None:
            self.find("decrypt.no_job", f"decrypts the aggregate of {job_id}, a job never decided")
            return
        if job.decryptions:
            self.find("decrypt.repeat", f"decrypts {job_id} again (first #{job.decryptions[0]})")
        elif job.released is not None:
            self.find("decrypt.after_release", f"decrypts {job_id} after its release")
        elif job.computing is None:
            self.find("decrypt.not_computing", f"decrypts {job_id} before it was computing")
        job.decryptions.append(self._index)

    # -- certificates ---------------------------------------------------------------------

    def token_create(self, p: Payload, _actor: str) -> None:
        self.tokens.append(
            TokenFact(self._index, p.text("enterprise"), p.text("device"), p.time("expires_at"))
        )

    def _revoke_serials(self, serials: Collection[str]) -> None:
        for serial in serials:
            known = self.certificates.get(serial)
            if known is not None and known.revoked is None:
                known.revoked = self._index

    def _issued(self, p: Payload, owner: tuple[str, ...]) -> None:
        serial = p.text("serial")
        if serial in self.certificates:
            self.find("certificate.repeat", f"issues serial {serial} again")
        self._revoke_serials(p.texts("superseded"))
        self.certificates[serial] = CertificateFact(serial, self._index, owner, p.time("not_after"))

    def edge_issue(self, p: Payload, _actor: str) -> None:
        if p.text("kind") != "device":
            self._issued(p, ("server",))
            return
        enterprise, device = p.text("enterprise"), p.text("device")
        mine = [t for t in self.tokens if (t.enterprise, t.device) == (enterprise, device)]
        usable = [t for t in mine if t.used is None and self.now <= t.expires_at]
        if usable:
            usable[0].used = self._index
        elif any(t.used is None for t in mine):
            self.find(
                "certificate.token_expired",
                f"issues {enterprise}/{device} a certificate with an expired enrolment token",
            )
        elif mine:
            self.find(
                "certificate.token_reused",
                f"issues {enterprise}/{device} a certificate with a token already used "
                f"(#{mine[-1].used})",
            )
        else:
            self.find(
                "certificate.no_token",
                f"issues {enterprise}/{device} a certificate no enrolment token was made for",
            )
        self._issued(p, (enterprise, device))

    def edge_renew(self, p: Payload, _actor: str) -> None:
        owner = (p.text("enterprise"), p.text("device"))
        previous = self.certificates.get(p.text("previous_serial"))
        what = f"renews {'/'.join(owner)} from serial {p.text('previous_serial')}"
        if previous is None or tuple(previous.owner) != owner:
            self.find("certificate.renewal", f"{what}, not a certificate of that device")
        elif previous.revoked is not None:
            self.find("certificate.renewal", f"{what}, revoked at #{previous.revoked}")
        elif previous.not_after is not None and previous.not_after < self.now:
            self.find("certificate.renewal", f"{what}, expired")
        self._issued(p, owner)

    def edge_revoke(self, p: Payload, actor: str) -> None:
        serial = p.text("serial")
        self.duty(p, actor, action="certificate.revoke", subjects=(serial,))
        self._revoke_serials([serial, *(m.text("serial") for m in p.objs("line"))])

    def admin_issue(self, p: Payload, _actor: str) -> None:
        self.non_bootstrap_seen = True
        name = p.text("name")
        known = self.identities.get(name)
        if known is None or not known.active or known.role != p.text("role"):
            self.find(
                "certificate.no_identity",
                f"issues a client certificate to {name}, not an active {p.text('role')}",
            )
        self._issued(p, (name,))

    def admin_revoke(self, p: Payload, actor: str) -> None:
        self.non_bootstrap_seen = True
        serials = p.texts("serials")
        self.duty(p, actor, action="certificate.revoke", subjects=serials)
        self._revoke_serials(serials)


_Handler = Callable[[_Pass, Payload, str], None]
_HANDLERS: Final[Mapping[str, _Handler]] = {
    "identity.create": _Pass.identity_create,
    "identity.revoke": _Pass.identity_revoke,
    "identity.public_key": _Pass.identity_public_key,
    "identity.token_rotate": _Pass.other_identity_entry,
    "identity.certificate.issue": _Pass.admin_issue,
    "identity.certificate.revoke": _Pass.admin_revoke,
    "consent.grant": _Pass.consent_grant,
    "consent.revoke": _Pass.consent_revoke,
    "consent.use": _Pass.consent_use,
    "consent.job": _Pass.consent_job,
    "policy.propose": _Pass.policy_propose,
    "policy.test": _Pass.policy_test,
    "policy.approve": _Pass.policy_approve,
    "policy.activate": _Pass.policy_activate,
    "authz.decision": _Pass.authz_decision,
    "pipeline.decision": _Pass.pipeline_decision,
    "pipeline.job": _Pass.pipeline_job,
    "pipeline.result": _Pass.pipeline_result,
    "mpc.key.decrypt": _Pass.key_decrypt,
    "edge.token.create": _Pass.token_create,
    "edge.certificate.issue": _Pass.edge_issue,
    "edge.certificate.renew": _Pass.edge_renew,
    "edge.certificate.revoke": _Pass.edge_revoke,
}
"""The entry types the invariants read; every other type establishes nothing here."""
