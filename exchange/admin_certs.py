"""Administrators' client certificates: the second factor of the three separated duties.

A system administrator, security officer or auditor authenticates with its
bearer token AND a client certificate the deployment CA issued for that very
identity. The certificate names the identity in one URI SAN,
``spiffe://<trust domain>/identity/<name>`` (device certificates name
``.../enterprise/<E>/device/<D>``), carries only the clientAuth usage, and is
listed in this module's own register (``exchange_admin_certificates``): a
device certificate, though signed by the same CA, is never in it.

:meth:`AdminCertificates.belongs_to` decides on every request, so a
revocation, a re-issue (which supersedes the previous certificate) or the
revocation of the identity counts at once. Issuances and revocations are
recorded on the ledger (``identity.certificate.issue`` / ``.revoke``). The
private key is generated here and handed over once, in a mode-0600 file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import String, bindparam, select
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import format_rfc3339, parse_rfc3339, require_aware, utcnow
from core.db import Base, Database
from core.duty import DutyError, SignedDuty, check_duty
from core.events import Event, EventRecorder
from edge_tls import CaNotInitializedError, EdgePki, fingerprint
from exchange.access import ADMIN_ROLES
from exchange.identities import (
    Identity,
    IdentityConflictError,
    IdentityError,
    IdentityNotFoundError,
    IdentityRegistry,
    Role,
    Status,
)
from exchange.identity_entries import CertificateIssueEntry, CertificateRevokeEntry

__all__ = [
    "AdminCertificateRecord",
    "AdminCertificates",
    "AdminCredentials",
    "identity_uri",
]

logger = logging.getLogger(__name__)

_BACKDATE = timedelta(minutes=5)


def identity_uri(trust_domain: str, name: str) -> str:
    """The URI SAN that names identity ``name`` (``@`` and the like percent-encoded)."""
    return f"spiffe://{trust_domain}/identity/{quote(name, safe='._-')}"


class _AdminCertificateRow(Base):
    __tablename__ = "exchange_admin_certificates"

    serial_hex: Mapped[str] = mapped_column(String(42), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    role: Mapped[str] = mapped_column(String(32))
    not_before: Mapped[str] = mapped_column(String(40))
    not_after: Mapped[str] = mapped_column(String(40))
    revoked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


_BY_FINGERPRINT = select(_AdminCertificateRow.__table__).where(
    _AdminCertificateRow.__table__.c.fingerprint == bindparam("fingerprint")
)
_VERIFIED_CACHE = 1024


@dataclass(frozen=True)
class AdminCertificateRecord:
    """One administrator certificate of the register (never its key)."""

    serial: int
    fingerprint: str
    name: str
    role: str
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: str | None


@dataclass(frozen=True, repr=False)
class AdminCredentials:
    """A new administrator certificate, its chain and its private key (shown once)."""

    name: str
    certificate: x509.Certificate
    chain_pem: bytes
    """The certificate, then the issuing CA (what a client sends)."""
    key_pem: bytes
    superseded: tuple[str, ...]
    """Serials (hex) of the identity's earlier certificates this one replaced."""

    def __repr__(self) -> str:
        return f"AdminCredentials(name={self.name!r}, serial={self.serial:x}, key=<redacted>)"

    @property
    def serial(self) -> int:
        """The certificate's serial number."""
        return self.certificate.serial_number

    @property
    def fingerprint(self) -> str:
        """Hex SHA-256 of the DER certificate."""
        return fingerprint(self.certificate)

    @property
    def not_after(self) -> datetime:
        """When the certificate expires."""
        return self.certificate.not_valid_after_utc

    def write(self, directory: Path) -> tuple[Path, Path]:
        """Write ``NAME.crt`` (chain, mode 0644) and ``NAME.key`` (mode 0600) into ``directory``.

        Existing files of the same names are replaced; the key is never
        readable by others, not even for a moment.

        Raises:
            OSError: the directory cannot be created or written.
        """
        directory.mkdir(parents=True, exist_ok=True)
        cert_path = directory / f"{self.name}.crt"
        key_path = directory / f"{self.name}.key"
        _write_file(key_path, self.key_pem, 0o600)
        _write_file(cert_path, self.chain_pem, 0o644)
        return cert_path, key_path


def _write_file(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        tmp.chmod(mode)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class AdminCertificates:
    """Issue, revoke and check administrators' client certificates."""

    def __init__(
        self,
        db: Database,
        recorder: EventRecorder,
        identities: IdentityRegistry,
        pki: EdgePki,
        *,
        lifetime: timedelta,
    ) -> None:
        self._db = db
        self._recorder = recorder
        self._identities = identities
        self._pki = pki
        self._lifetime = lifetime
        self._verified: dict[str, object] = {}
        """Fingerprints whose CA signature checked out, and the authority that checked it:
        a signature over fixed bytes stays valid, so only the register (revocation,
        supersession, the identity) is read on every request."""

    def issue(self, name: str, *, actor: str, now: datetime) -> AdminCredentials:
        """A new client certificate and key for administrator ``name``.

        Any earlier certificate of ``name`` still valid is revoked (reason
        ``superseded``) in the same transaction: an administrator holds one.

        Raises:
            IdentityNotFoundError: no active identity of that name.
            IdentityError: the identity is not an administrator.
            CaNotInitializedError: the deployment has no CA yet.
        """
        when = require_aware(now, what="now")
        identity = self._identities.get(name)
        if identity.status is not Status.ACTIVE:
            raise IdentityNotFoundError(f"no active identity named {name!r}")
        if identity.role not in ADMIN_ROLES:
            raise IdentityError(
                f"{name} is {identity.role}: only administrators (sysadmin, security_officer, "
                "auditor) hold client certificates"
            )
        authority = self._pki.authority()
        key = ec.generate_private_key(ec.SECP256R1())
        not_after = min(when + self._lifetime, authority.issuing.not_valid_after_utc)
        uri = identity_uri(self._pki.config.trust_domain, name)
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ibx administrators"),
                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, identity.role.value),
                        x509.NameAttribute(NameOID.COMMON_NAME, name),
                    ]
                )
            )
            .issuer_name(authority.issuing.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(when - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    authority.issuing_key.public_key()
                ),
                critical=False,
            )
            .sign(authority.issuing_key, hashes.SHA256())
        )
        stamp = format_rfc3339(when.replace(microsecond=0))
        with self._db.write() as session:
            superseded = []
            for row in session.execute(
                select(_AdminCertificateRow).where(
                    _AdminCertificateRow.name == name, _AdminCertificateRow.revoked_at.is_(None)
                )
            ).scalars():
                row.revoked_at = stamp
                row.revocation_reason = "superseded"
                superseded.append(row.serial_hex)
            session.add(
                _AdminCertificateRow(
                    serial_hex=format(cert.serial_number, "x"),
                    fingerprint=fingerprint(cert),
                    name=name,
                    role=identity.role.value,
                    not_before=format_rfc3339(cert.not_valid_before_utc),
                    not_after=format_rfc3339(cert.not_valid_after_utc),
                )
            )
            session.flush()
            entry = CertificateIssueEntry(
                name=name,
                role=identity.role.value,
                serial=format(cert.serial_number, "x"),
                fingerprint=fingerprint(cert),
                subject_uri=uri,
                not_after=format_rfc3339(cert.not_valid_after_utc),
                superseded=sorted(superseded),
            )
            self._recorder.record(
                Event(entry.TYPE, actor, entry.to_payload(), subjects=(name, entry.serial)),
                session=session,
            )
        logger.info("issued client certificate %x for %s", cert.serial_number, name)
        chain = b"".join(c.public_bytes(Encoding.PEM) for c in (cert, authority.issuing))
        key_pem = key.private_bytes(
            Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return AdminCredentials(name, cert, chain, key_pem, tuple(sorted(superseded)))

    def revoke(
        self,
        name: str,
        *,
        duty: SignedDuty,
        now: datetime,
        actor: str | None = None,
    ) -> tuple[str, ...]:
        """Revoke the client certificate of ``name`` that ``duty`` names; its serial (hex).

        ``duty`` is a ``certificate.revoke`` on the certificate's serial (lower-case
        hex) with details ``{"reason"}``, signed by an active security officer and
        verified against the officer's ledgered key before anything changes; the
        officer is the entry's actor and the duty goes into its payload.
        ``actor``, if given, must be that officer (the authenticated caller).

        Raises:
            DutyError: not a valid officer's duty for this serial, or another caller's.
            IdentityConflictError: the serial is no unrevoked certificate of ``name``.
        """
        when = require_aware(now, what="now")
        serial = duty.duty.subject
        officer = check_duty(
            duty,
            keys=self._identities.duty_keys,
            origin=self._identities.origin,
            action="certificate.revoke",
            subject=serial,
            role=Role.SECURITY_OFFICER.value,
            now=when,
        )
        if actor is not None and actor != officer:
            raise DutyError(f"the duty is {officer}'s, not the caller {actor}'s")
        reason = duty.duty.details.get("reason")
        if set(duty.duty.details) != {"reason"} or not isinstance(reason, str) or not reason:
            raise DutyError('a certificate.revoke duty\'s details are {"reason": "<reason>"}')
        stamp = format_rfc3339(when.replace(microsecond=0))
        with self._db.write() as session:
            row = session.get(_AdminCertificateRow, serial)
            if row is None or row.name != name or row.revoked_at is not None:
                raise IdentityConflictError(
                    f"{serial} is no unrevoked client certificate of {name} "
                    "(ibx identity certs NAME lists them)"
                )
            row.revoked_at = stamp
            row.revocation_reason = reason[:32]
            session.flush()
            entry = CertificateRevokeEntry(
                name=name,
                serials=[serial],
                revoked_at=stamp,
                reason=reason,
                duty=duty.to_dict(),
            )
            self._recorder.record(
                Event(entry.TYPE, officer, entry.to_payload(), subjects=(name, serial)),
                session=session,
            )
        logger.info("revoked client certificate %s of %s (by %s)", serial, name, officer)
        return (serial,)

    def certificates(self, name: str | None = None) -> list[AdminCertificateRecord]:
        """The register (optionally one identity's), oldest first."""
        with self._db.read() as session:
            query = select(_AdminCertificateRow).order_by(_AdminCertificateRow.not_before)
            if name is not None:
                query = query.where(_AdminCertificateRow.name == name)
            return [
                AdminCertificateRecord(
                    serial=int(row.serial_hex, 16),
                    fingerprint=row.fingerprint,
                    name=row.name,
                    role=row.role,
                    not_after=parse_rfc3339(row.not_after),
                    revoked_at=parse_rfc3339(row.revoked_at) if row.revoked_at else None,
                    revocation_reason=row.revocation_reason,
                )
                for row in session.execute(query).scalars()
            ]

    def belongs_to(
        self,
        der: bytes,
        name: str,
        *,
        now: datetime | None = None,
        identity: Identity | None = None,
    ) -> bool:
        """Whether ``der`` is a valid client certificate of administrator ``name`` now.

        True only for a certificate this deployment's CA signed for ``name``,
        listed in the register, neither revoked nor superseded, within its
        validity, naming ``name`` in its URI SAN, while ``name`` is an active
        administrator of the role it was issued for. ``identity`` is ``name`` as
        the caller just read it (the request's authentication), so it is not
        read again.
        """
        refusal = self._refusal(der, name, now=now or utcnow(), identity=identity)
        if refusal is not None:
            logger.info("client certificate refused for %s: %s", name, refusal)
            return False
        return True

    def _refusal(
        self, der: bytes, name: str, *, now: datetime, identity: Identity | None = None
    ) -> str | None:
        try:
            cert = x509.load_der_x509_certificate(der)
            digest = fingerprint(cert)
            authority = self._pki.authority()
            if self._verified.get(digest) is not authority:
                authority.verify_issued(cert)
                if len(self._verified) >= _VERIFIED_CACHE:
                    self._verified.clear()
                self._verified[digest] = authority
        except (ValueError, CaNotInitializedError):
            return "not issued by this deployment's CA"
        rows = self._db.fetch(_BY_FINGERPRINT, {"fingerprint": digest})  # on every request
        row = rows[0] if rows else None
        if row is None or row.serial_hex != format(cert.serial_number, "x"):
            return "not an administrator certificate"
        if row.name != name:
            return "issued for another identity"
        if row.revoked_at is not None:
            return f"{row.revocation_reason or 'revoked'} at {row.revoked_at}"
        role = row.role
        if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
            return "outside its validity period"
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return "no subject alternative name"
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
        if uris != [identity_uri(self._pki.config.trust_domain, name)]:
            return "its URI SAN names another identity"
        if identity is None or identity.name != name:
            try:
                identity = self._identities.get(name)
            except IdentityNotFoundError:
                return "no such identity"
        if identity.status is not Status.ACTIVE:
            return "the identity is revoked"
        if identity.role.value != role or identity.role not in ADMIN_ROLES:
            return "issued for another role"
        return None
