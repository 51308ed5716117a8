"""The edge PKI service: CA keys at rest, enrolment, re-enrolment, authentication, revocation.

Every issuance, renewal and revocation is written with its ledger event in
one transaction, through the injected :class:`~core.events.EventRecorder`,
with the serial and the SHA-256 fingerprint of the certificate.

A device identity (enterprise + device name) has one *line* of certificates
(:mod:`edge_tls._lines`): an enrolment or renewal supersedes the rest of the
line in the transaction that issues the new certificate, and revoking any
certificate revokes the whole line. The CRL and OCSP read the same rows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import format_rfc3339, parse_rfc3339, require_aware
from core.db import Database
from core.duty import SignedDuty
from core.events import Event, EventRecorder
from core.keys import MasterKey
from edge_tls._ca import (
    CertificateAuthority,
    load_private_key_der,
    private_key_der,
)
from edge_tls._csr import validate_csr
from edge_tls._issued import (
    CertificateRecord,
    DeviceCertificate,
    IssuedCertificate,
    ServerCredentials,
)
from edge_tls._lines import entry, revoke_line, revoked_entries, supersede
from edge_tls._profiles import CertificateKind, DeviceId, PkiConfig, fingerprint
from edge_tls._revocation import (
    CertificateState,
    LineRevocation,
    RevocationReason,
    SerialStatus,
    build_crl,
    build_ocsp_response,
)
from edge_tls._tables import AuthorityRow, BootstrapTokenRow, CertificateRow
from edge_tls._tokens import BootstrapToken, consume_token, new_token_row
from edge_tls.entries import (
    CaInitEntry,
    CertificateIssueEntry,
    CertificateRenewEntry,
    CertificateRevokeEntry,
    EnrolFailureEntry,
    EnrolFailureReason,
    RevokedMemberEntry,
    SignedDutyEntry,
    TokenCreateEntry,
)
from edge_tls.errors import (
    AlreadyRevokedError,
    BootstrapTokenError,
    CaAlreadyInitializedError,
    CaNotInitializedError,
    CertificateExpiredError,
    CertificateRevokedError,
    ClientCertificateMissingError,
    CsrError,
    EnrollmentError,
    SerialNotFoundError,
    TokenExpiredError,
    TokenUnknownError,
    TokenUsedError,
    UnknownCertificateError,
)

__all__ = ["EdgePki"]

logger = logging.getLogger(__name__)

ENROL_FAILURES_RECORDED_PER_HOUR = 60
"""Refused enrolments recorded per enterprise and hour (per process); past it they are
logged only, so an unauthenticated client cannot flood the ledger."""
_FAILURE_REASONS: tuple[tuple[type[EnrollmentError], EnrolFailureReason], ...] = (
    (TokenUnknownError, "token_unknown"),
    (TokenUsedError, "token_used"),
    (TokenExpiredError, "token_expired"),
    (BootstrapTokenError, "token_refused"),
    (CsrError, "csr_refused"),
)


def _aad(name: str) -> bytes:
    return b"ibx/edge-tls/ca-key/" + name.encode()


class EdgePki:
    """The CA and its records on one database."""

    def __init__(
        self, db: Database, master: MasterKey, recorder: EventRecorder, config: PkiConfig
    ) -> None:
        self._db = db
        self._master = master
        self._recorder = recorder
        self.config = config
        self._authority: CertificateAuthority | None = None
        self._lock = threading.Lock()
        self._failures: dict[str, list[datetime]] = {}
        self._failures_lock = threading.Lock()

    # -- the CA itself -------------------------------------------------------------------

    def init(self, *, actor: str, now: datetime) -> CertificateAuthority:
        """Create the root and issuing CA (ECDSA P-256), keys encrypted under the master key.

        Raises:
            CaAlreadyInitializedError: a CA exists already on this database.
        """
        generated = CertificateAuthority.generate(now=now, config=self.config)
        ca = generated.authority
        stamp = format_rfc3339(require_aware(now, what="now"))
        with self._db.write() as session:
            if session.get(AuthorityRow, "issuing") is not None:
                raise CaAlreadyInitializedError(
                    "the edge CA already exists on this data dir; it is never replaced"
                )
            for name, cert, key in (
                ("root", ca.root, generated.root_key),
                ("issuing", ca.issuing, ca.issuing_key),
            ):
                session.add(
                    AuthorityRow(
                        name=name,
                        certificate_der=cert.public_bytes(Encoding.DER),
                        encrypted_key=self._master.encrypt(private_key_der(key), aad=_aad(name)),
                        created_at=stamp,
                    )
                )
            self._recorder.record(
                Event(
                    CaInitEntry.TYPE,
                    actor,
                    CaInitEntry(
                        root_fingerprint=fingerprint(ca.root),
                        issuing_fingerprint=fingerprint(ca.issuing),
                        issuing_serial=format(ca.issuing.serial_number, "x"),
                        trust_domain=self.config.trust_domain,
                    ).payload(),
                ),
                session=session,
            )
        logger.info("edge CA created (issuing %s)", fingerprint(ca.issuing)[:16])
        with self._lock:
            self._authority = ca
        return ca

    def is_initialized(self) -> bool:
        """Whether ``init`` has run on this database."""
        with self._db.read() as session:
            return session.get(AuthorityRow, "issuing") is not None

    def authority(self) -> CertificateAuthority:
        """The CA, loaded (and its issuing key decrypted) once.

        Raises:
            CaNotInitializedError: ``ibx pki init`` has not run.
            KeyDecryptionError: the stored key does not open under this master key.
        """
        with self._lock:
            if self._authority is not None:
                return self._authority
            with self._db.read() as session:
                rows = {
                    row.name: (row.certificate_der, row.encrypted_key)
                    for row in session.execute(select(AuthorityRow)).scalars()
                }
            if "issuing" not in rows or "root" not in rows:
                raise CaNotInitializedError("no edge CA on this data dir; run `ibx pki init`")
            issuing_der, issuing_blob = rows["issuing"]
            key = load_private_key_der(self._master.decrypt(issuing_blob, aad=_aad("issuing")))
            self._authority = CertificateAuthority(
                root=x509.load_der_x509_certificate(rows["root"][0]),
                issuing=x509.load_der_x509_certificate(issuing_der),
                issuing_key=key,
                config=self.config,
            )
            return self._authority

    # -- enrolment -----------------------------------------------------------------------

    def create_token(
        self,
        device: DeviceId,
        *,
        actor: str,
        now: datetime,
        ttl: timedelta | None = None,
    ) -> BootstrapToken:
        """A one-time bootstrap token for ``device`` (shown once, stored hashed).

        Raises:
            ValueError: a ttl that is not positive or beyond the configured maximum.
        """
        lifetime = ttl or self.config.token_ttl
        if not timedelta(0) < lifetime <= self.config.max_token_ttl:
            raise ValueError(f"token ttl must be positive and at most {self.config.max_token_ttl}")
        when = require_aware(now, what="now")
        token, row = new_token_row(device, now=when, expires_at=when + lifetime)
        with self._db.write() as session:
            session.add(row)
            self._recorder.record(
                Event(
                    TokenCreateEntry.TYPE,
                    actor,
                    TokenCreateEntry(
                        enterprise=device.enterprise,
                        device=device.device,
                        expires_at=format_rfc3339(token.expires_at),
                    ).payload(),
                ),
                session=session,
            )
        return token

    def enroll(
        self,
        device_name: str,
        token: str,
        csr_body: bytes,
        *,
        now: datetime,
        admit: Callable[[DeviceId], None] | None = None,
    ) -> IssuedCertificate:
        """EST simpleenroll: spend ``token`` and certify the CSR's key for its device.

        ``admit`` (if given) is called with the token's device inside the
        transaction, before anything is issued; if it raises, the token stays
        unspent and nothing is issued (the exchange refuses tokens of revoked
        enterprises this way).

        Raises:
            CaNotInitializedError: no CA.
            TokenUnknownError, TokenUsedError, TokenExpiredError: the token cannot enrol.
            CsrError: the CSR is refused (see :func:`validate_csr`).
            EnrollmentError: whatever ``admit`` raises.
        """
        ca = self.authority()
        try:
            with self._db.write() as session:
                device, spent = consume_token(session, device_name, token, now=now)
                if admit is not None:
                    admit(device)
                request = validate_csr(csr_body, device, trust_domain=self.config.trust_domain)
                cert = ca.issue_device(request.public_key, device, now=now)
                superseded = supersede(session, device, now=now)
                self._store(session, cert, CertificateKind.DEVICE, device)
                spent.used_serial_hex = format(cert.serial_number, "x")
                issued = IssuedCertificate(cert, device)
                self._record_issue(session, issued, actor=device.device, superseded=superseded)
        except EnrollmentError as exc:
            self._record_enrol_failure(device_name, exc, now=now)
            raise
        logger.info("enrolled %s/%s serial %x", device.enterprise, device.device, issued.serial)
        return issued

    def _record_enrol_failure(
        self, device_name: str, error: EnrollmentError, *, now: datetime
    ) -> None:
        """Record a refused enrolment (``edge.enrol.failure``) for the enterprise whose
        bootstrap token names ``device_name`` (its newest). A device name no token names
        is logged only, as are failures past :data:`ENROL_FAILURES_RECORDED_PER_HOUR`.
        A failure to record is logged; the refusal stands either way."""
        reason: EnrolFailureReason = next(
            (code for kind, code in _FAILURE_REASONS if isinstance(error, kind)), "refused"
        )
        if not 0 < len(device_name) <= 128:  # the device column's width
            logger.info("enrolment refused (%s), not recorded", reason)
            return
        try:
            with self._db.write() as session:
                enterprise = session.execute(
                    select(BootstrapTokenRow.enterprise)
                    .where(BootstrapTokenRow.device == device_name)
                    .order_by(BootstrapTokenRow.created_at.desc())
                    .limit(1)
                ).scalar_one_or_none()
                if enterprise is None or not self._failure_budget(enterprise, now):
                    logger.info("enrolment refused (%s), not recorded", reason)
                    return
                entry = EnrolFailureEntry(enterprise=enterprise, device=device_name, reason=reason)
                self._recorder.record(
                    Event(entry.TYPE, device_name, entry.payload(), subjects=(enterprise,)),
                    session=session,
                )
        except Exception as exc:
            logger.error("could not record a refused enrolment: %s", type(exc).__name__)

    def _failure_budget(self, enterprise: str, now: datetime) -> bool:
        """Whether another refused enrolment of ``enterprise`` may be recorded this hour."""
        since = now - timedelta(hours=1)
        with self._failures_lock:
            recent = [t for t in self._failures.get(enterprise, ()) if t > since]
            if len(recent) >= ENROL_FAILURES_RECORDED_PER_HOUR:
                self._failures[enterprise] = recent
                return False
            recent.append(now)
            self._failures[enterprise] = recent
            if len(self._failures) > 10_000:  # forget enterprises quiet for an hour
                for name in [n for n, ts in self._failures.items() if ts[-1] <= since]:
                    del self._failures[name]
            return True

    def reenroll(
        self, peer: DeviceCertificate, csr_body: bytes, *, now: datetime
    ) -> IssuedCertificate:
        """EST simplereenroll: a new certificate for the same identity (new key allowed).

        The new certificate supersedes the one presented (and any other valid
        certificate of the device's line): they are revoked, reason
        ``superseded``, in the same transaction, so only the newest is valid.
        The presented certificate is re-checked inside that transaction, so a
        revocation that lands between authentication and renewal wins.

        Raises:
            CaNotInitializedError: no CA.
            CsrError: the CSR is refused, including one naming another identity.
            CertificateRevokedError: the presented certificate was revoked meanwhile.
        """
        ca = self.authority()
        request = validate_csr(csr_body, peer.device, trust_domain=self.config.trust_domain)
        cert = ca.issue_device(request.public_key, peer.device, now=now)
        issued = IssuedCertificate(cert, peer.device)
        with self._db.write() as session:
            current = session.execute(
                select(CertificateRow)
                .where(CertificateRow.serial_hex == format(peer.serial, "x"))
                .with_for_update()
            ).scalar_one_or_none()
            if current is None or current.revoked_at is not None:
                raise CertificateRevokedError(
                    f"certificate {peer.serial:x} was revoked; it cannot renew",
                    serial=peer.serial,
                )
            superseded = supersede(session, peer.device, now=now)
            self._store(session, cert, CertificateKind.DEVICE, peer.device)
            self._record_issue(
                session,
                issued,
                actor=peer.device.device,
                previous_serial=format(peer.serial, "x"),
                superseded=superseded,
            )
        logger.info("renewed %s serial %x -> %x", peer.device.device, peer.serial, issued.serial)
        return issued

    def issue_server_certificate(
        self, hosts: tuple[str, ...], *, now: datetime
    ) -> ServerCredentials:
        """A fresh key and certificate for the edge TLS listener (recorded like any issuance).

        Raises:
            CaNotInitializedError: no CA.
        """
        ca = self.authority()
        key = ec.generate_private_key(ec.SECP256R1())
        cert = ca.issue_server(key.public_key(), hosts, now=now)
        with self._db.write() as session:
            self._store(session, cert, CertificateKind.SERVER, None)
            self._recorder.record(
                Event(
                    CertificateIssueEntry.TYPE,
                    "exchange",
                    CertificateIssueEntry(
                        kind="server",
                        serial=format(cert.serial_number, "x"),
                        fingerprint=fingerprint(cert),
                        hosts=hosts,
                        not_after=format_rfc3339(cert.not_valid_after_utc),
                    ).payload(),
                ),
                session=session,
            )
        chain = b"".join(c.public_bytes(Encoding.PEM) for c in (cert, ca.issuing))
        key_pem = key.private_bytes(
            Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return ServerCredentials(chain, key_pem)

    def _store(
        self,
        session: Session,
        cert: x509.Certificate,
        kind: CertificateKind,
        device: DeviceId | None,
    ) -> None:
        session.add(
            CertificateRow(
                serial_hex=format(cert.serial_number, "x"),
                fingerprint=fingerprint(cert),
                kind=kind.value,
                enterprise=device.enterprise if device else None,
                device=device.device if device else None,
                subject_uri=device.spiffe_id(self.config.trust_domain) if device else None,
                not_before=format_rfc3339(cert.not_valid_before_utc),
                not_after=format_rfc3339(cert.not_valid_after_utc),
                certificate_der=cert.public_bytes(Encoding.DER),
            )
        )

    def _record_issue(
        self,
        session: Session,
        issued: IssuedCertificate,
        *,
        actor: str,
        previous_serial: str | None = None,
        superseded: list[str] | None = None,
    ) -> None:
        """Record an enrolment (``edge.certificate.issue``) or, with ``previous_serial``, a
        renewal (``edge.certificate.renew``)."""
        entry: CertificateIssueEntry | CertificateRenewEntry
        common = {
            "kind": "device",
            "serial": format(issued.serial, "x"),
            "fingerprint": issued.fingerprint,
            "enterprise": issued.device.enterprise,
            "device": issued.device.device,
            "spiffe_id": issued.device.spiffe_id(self.config.trust_domain),
            "not_after": format_rfc3339(issued.certificate.not_valid_after_utc),
            "superseded": tuple(superseded) if superseded else None,
        }
        if previous_serial is None:
            entry = CertificateIssueEntry.model_validate(common)
        else:
            entry = CertificateRenewEntry.model_validate(
                {**common, "previous_serial": previous_serial}
            )
        self._recorder.record(Event(entry.TYPE, actor, entry.payload()), session=session)

    # -- authentication and revocation ---------------------------------------------------

    def authenticate(self, peer_der: bytes | None, *, now: datetime) -> DeviceCertificate:
        """The device behind a TLS peer certificate, checked against the registry *now*.

        The TLS layer already verified the chain at handshake time; this check
        runs on every request, so a revocation or expiry takes effect at once.

        Raises:
            ClientCertificateMissingError: no client certificate.
            UnknownCertificateError: not a device certificate this CA issued.
            CertificateRevokedError: revoked.
            CertificateExpiredError: outside its validity period at ``now``.
        """
        if not peer_der:
            raise ClientCertificateMissingError(
                "this route needs a device client certificate (mutual TLS)"
            )
        when = require_aware(now, what="now")
        try:
            cert = x509.load_der_x509_certificate(peer_der)
            self.authority().verify_issued(cert)
        except ValueError as exc:
            raise UnknownCertificateError(
                "the client certificate was not issued by this CA"
            ) from exc
        row = self._row(cert.serial_number)
        if (
            row is None
            or row.fingerprint != fingerprint(cert)
            or row.kind != CertificateKind.DEVICE
        ):
            raise UnknownCertificateError(
                "the client certificate is not a device certificate of this CA"
            )
        if row.revoked_at is not None:
            raise CertificateRevokedError(
                f"certificate {row.serial_hex} was revoked at {row.revoked_at}",
                serial=cert.serial_number,
            )
        if not cert.not_valid_before_utc <= when < cert.not_valid_after_utc:
            raise CertificateExpiredError(
                f"certificate {row.serial_hex} is valid only from {row.not_before} "
                f"until {row.not_after}",
                serial=cert.serial_number,
            )
        assert row.enterprise is not None and row.device is not None
        return DeviceCertificate(
            DeviceId(row.enterprise, row.device),
            cert.serial_number,
            row.fingerprint,
            cert.not_valid_after_utc,
        )

    def revoke(
        self,
        serial: int,
        reason: RevocationReason,
        *,
        actor: str,
        now: datetime,
        duty: SignedDuty | None = None,
    ) -> LineRevocation:
        """Revoke the certificate with ``serial`` and the rest of its device's line.

        Every still-valid certificate of the same device identity (those it was
        renewed from and those renewed from it) is revoked with ``reason``; with
        ``key-compromise``, certificates of the line already revoked for another
        reason (e.g. superseded) have their reason raised to key-compromise,
        keeping their revocation time. A server certificate is revoked alone.
        All of them are refused on their very next request.

        ``duty`` is the acting officer's signed ``certificate.revoke`` (verified by
        the caller against the officer's ledgered key); it goes into the entry.

        Raises:
            SerialNotFoundError: no certificate with that serial.
            AlreadyRevokedError: nothing left to change (the whole line is revoked already).
        """
        when = require_aware(now, what="now").replace(microsecond=0)
        stamp = format_rfc3339(when)
        serial_hex = format(serial, "x")
        with self._db.write() as session:
            row = session.get(CertificateRow, serial_hex)
            if row is None:
                raise SerialNotFoundError(f"no certificate with serial {serial_hex}", serial=serial)
            changed = revoke_line(session, row, reason, stamp=stamp)
            if not changed:
                raise AlreadyRevokedError(
                    f"certificate {serial_hex} was already revoked at {row.revoked_at}, "
                    "and so is the rest of its device's line",
                    serial=serial,
                )
            self._recorder.record(
                Event(
                    CertificateRevokeEntry.TYPE,
                    actor,
                    CertificateRevokeEntry(
                        serial=serial_hex,
                        fingerprint=row.fingerprint,
                        reason=reason,
                        enterprise=row.enterprise,
                        device=row.device,
                        revoked_at=stamp,
                        line=tuple(
                            RevokedMemberEntry(serial=m.serial_hex, fingerprint=m.fingerprint)
                            for m in changed
                        ),
                        duty=SignedDutyEntry.model_validate(duty.to_dict()) if duty else None,
                    ).payload(),
                    subjects=(serial_hex,),
                ),
                session=session,
            )
            requested = entry(row)
            revoked = tuple(entry(m) for m in changed)
        logger.info(
            "revoked certificate %s (%s) and %d of its line", serial_hex, reason.value, len(revoked)
        )
        return LineRevocation(requested, revoked)

    def certificates(self, *, enterprise: str | None = None) -> list[CertificateRecord]:
        """Every certificate issued (optionally for one enterprise), oldest first."""
        with self._db.read() as session:
            query = select(CertificateRow).order_by(CertificateRow.not_before)
            if enterprise is not None:
                query = query.where(CertificateRow.enterprise == enterprise)
            return [
                CertificateRecord(
                    serial=int(row.serial_hex, 16),
                    fingerprint=row.fingerprint,
                    kind=CertificateKind(row.kind),
                    subject=row.subject_uri,
                    not_after=parse_rfc3339(row.not_after),
                    revoked_at=parse_rfc3339(row.revoked_at) if row.revoked_at else None,
                )
                for row in session.execute(query).scalars()
            ]

    def _row(self, serial: int) -> CertificateRow | None:
        with self._db.read() as session:
            row = session.get(CertificateRow, format(serial, "x"))
            if row is not None:
                session.expunge(row)
            return row

    def crl(self, *, now: datetime) -> bytes:
        """DER of a freshly signed CRL of every revoked certificate.

        Raises:
            CaNotInitializedError: no CA.
        """
        ca = self.authority()
        when = require_aware(now, what="now").replace(microsecond=0)
        with self._db.read() as session:
            revoked = revoked_entries(session, now=when)
        crl = build_crl(ca, revoked, number=int(when.timestamp()), now=when)
        return crl.public_bytes(Encoding.DER)

    def ocsp(self, request_der: bytes, *, now: datetime) -> bytes:
        """DER of the OCSP response to an RFC 6960 request.

        Raises:
            CaNotInitializedError: no CA.
        """
        ca = self.authority()

        def lookup(serial: int) -> SerialStatus | None:
            row = self._row(serial)
            if row is None:
                return None
            if row.revoked_at is None:
                return SerialStatus(CertificateState.GOOD)
            return SerialStatus(CertificateState.REVOKED, entry(row))

        when = require_aware(now, what="now").replace(microsecond=0)
        return build_ocsp_response(ca, request_der, lookup, now=when)
