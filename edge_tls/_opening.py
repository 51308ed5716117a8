"""The enterprise's side of a batch: open the sealed box, then check who signed it.

Trust comes from what the enterprise pinned, not from the exchange: the CA
bundle it was given at set-up (the roots and the issuing CA), and a CRL that
must verify under that issuing CA. The exchange's own labels on a stored batch
(which device, which certificate) are checked against the signed envelope and
never believed on their own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from edge_tls._envelope import SignedBatch
from edge_tls._profiles import DeviceId
from edge_tls._readings import ReadingBatch, open_batch
from edge_tls.errors import BatchVerificationError

__all__ = ["BatchOpener", "VerifiedBatch"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifiedBatch:
    """An opened batch whose device signature verified."""

    batch_id: int
    device: DeviceId
    serial: int
    sealed_at: datetime
    nonce: str
    readings: bytes


class BatchOpener:
    """Opens and verifies the batches sealed to one enterprise.

    ``trust`` is the pinned CA bundle (self-signed roots and the issuing CA);
    ``crl`` the current CRL (DER), refused unless its issuer is in ``trust``
    and its signature verifies. Batches signed by a certificate the CRL lists
    for key compromise are refused (a stolen key can sign anything, backdated).
    ``seen`` holds the signed nonces of batches already pulled: a copy of a
    genuine batch stored again (a replay) is refused, as is a second copy
    within one pull.
    """

    def __init__(
        self,
        enterprise: str,
        seed: bytes,
        *,
        trust: list[x509.Certificate],
        crl: bytes | None,
        seen: Iterable[str] = (),
    ) -> None:
        """Build an opener.

        Raises:
            BatchVerificationError: no self-signed root in ``trust``, or a CRL
                that no CA in ``trust`` signed.
        """
        self.enterprise = enterprise
        self._seed = seed
        self._roots = [c for c in trust if c.issuer == c.subject]
        self._intermediates = [c for c in trust if c.issuer != c.subject]
        if not self._roots:
            raise BatchVerificationError("the CA bundle holds no root certificate", reason="trust")
        self._compromised = _compromised_serials(crl, trust) if crl is not None else frozenset()
        self._seen = set(seen)

    def open(self, batch: ReadingBatch) -> VerifiedBatch:
        """Open ``batch`` and verify its device's signature.

        Raises:
            SealedBatchError: it does not open under the enterprise's key.
            BatchFormatError: it opens, but is not a signed envelope.
            BatchVerificationError: the signer is not a device of this enterprise
                certified by the pinned CA, is another device than the one the
                exchange stored it under, was revoked for key compromise, the
                signature does not verify, or its nonce was seen before (a replay).
        """
        signed = SignedBatch.from_bytes(open_batch(batch.ciphertext, self._seed))
        device = signed.verify(
            enterprise=self.enterprise, roots=self._roots, intermediates=self._intermediates
        )
        serial = signed.certificate.serial_number
        if serial in self._compromised:
            raise BatchVerificationError(
                f"the signer certificate {serial:x} is revoked for key compromise",
                reason="key-compromise",
            )
        if batch.device and batch.device != device.device:
            raise BatchVerificationError(
                f"the exchange lists this batch under {batch.device!r}, "
                f"but {device.device!r} signed it",
                reason="mislabelled",
            )
        nonce = signed.header.nonce
        if nonce in self._seen:
            raise BatchVerificationError(
                f"a batch with nonce {nonce} was pulled before: this is a replayed copy",
                reason="replay",
            )
        self._seen.add(nonce)
        return VerifiedBatch(
            batch.id, device, serial, signed.header.sealed_at, nonce, signed.readings
        )


def _compromised_serials(crl_der: bytes, trust: list[x509.Certificate]) -> frozenset[int]:
    try:
        crl = x509.load_der_x509_crl(crl_der)
    except ValueError as exc:
        raise BatchVerificationError("the CRL does not parse", reason="crl") from exc
    issuers = [c for c in trust if c.subject == crl.issuer]
    if not any(crl.is_signature_valid(c.public_key()) for c in issuers):  # type: ignore[arg-type]
        raise BatchVerificationError(
            "the CRL is not signed by a CA of the pinned bundle", reason="crl"
        )
    compromised = set()
    for entry in crl:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            continue
        if reason is x509.ReasonFlags.key_compromise:
            compromised.add(entry.serial_number)
    return frozenset(compromised)
