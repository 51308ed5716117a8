"""The consent service: accept signed grants and revocations, check and use consents.

The service reads time from its own clock (a constructor dependency,
:func:`core.clock.utcnow` by default): every validity judgement -- acceptance,
check, use, release -- is made at the exchange's time. A request may state a
time, but one further from that clock than ``ConsentConfig.request_skew`` is
refused, and it never decides anything.

Every state change happens in one write transaction together with its ledger
entry (the recorder joins the caller's session), so a row never exists without
its entry. :meth:`ConsentService.use` checks and counts in that same locked
transaction: a revocation either committed before it (and is seen) or waits
for it, so no decision made after a revocation is accepted can use the consent.
"""

from __future__ import annotations

import builtins
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from consent._authority import LedgerAuthority, LedgerFacts, PendingAlerts, mismatch
from consent._catalog import Dataset, DatasetCatalog
from consent._check import (
    ConsentRecord,
    ConsentRequest,
    CoverageReport,
    Refusal,
    authenticity_refusal,
    evaluate,
    validity_refusal,
)
from consent._directory import KeyDirectory, KeyLedger, RequesterDirectory
from consent._receipt import ConsentReceipt, Requester, SignedReceipt, SignedRevocation
from consent._tables import GrantRow, NonceRow, ScopeRow, UseRow
from consent._verified import StoredGrant, VerifiedReceipts
from consent.entries import (
    ConsentRef,
    GrantEntry,
    JobEntry,
    RevokeEntry,
    UseEntry,
    receipt_subject,
)
from consent.errors import (
    BadConsentSignatureError,
    ConsentAccessError,
    ConsentConfigError,
    ConsentExpiredError,
    ConsentNotFoundError,
    ConsentRefusedError,
    ConsentRevokedError,
    DatasetNotOwnedError,
    ForeignKeyError,
    InvalidConsentError,
    NoConsentError,
    NoRegisteredKeyError,
    ReplayedNonceError,
    RequestTimeSkewError,
    UseLimitReachedError,
    WrongOriginError,
)
from core.clock import format_rfc3339, parse_rfc3339, require_aware, utcnow
from core.db import Database
from core.events import Event
from core.keys import Ed25519PublicKey
from ledger import Ledger

__all__ = ["ConsentConfig", "ConsentService", "ConsentUsage", "ConsentUse", "UsageEntry"]

logger = logging.getLogger(__name__)

_GRANTS = cast(Table, GrantRow.__table__)
_SCOPE = cast(Table, ScopeRow.__table__)
_USES = cast(Table, UseRow.__table__)
_CANDIDATES = select(
    _GRANTS.c.consent_id,
    _GRANTS.c.enterprise,
    _GRANTS.c.receipt,
    _GRANTS.c.signature,
    _GRANTS.c.accepted_at,
    _GRANTS.c.ledger_index,
    _GRANTS.c.use_count,
    _GRANTS.c.revoked_at,
    _GRANTS.c.revocation_ledger_index,
).where(
    _GRANTS.c.consent_id.in_(
        select(_SCOPE.c.consent_id).where(
            _SCOPE.c.dataset.in_(bindparam("datasets", expanding=True)),
            _SCOPE.c.requester_key.in_(bindparam("keys", expanding=True)),
        )
    )
)
"""Every consent naming one of the datasets for one of the requester's keys, with the
columns a check reads: one statement on the (dataset, requester_key) index."""
_COUNT_USE = (
    update(_GRANTS)
    .where(_GRANTS.c.consent_id.in_(bindparam("ids", expanding=True)))
    .values(use_count=_GRANTS.c.use_count + 1)
)
_STANDING = select(_GRANTS.c.consent_id, _GRANTS.c.use_count, _GRANTS.c.revoked_at).where(
    _GRANTS.c.consent_id.in_(bindparam("ids", expanding=True))
)


@dataclass(frozen=True)
class ConsentConfig:
    """How the consent service checks.

    Attributes:
        origin: this deployment's origin; receipts naming another are refused
            (the exchange passes ``settings.ledger_origin``).
        clock_skew: how far in the future a ``signed_at`` may be.
        request_skew: how far a request's stated ``time`` may be from the
            exchange's clock (either way) before the request is refused with
            :class:`~consent.errors.RequestTimeSkewError`; validity is judged
            at the exchange's clock regardless (``IBX_CONSENT_REQUEST_SKEW_SECONDS``).
        verify_on_check: re-verify each candidate's signature on every check, so
            a receipt altered in the database is refused (about 60 µs each).
    """

    origin: str
    clock_skew: timedelta = timedelta(minutes=5)
    request_skew: timedelta = timedelta(minutes=5)
    verify_on_check: bool = True

    def __post_init__(self) -> None:
        if not self.origin:
            raise ConsentConfigError("origin must not be empty")
        for name in ("clock_skew", "request_skew"):
            if getattr(self, name) < timedelta(0):
                raise ConsentConfigError(f"{name} must not be negative")


@dataclass(frozen=True)
class ConsentUse:
    """A decision's use of consents: one chosen consent per included owner."""

    decision_id: str
    report: CoverageReport
    used: dict[str, ConsentRecord]
    ledger_index: int | None

    def consent_ids(self) -> tuple[str, ...]:
        """The consents used, sorted by owner."""
        return tuple(self.used[o].consent_id for o in sorted(self.used))


@dataclass(frozen=True)
class UsageEntry:
    """One decision or job that relied on a consent, as recorded on the ledger."""

    kind: str  # "decision" or "job"
    decision_id: str
    job_id: str | None
    requester: str
    purpose: str
    operation: str
    engine: str
    time: datetime
    ledger_index: int
    status: str  # "used", "released" or "stopped"


@dataclass(frozen=True)
class ConsentUsage:
    """A consent of an enterprise and everything that relied on it."""

    record: ConsentRecord
    entries: tuple[UsageEntry, ...]


def _to_record(row: GrantRow) -> ConsentRecord:
    receipt = ConsentReceipt.from_dict(json.loads(row.receipt))
    return ConsentRecord(
        signed=SignedReceipt(receipt, _as_bytes(row.signature)),
        accepted_at=parse_rfc3339(row.accepted_at),
        ledger_index=row.ledger_index,
        use_count=row.use_count,
        revoked_at=parse_rfc3339(row.revoked_at) if row.revoked_at else None,
        revocation_ledger_index=row.revocation_ledger_index,
    )


class ConsentService:
    """Accept, revoke, list, check and use consents; report who used an enterprise's data.

    ``clock`` is the exchange's clock: every "now" the service judges at comes
    from it (tests pass a controllable one). No method takes a time from its
    caller, so no route or command can let a requester choose it.

    The rows are an index of the ledger, checked when they are used
    (:mod:`consent._authority`): revocations, use counts and earlier grants of a
    receipt are looked up on the ledger's subject index, and with ``key_ledger``
    (the exchange passes its identity directory) an enterprise's key is the key
    the ledger records for it, not its row's. A disagreement is refused and
    raised as a ``row.mismatch`` alert.
    """

    def __init__(
        self,
        db: Database,
        ledger: Ledger,
        keys: KeyDirectory,
        requesters: RequesterDirectory,
        config: ConsentConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
        key_ledger: KeyLedger | None = None,
    ) -> None:
        self._db = db
        self._ledger = ledger
        self._keys = keys
        self._requesters = requesters
        self.config = config
        self._clock = clock
        self.catalog = DatasetCatalog(db, ledger)
        self._receipts = VerifiedReceipts()
        self._authority = LedgerAuthority(ledger, key_ledger)

    def now(self) -> datetime:
        """The exchange's time, from the service's clock (UTC).

        Raises:
            ConsentConfigError: the clock returned a naive datetime.
        """
        try:
            return require_aware(self._clock(), what="the service clock's time")
        except ValueError as exc:
            raise ConsentConfigError(str(exc)) from exc

    # -- accepting statements ------------------------------------------------------------

    def _authenticate(
        self,
        *,
        enterprise: str,
        origin: str,
        public_key: Ed25519PublicKey,
        signed: SignedReceipt | SignedRevocation,
        signed_at: datetime,
        consent_id: str,
        now: datetime,
    ) -> None:
        if origin != self.config.origin:
            raise WrongOriginError(
                f"made for {origin!r}; this deployment is {self.config.origin!r}",
                consent_id=consent_id,
            )
        registered, disagreement = self.registered_key(enterprise)
        if registered is None:
            if disagreement is not None:
                raise NoRegisteredKeyError(
                    f"{disagreement}; refused and reported", consent_id=consent_id
                )
            raise NoRegisteredKeyError(
                f"{enterprise} is not an active enterprise with a registered consent key",
                consent_id=consent_id,
            )
        if public_key != registered and disagreement is not None:
            raise ForeignKeyError(
                f"{consent_id} is not signed with the key the ledger records for {enterprise}: "
                f"{disagreement}; refused and reported",
                consent_id=consent_id,
            )
        if public_key != registered:
            holder = self._keys.key_owner(public_key)
            whose = f"the key of {holder}" if holder else "an unregistered key"
            raise ForeignKeyError(
                f"signed with {whose}, not {enterprise}'s registered key", consent_id=consent_id
            )
        try:
            signed.verify(registered)
        except BadConsentSignatureError as exc:
            raise BadConsentSignatureError(
                f"the signature does not verify under {enterprise}'s key", consent_id=consent_id
            ) from exc
        if signed_at > now + self.config.clock_skew:
            raise InvalidConsentError(f"signed_at {format_rfc3339(signed_at)} is in the future")

    def registered_key(self, enterprise: str) -> tuple[Ed25519PublicKey | None, str | None]:
        """The key ``enterprise`` signs with, by the ledger, and what disagrees with it.

        The second item is None when the registry's row agrees with the ledger;
        otherwise it names the disagreement (already raised as a ``row.mismatch``
        alert, in a transaction of its own: call this outside any write
        transaction). Key registrations check the replaced key with this.

        Raises:
            ledger.LedgerError: the ledger could not be read or the alert not recorded.
        """
        pending = PendingAlerts()
        row = self._keys.enterprise_key(enterprise)
        keys, disagreements = self._authority.keys(
            (enterprise,), {enterprise: row} if row is not None else {}, pending
        )
        self._authority.report(pending)
        return keys.get(enterprise), disagreements.get(enterprise)

    def _registered_keys(
        self, enterprises: Iterable[str], pending: PendingAlerts, session: Session | None
    ) -> tuple[dict[str, Ed25519PublicKey], dict[str, str]]:
        """:meth:`registered_key` of several, alerts left in ``pending``."""
        wanted = sorted(set(enterprises))
        if not wanted:
            return {}, {}
        rows = self._keys.enterprise_keys(wanted)
        return self._authority.keys(wanted, rows, pending, session=session)

    @staticmethod
    def _claim_nonce(
        session: Session, enterprise: str, nonce: str, *, consent_id: str, kind: str, now: datetime
    ) -> None:
        if session.get(NonceRow, (enterprise, nonce)) is not None:
            raise ReplayedNonceError(
                f"nonce {nonce} of {enterprise} was already used", consent_id=consent_id
            )
        session.add(
            NonceRow(
                enterprise=enterprise,
                nonce=nonce,
                consent_id=consent_id,
                kind=kind,
                accepted_at=format_rfc3339(now),
            )
        )

    def grant(self, signed: SignedReceipt, *, actor: str) -> ConsentRecord:
        """Verify and accept a signed consent receipt, and record it on the ledger.

        Judged at the service's clock: a receipt signed more than
        ``clock_skew`` ahead of it, or already expired by it, is refused.

        Raises:
            InvalidConsentError: malformed, signed in the future, unknown requester or field.
            WrongOriginError: made for another deployment.
            NoRegisteredKeyError: the enterprise has no registered key.
            ForeignKeyError: signed with a key other than the enterprise's.
            BadConsentSignatureError: the signature does not verify.
            ConsentExpiredError: its validity window has already ended.
            UnknownDatasetError: a dataset is not registered.
            DatasetNotOwnedError: a dataset belongs to another enterprise.
            ReplayedNonceError: the nonce or consent id was seen before, or the ledger
                already records this receipt (or a revocation of its consent) while
                no row holds it: a replay after a database edit (raised as an alert).
            ledger.LedgerError: recording failed; nothing was stored.
        """
        now = self.now()
        receipt = signed.receipt
        cid = receipt.consent_id
        self._authenticate(
            enterprise=receipt.enterprise,
            origin=receipt.origin,
            public_key=receipt.public_key,
            signed=signed,
            signed_at=receipt.signed_at,
            consent_id=cid,
            now=now,
        )
        if now >= receipt.valid_until:
            raise ConsentExpiredError(
                f"{cid} already expired at {format_rfc3339(receipt.valid_until)}", consent_id=cid
            )
        one = receipt.requester.identity
        if one is not None and self._requesters.requester_profile(one) is None:
            raise InvalidConsentError(f"requester {one!r} is not an active identity")
        try:
            with self._db.write() as session:
                index = self._store_grant(session, signed, actor=actor, now=now)
        except _LedgerReplay as replay:
            pending = PendingAlerts()
            pending.add(
                mismatch(
                    cid,
                    f"consent {cid} has no row but the ledger already records its receipt "
                    f"(entries {', '.join(map(str, replay.evidence))}); a replay of it was "
                    "refused",
                    evidence=replay.evidence,
                    details={"receipt_hash": signed.receipt_hash(), "actor": actor},
                ),
                None,
            )
            self._authority.report(pending)
            raise ReplayedNonceError(
                f"consent {cid} was already granted on the ledger (entry {replay.evidence[0]}) "
                "but has no row; refused as a replay and reported",
                consent_id=cid,
            ) from None
        logger.info("accepted consent %s of %s", cid, receipt.enterprise)
        return ConsentRecord(signed, now, index, 0)

    def _store_grant(
        self, session: Session, signed: SignedReceipt, *, actor: str, now: datetime
    ) -> int:
        """:meth:`grant`'s write transaction; the ``consent.grant`` entry's index.

        Raises:
            _LedgerReplay: no row holds the consent, but the ledger records its receipt.
        """
        receipt = signed.receipt
        cid = receipt.consent_id
        datasets = DatasetCatalog.many_in(session, receipt.datasets())
        for scope in receipt.scope:
            dataset = datasets[scope.dataset]
            if dataset.owner != receipt.enterprise:
                raise DatasetNotOwnedError(
                    scope.dataset, owner=dataset.owner, signer=receipt.enterprise
                )
            unknown = sorted(set(scope.fields) - set(dataset.fields))
            if unknown:
                raise InvalidConsentError(
                    f"dataset {scope.dataset} has no field(s) {', '.join(unknown)}"
                )
        if session.get(GrantRow, cid) is not None:
            raise ReplayedNonceError(f"consent {cid} was already accepted", consent_id=cid)
        evidence = self._authority.replay_evidence(session, cid, signed.receipt_hash())
        if evidence:
            raise _LedgerReplay(evidence)
        self._claim_nonce(
            session, receipt.enterprise, receipt.nonce, consent_id=cid, kind="grant", now=now
        )
        recorded = self._ledger.record(
            Event(
                GrantEntry.TYPE,
                actor,
                GrantEntry.of(signed).model_dump(mode="json"),
                subjects=(cid, receipt.enterprise, receipt_subject(signed.receipt_hash())),
            ),
            session=session,
        )
        key = receipt.requester.key
        session.add(
            GrantRow(
                consent_id=cid,
                enterprise=receipt.enterprise,
                requester_key=key,
                receipt=signed.canonical(),
                signature=signed.signature,
                receipt_hash=signed.receipt_hash(),
                valid_from=format_rfc3339(receipt.valid_from),
                valid_until=format_rfc3339(receipt.valid_until),
                use_limit=receipt.use_limit,
                use_count=0,
                accepted_at=format_rfc3339(now),
                ledger_index=recorded.index,
            )
        )
        session.flush()
        session.execute(
            insert(ScopeRow),
            [
                {"consent_id": cid, "dataset": s.dataset, "field": f, "requester_key": key}
                for s in receipt.scope
                for f in s.fields
            ],
        )
        return recorded.index

    def revoke(self, signed: SignedRevocation, *, actor: str) -> ConsentRecord:
        """Verify and accept a signed revocation; it binds every later decision.

        ``revoked_at`` is the service's clock at acceptance.

        Raises:
            InvalidConsentError: malformed or signed in the future.
            WrongOriginError, NoRegisteredKeyError, ForeignKeyError, BadConsentSignatureError:
                as for :meth:`grant`.
            ConsentNotFoundError: no such consent.
            ConsentAccessError: the consent belongs to another enterprise.
            ConsentRevokedError: already revoked.
            ReplayedNonceError: the nonce was seen before.
            ledger.LedgerError: recording failed; nothing changed.
        """
        now = self.now()
        revocation = signed.revocation
        cid = revocation.consent_id
        self._authenticate(
            enterprise=revocation.enterprise,
            origin=revocation.origin,
            public_key=revocation.public_key,
            signed=signed,
            signed_at=revocation.signed_at,
            consent_id=cid,
            now=now,
        )
        with self._db.write() as session:
            row = session.get(GrantRow, cid)
            if row is None:
                raise ConsentNotFoundError(cid)
            if row.enterprise != revocation.enterprise:
                raise ConsentAccessError(
                    f"{cid} was granted by {row.enterprise}, not by {revocation.enterprise}"
                )
            if row.revoked_at is not None:
                raise ConsentRevokedError(
                    f"{cid} was already revoked at {row.revoked_at}", consent_id=cid
                )
            self._claim_nonce(
                session,
                revocation.enterprise,
                revocation.nonce,
                consent_id=cid,
                kind="revoke",
                now=now,
            )
            recorded = self._ledger.record(
                Event(
                    RevokeEntry.TYPE,
                    actor,
                    RevokeEntry.of(signed).model_dump(mode="json"),
                    subjects=(cid, revocation.enterprise),
                ),
                session=session,
            )
            row.revoked_at = format_rfc3339(now)
            row.revocation = signed.canonical()
            row.revocation_signature = signed.signature
            row.revocation_ledger_index = recorded.index
            session.flush()
            record = _to_record(row)
        logger.info("revoked consent %s of %s", cid, revocation.enterprise)
        return record

    # -- reading -------------------------------------------------------------------------

    def get(self, consent_id: str) -> ConsentRecord:
        """The consent ``consent_id``.

        Raises:
            ConsentNotFoundError: no such consent.
        """
        with self._db.read() as session:
            row = session.get(GrantRow, consent_id)
            if row is None:
                raise ConsentNotFoundError(consent_id)
            return _to_record(row)

    def list(self, *, enterprise: str | None = None) -> list[ConsentRecord]:
        """Every consent (of ``enterprise`` when given), in order of acceptance."""
        with self._db.read() as session:
            query = select(GrantRow).order_by(GrantRow.ledger_index)
            if enterprise is not None:
                query = query.where(GrantRow.enterprise == enterprise)
            return [_to_record(row) for row in session.execute(query).scalars()]

    # -- checking ------------------------------------------------------------------------

    def covering_consents(self, request: ConsentRequest) -> CoverageReport:
        """Per owner of the requested datasets, the consents that cover ``request`` now.

        Candidates come from the (dataset, requester) index; each is checked in
        full (signature, origin, revocation, validity at the service's clock,
        scope, use limit) and refusals are explained per owner. Revocations,
        use counts and enterprise keys are checked against the ledger; a row
        that disagrees is refused and raised as an alert.

        Raises:
            RequestTimeSkewError: the request states a time too far from the clock.
            UnknownDatasetError: a requested dataset is not registered.
            ConsentConfigError: the service clock is naive.
            ledger.LedgerError: the ledger could not be read or an alert not recorded.
        """
        pending = PendingAlerts()
        with self._db.read() as session:
            report = self._check(session, request, self.now(), None, pending)
        self._authority.report(pending)
        return report

    def _refuse_skewed(self, request: ConsentRequest, at: datetime) -> None:
        """Refuse a stated request time off from the exchange's time ``at``."""
        if request.time is not None and abs(request.time - at) > self.config.request_skew:
            logger.info("refused a request time off from the exchange clock")
            raise RequestTimeSkewError(
                stated=request.time, exchange_time=at, allowed=self.config.request_skew
            )

    def _check(
        self,
        session: Session,
        request: ConsentRequest,
        at: datetime,
        datasets: Mapping[str, Dataset] | None,
        pending: PendingAlerts,
    ) -> CoverageReport:
        """The check, in ``session``; disagreements with the ledger left in ``pending``."""
        self._refuse_skewed(request, at)
        if datasets is None or set(datasets) != set(request.datasets):
            datasets = DatasetCatalog.many_in(session, request.datasets)
        by_owner: dict[str, list[str]] = defaultdict(list)
        for dataset in datasets.values():
            by_owner[dataset.owner].append(dataset.dataset_id)
        owners = tuple(sorted(by_owner))
        profile = self._requesters.requester_profile(request.requester)
        keys = (
            Requester.keys_for(profile.name, profile.role, profile.industry)
            if profile is not None
            else ()
        )
        rows: Sequence[Any] = ()  # Core rows of _CANDIDATES
        if keys:
            rows = (
                session.connection()
                .execute(
                    _CANDIDATES,
                    {"datasets": list(request.datasets), "keys": list(keys)},
                )
                .all()
            )
        covering: dict[str, list[ConsentRecord]] = defaultdict(list)
        refusals: dict[str, list[Refusal]] = defaultdict(list)
        rows = [r for r in rows if r.enterprise in by_owner]
        registered_keys, key_disagreements = self._registered_keys(
            {r.enterprise for r in rows}, pending, session
        )
        decoded: list[tuple[str, StoredGrant, ConsentRecord, bool]] = []
        for row in sorted(rows, key=lambda r: int(r.ledger_index)):
            owner = row.enterprise
            grant = StoredGrant(
                consent_id=row.consent_id,
                receipt=_as_bytes(row.receipt),
                signature=_as_bytes(row.signature),
                accepted_at=row.accepted_at,
                ledger_index=int(row.ledger_index),
                use_count=int(row.use_count),
                revoked_at=row.revoked_at,
                revocation_ledger_index=row.revocation_ledger_index,
            )
            try:
                record, verified = self._receipts.record_of(grant, registered_keys.get(owner))
            except (InvalidConsentError, ValueError):
                refusals[owner].append(
                    Refusal(
                        owner,
                        BadConsentSignatureError(
                            f"{row.consent_id}: the stored receipt is corrupt",
                            consent_id=row.consent_id,
                        ),
                    )
                )
                continue
            decoded.append((owner, grant, record, verified))
        facts = self._ledger_facts(session, [d[2] for d in decoded])
        for owner, grant, stored, verified in decoded:
            registered = registered_keys.get(owner)
            record, disagreement = self._believe_ledger(
                stored, facts.get(stored.consent_id), pending, session
            )
            signed_bytes = grant.receipt
            verify = self.config.verify_on_check and not verified
            if verify and registered is not None:
                authentic = authenticity_refusal(
                    record, registered_key=registered, origin=self.config.origin,
                    signed_bytes=signed_bytes,
                ) is None  # fmt: skip
                if authentic:
                    self._receipts.verified(grant, record, registered)
                    verify = False
            error = evaluate(
                record,
                request,
                at=at,
                owner_datasets=tuple(by_owner[owner]),
                requester_keys=keys,
                registered_key=registered,
                origin=self.config.origin,
                verify_signature=verify,
                signed_bytes=signed_bytes,
            )
            if error is None and record.enterprise != owner:
                error = ForeignKeyError(
                    "consent row names another owner", consent_id=record.consent_id
                )
            if disagreement is not None:
                error = disagreement  # the ledger's word: revoked, or used up
            if owner in key_disagreements and isinstance(
                error, ForeignKeyError | NoRegisteredKeyError | BadConsentSignatureError
            ):
                error = type(error)(
                    f"{error}; {key_disagreements[owner]} (refused and reported)",
                    consent_id=record.consent_id,
                )
            if error is None:
                covering[owner].append(record)
            else:
                refusals[owner].append(Refusal(owner, error))
        for owner in owners:
            if not covering.get(owner) and not refusals.get(owner):
                who = (
                    request.requester
                    if profile is not None
                    else (f"{request.requester} (not an active identity)")
                )
                refusals[owner].append(
                    Refusal(
                        owner,
                        NoConsentError(
                            f"{owner} has granted {who} no consent for {', '.join(by_owner[owner])}"
                        ),
                    )
                )
        return CoverageReport(
            request=request,
            owners=owners,
            at=at,
            covering={o: tuple(v) for o, v in covering.items()},
            refusals={o: tuple(v) for o, v in refusals.items()},
        )

    def _ledger_facts(
        self, session: Session, records: Sequence[ConsentRecord]
    ) -> dict[str, LedgerFacts]:
        """What the ledger says about the rows that say active (one lookup; two when some
        receipt has a use limit)."""
        live = [r for r in records if r.revoked_at is None]
        return self._authority.facts(
            session,
            [r.consent_id for r in live],
            [r.consent_id for r in live if r.signed.receipt.use_limit is not None],
        )

    def _believe_ledger(
        self,
        record: ConsentRecord,
        facts: LedgerFacts | None,
        pending: PendingAlerts,
        session: Session,
    ) -> tuple[ConsentRecord, ConsentRefusedError | None]:
        """``record`` as the ledger has it, and the refusal a disagreement earns (if any).

        A ``consent.revoke`` about a consent whose row says active: refused as
        revoked. More ``consent.use`` entries than the row counts: the ledger's
        count is the count (a refusal only if it reaches the limit). Either is
        queued in ``pending`` as a ``row.mismatch`` alert.
        """
        if facts is None or record.revoked_at is not None:
            return record, None
        cid = record.consent_id
        if facts.revocation is not None:
            message = (
                f"consent {cid} is revoked on the ledger (entry {facts.revocation}) but its "
                "row says active"
            )
            pending.add(
                mismatch(
                    cid,
                    message,
                    evidence=(facts.revocation,),
                    details={"enterprise": record.enterprise, "row_status": "active"},
                ),
                ("revoked", cid, str(facts.revocation)),
            )
            return record, ConsentRevokedError(f"{message}; refused and reported", consent_id=cid)
        limit = record.signed.receipt.use_limit
        counted = facts.uses
        if limit is None or counted <= record.use_count:
            return record, None
        message = (
            f"consent {cid} has been used {counted} times on the ledger but its row "
            f"counts {record.use_count}"
        )
        pending.add(
            mismatch(
                cid,
                message,
                evidence=self._authority.use_entries(session, cid),
                details={
                    "enterprise": record.enterprise,
                    "row_use_count": record.use_count,
                    "ledger_use_count": counted,
                    "use_limit": limit,
                },
            ),
            ("uses", cid, str(counted - record.use_count)),
        )
        fixed = replace(record, use_count=counted)
        if counted < limit:
            return fixed, None
        return fixed, UseLimitReachedError(
            f"{message}, the limit is {limit}; refused and reported", consent_id=cid
        )

    # -- using ---------------------------------------------------------------------------

    def use(
        self,
        request: ConsentRequest,
        *,
        decision_id: str,
        session: Session | None = None,
        datasets: Mapping[str, Dataset] | None = None,
    ) -> ConsentUse:
        """Check ``request`` and count one use of each chosen consent, atomically.

        The check, the use counts and the ``consent.use`` ledger entry share one
        write transaction, so a revocation accepted before this call is always
        seen, and use limits cannot be overrun by concurrent decisions. The
        check is judged at the service's clock, read once the transaction holds
        the write lock; the entry records that time as ``checked_at``.

        With ``session`` (a write transaction of the caller's, e.g. the
        pipeline's, which records its decision in it) the check, the counts and
        the entry join that transaction and commit or roll back with it (and
        the entry joins the session's ledger batch, if one is open).
        ``datasets``, the requested datasets as the caller already read them
        from the catalog (by id), saves reading them again; they are read when
        they are not exactly the request's.

        A receipt's signature is verified once for the bytes, signature and
        registered key it is stored with (:mod:`consent._verified`); the
        revocation, the validity window, the scope and the use count are
        judged from the row read in this transaction every time, and the row
        against the ledger (a revocation or uses it does not show are believed,
        and raised as alerts: in ``session`` when given, which then carries them,
        else in a transaction of their own after this one).

        Raises:
            InvalidConsentError: an empty decision id.
            RequestTimeSkewError: the request states a time too far from the clock.
            UnknownDatasetError: a requested dataset is not registered.
            ConsentConfigError: the service clock is naive.
            ledger.LedgerError: recording failed; no use was counted.
        """
        if not decision_id or len(decision_id) > 128:
            raise InvalidConsentError("decision_id must be 1-128 characters")
        pending = PendingAlerts()
        if session is not None:
            use = self._use(session, request, decision_id, datasets, pending)
            self._authority.report(pending, session=session)
            return use
        with self._db.write() as own:
            use = self._use(own, request, decision_id, datasets, pending)
        self._authority.report(pending)
        return use

    def _use(
        self,
        session: Session,
        request: ConsentRequest,
        decision_id: str,
        datasets: Mapping[str, Dataset] | None,
        pending: PendingAlerts,
    ) -> ConsentUse:
        """:meth:`use` inside ``session``."""
        now = self.now()
        report = self._check(session, request, now, datasets, pending)
        chosen = report.chosen()
        if not chosen:
            return ConsentUse(decision_id, report, {}, None)
        return self._count(session, report, chosen, decision_id, now)

    def check_ahead(
        self, request: ConsentRequest, *, datasets: Mapping[str, Dataset] | None = None
    ) -> CoverageReport:
        """:meth:`covering_consents` in a read transaction of its own, ahead of a use.

        The pipeline checks (and verifies receipts) here, outside the write
        lock, then counts the uses with :meth:`use_checked` under it.
        ``datasets`` as for :meth:`use`.

        Raises:
            RequestTimeSkewError: the request states a time too far from the clock.
            UnknownDatasetError: a requested dataset is not registered.
            ConsentConfigError: the service clock is naive.
            ledger.LedgerError: the ledger could not be read or an alert not recorded.
        """
        pending = PendingAlerts()
        with self._db.read() as session:
            report = self._check(session, request, self.now(), datasets, pending)
        self._authority.report(pending)
        return report

    def use_checked(
        self, report: CoverageReport, *, decision_id: str, session: Session
    ) -> ConsentUse | None:
        """Count one use of each consent ``report`` chose, if each still stands; else None.

        ``report`` is a check made ahead (:meth:`check_ahead`). In ``session``
        (a write transaction holding the lock) each chosen consent's row is
        read again in one statement: when every one is unrevoked, valid at the
        service's clock now and below its use limit with the count as it is
        now -- and the ledger shows no revocation and no more uses of any (one
        lookup) -- the uses are counted and ``consent.use`` recorded exactly as
        :meth:`use` does (``checked_at`` is this re-check's time). Otherwise
        nothing is written and None is returned: the caller checks afresh with
        :meth:`use` in the same transaction. So a revocation, a use counted by
        another decision, or an expiry between the two is always seen.

        Raises:
            InvalidConsentError: an empty decision id.
            ConsentConfigError: the service clock is naive.
            ledger.LedgerError: recording failed; no use was counted.
        """
        if not decision_id or len(decision_id) > 128:
            raise InvalidConsentError("decision_id must be 1-128 characters")
        chosen = report.chosen()
        if not chosen:
            return None
        connection = session.connection()
        ids = [r.consent_id for r in chosen.values()]
        standing = {
            row.consent_id: row for row in connection.execute(_STANDING, {"ids": ids}).all()
        }
        now = self.now()
        current: dict[str, ConsentRecord] = {}
        for owner, record in chosen.items():
            row = standing.get(record.consent_id)
            if row is None or row.revoked_at is not None:
                return None
            fresh = replace(record, use_count=int(row.use_count))
            if fresh.status(now) != "active":
                return None
            current[owner] = fresh
        facts = self._ledger_facts(session, list(current.values()))
        for record in current.values():
            fact = facts.get(record.consent_id)
            if fact is not None and (fact.revocation is not None or fact.uses > record.use_count):
                return None  # the row disagrees with the ledger: use() refuses and reports
        return self._count(session, report, current, decision_id, now)

    def _count(
        self,
        session: Session,
        report: CoverageReport,
        chosen: dict[str, ConsentRecord],
        decision_id: str,
        now: datetime,
    ) -> ConsentUse:
        """Count one use of each of ``chosen`` and record ``consent.use`` (in ``session``)."""
        request = report.request
        connection = session.connection()
        connection.execute(_COUNT_USE, {"ids": [r.consent_id for r in chosen.values()]})
        entry = UseEntry(
            decision_id=decision_id,
            request=request.to_dict(),
            checked_at=format_rfc3339(now),
            consents=_consent_refs(chosen.values()),
        )
        recorded = self._ledger.record(
            Event(
                UseEntry.TYPE,
                request.requester,
                entry.model_dump(mode="json"),
                subjects=tuple(ref.consent_id for ref in entry.consents),
            ),
            session=session,
        )
        stamp = format_rfc3339(now)
        connection.execute(
            insert(_USES),
            [
                {
                    "consent_id": r.consent_id,
                    "enterprise": r.enterprise,
                    "decision_id": decision_id,
                    "job_id": None,
                    "kind": "decision",
                    "time": stamp,
                    "ledger_index": recorded.index,
                }
                for r in chosen.values()
            ],
        )
        return ConsentUse(decision_id, report, chosen, recorded.index)

    def confirm_release(self, decision_id: str, *, job_id: str) -> tuple[str, ...]:
        """Before a job releases its result: are the decision's consents all still valid now?

        Each consent the decision used is re-checked at the service's clock:
        still signed by its enterprise's current key for this deployment, not
        revoked, already valid (``valid_from``) and not expired (``valid_until``).
        Records a ``consent.job`` entry either way (``released`` or ``stopped``,
        with the reason and ``checked_at``).

        Raises:
            ConsentNotFoundError: the decision used no consent.
            ConsentRevokedError: a consent was revoked since the decision (the job stops),
                by its row or by the ledger (a row that says active while the ledger
                records a revocation is raised as an alert too).
            ConsentNotYetValidError: a consent's validity has not started (the job stops).
            ConsentExpiredError: a consent expired since the decision (the job stops).
            ForeignKeyError, NoRegisteredKeyError, BadConsentSignatureError, WrongOriginError:
                the stored receipt no longer verifies under the enterprise's
                current key (rotated, or the row was altered); the job stops.
            ConsentConfigError: the service clock is naive.
            ledger.LedgerError: recording failed.
        """
        stopped: ConsentRefusedError | None = None
        pending = PendingAlerts()
        with self._db.write() as session:
            now = self.now()
            uses = (
                session.execute(
                    select(UseRow).where(
                        UseRow.decision_id == decision_id, UseRow.kind == "decision"
                    )
                )
                .scalars()
                .all()
            )
            if not uses:
                raise ConsentNotFoundError(f"decision {decision_id}")
            rows = []
            for use in uses:
                row = session.get(GrantRow, use.consent_id)
                if row is None:
                    raise ConsentNotFoundError(use.consent_id)
                rows.append(row)
            records = [_to_record(row) for row in rows]
            registered, _ = self._registered_keys((r.enterprise for r in records), pending, session)
            facts = self._authority.facts(
                session, [r.consent_id for r in records if r.revoked_at is None], ()
            )
            for row, record in zip(rows, records, strict=True):
                if stopped is not None:
                    break
                refusal = authenticity_refusal(
                    record,
                    registered_key=registered.get(record.enterprise),
                    origin=self.config.origin,
                    signed_bytes=_as_bytes(row.receipt),
                )
                if refusal is None:
                    refusal = validity_refusal(record, at=now)
                if refusal is None:
                    _, refusal = self._believe_ledger(
                        record, facts.get(record.consent_id), pending, session
                    )
                if refusal is not None:
                    # every leaf these two return takes (message, consent_id=)
                    stopped = type(refusal)(
                        f"job {job_id} must stop: {refusal}", consent_id=refusal.consent_id
                    )
            entry = JobEntry(
                decision_id=decision_id,
                job_id=job_id,
                status="released" if stopped is None else "stopped",
                reason=None if stopped is None else stopped.reason,
                checked_at=format_rfc3339(now),
                consents=_consent_refs(records),
            )
            recorded = self._ledger.record(
                Event(
                    JobEntry.TYPE,
                    "exchange",
                    entry.model_dump(mode="json"),
                    subjects=tuple(ref.consent_id for ref in entry.consents),
                ),
                session=session,
            )
            session.execute(
                insert(UseRow),
                [
                    {
                        "consent_id": r.consent_id,
                        "enterprise": r.enterprise,
                        "decision_id": decision_id,
                        "job_id": job_id,
                        "kind": "job",
                        "time": format_rfc3339(now),
                        "ledger_index": recorded.index,
                    }
                    for r in records
                ],
            )
        self._authority.report(pending)
        if stopped is not None:
            raise stopped
        return tuple(r.consent_id for r in records)

    def usage(self, enterprise: str) -> builtins.list[ConsentUsage]:
        """Who used ``enterprise``'s data: each of its consents and every decision and job
        that relied on it, read back from the ledger entries that recorded them.

        Raises:
            ledger.LedgerError: a recorded entry could not be read.
            InvalidConsentError: a ledger entry does not match the use it should record.
        """
        records = self.list(enterprise=enterprise)
        with self._db.read() as session:
            uses = [
                _UseView(r.consent_id, r.decision_id, r.job_id, r.kind, r.ledger_index)
                for r in session.execute(
                    select(UseRow).where(UseRow.enterprise == enterprise).order_by(UseRow.id)
                ).scalars()
            ]
        per_consent: dict[str, list[UsageEntry]] = defaultdict(list)
        decisions: dict[str, ConsentRequest] = {}
        for use in uses:
            entry = self._ledger.entry(use.ledger_index)
            parsed: UseEntry | JobEntry
            try:
                if entry.type == UseEntry.TYPE:
                    parsed = UseEntry.model_validate(entry.payload)
                elif entry.type == JobEntry.TYPE:
                    parsed = JobEntry.model_validate(entry.payload)
                else:
                    raise InvalidConsentError(f"ledger entry {entry.index} is a {entry.type}")
            except ValidationError as exc:
                raise InvalidConsentError(
                    f"ledger entry {entry.index} is not a valid {entry.type}"
                ) from exc
            if parsed.decision_id != use.decision_id or not any(
                ref.consent_id == use.consent_id for ref in parsed.consents
            ):
                raise InvalidConsentError(
                    f"ledger entry {use.ledger_index} does not record {use.consent_id}"
                )
            request: ConsentRequest | None
            if isinstance(parsed, UseEntry):
                request = decisions[use.decision_id] = parsed.consent_request()
                status = "used"
            else:
                request = decisions.get(use.decision_id)
                status = parsed.status
            per_consent[use.consent_id].append(
                UsageEntry(
                    kind=use.kind,
                    decision_id=use.decision_id,
                    job_id=use.job_id,
                    requester=request.requester if request else entry.actor,
                    purpose=request.purpose.value if request else "",
                    operation=request.operation.value if request else "",
                    engine=request.engine.value if request else "",
                    time=entry.time,
                    ledger_index=entry.index,
                    status=status,
                )
            )
        return [ConsentUsage(r, tuple(per_consent.get(r.consent_id, ()))) for r in records]


def _as_bytes(value: object) -> bytes:
    """Stored receipt bytes; a database edit can turn the BLOB into TEXT."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


@dataclass(frozen=True)
class _UseView:
    consent_id: str
    decision_id: str
    job_id: str | None
    kind: str
    ledger_index: int


def _consent_refs(records: Iterable[ConsentRecord]) -> list[ConsentRef]:
    return [
        ConsentRef(
            consent_id=r.consent_id, enterprise=r.enterprise, receipt_hash=r.signed.receipt_hash()
        )
        for r in sorted(records, key=lambda r: r.enterprise)
    ]


class _LedgerReplay(Exception):  # noqa: N818 -- internal signal, never leaves the service
    """Inside a grant's transaction: the ledger already records the receipt (rolls it back)."""

    def __init__(self, evidence: Sequence[int]) -> None:
        super().__init__("the ledger already records this receipt")
        self.evidence = tuple(evidence)
