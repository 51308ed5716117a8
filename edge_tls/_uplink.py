"""The device's uploads: sign a batch, seal it to its enterprise, send it over mutual TLS.

:class:`DeviceUplink` is the device's client of its own ``/v1/edge`` routes on
the edge listener (mutual TLS with its current certificate, trusting only the
directory's CA bundle): the enterprise's sealing key, and the upload of one
sealed batch. :func:`upload_readings` is the whole step: the readings signed
with the device's key inside the envelope (:mod:`edge_tls._envelope`), sealed
to the key the exchange offers — or refused when a pinned enterprise key says
otherwise — and uploaded; the exchange only ever sees ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import logging
import ssl
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from edge_tls._credentials import DeviceCredentials
from edge_tls._envelope import sign_batch
from edge_tls._est import DEFAULT_TIMEOUT, refusal
from edge_tls._readings import seal_batch, sealing_public_key
from edge_tls.errors import SealedBatchError

__all__ = ["DeviceUplink", "UploadReceipt", "upload_readings"]

logger = logging.getLogger(__name__)

_SEALING_KEY_BYTES = 32


@dataclass(frozen=True)
class UploadReceipt:
    """What the exchange answered an upload: the batch's id and the SHA-256 it recorded."""

    batch: int
    sha256: str

    def __post_init__(self) -> None:
        if self.batch < 1 or len(self.sha256) != 64:
            raise ValueError(f"not an upload receipt: batch {self.batch}, sha256 {self.sha256!r}")


class DeviceUplink:
    """A device's mutual-TLS client of its ``/v1/edge`` routes; a context manager."""

    def __init__(
        self, server: str, tls: ssl.SSLContext, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        import httpx  # noqa: PLC0415 - only a device's requests need an HTTP client

        self.server = server.rstrip("/")
        """The edge listener's base URL, ``https://host:port``."""
        self._http = httpx.Client(base_url=self.server, verify=tls, timeout=timeout)

    @classmethod
    def of_device(
        cls, credentials: DeviceCredentials, *, timeout: float = DEFAULT_TIMEOUT
    ) -> DeviceUplink:
        """The uplink of the device in ``credentials``: its listener, certificate and CA bundle.

        Raises:
            EnrollmentError: the directory holds no enrolment, or its key does not
                match its certificate.
            OSError: a file of the directory cannot be read.
        """
        server, context = credentials.mutual_tls()
        return cls(server, context, timeout=timeout)

    def __enter__(self) -> DeviceUplink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def sealing_key(self) -> bytes:
        """The X25519 key of the device's enterprise, as the exchange offers it.

        Raises:
            EdgeRefusedError: the listener refused (certificate refused: 401;
                the enterprise has no key: 409).
            SealedBatchError: the answer holds no 32-byte key.
            httpx.HTTPError: the listener could not be reached (or the TLS handshake failed).
        """
        response = self._http.get("/v1/edge/sealing-key")
        if response.status_code != 200:
            raise refusal(response, "sealing key")
        try:
            key = base64.b64decode(response.json()["x25519_public_key"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise SealedBatchError("the exchange offered no usable sealing key") from exc
        if len(key) != _SEALING_KEY_BYTES:
            raise SealedBatchError("the exchange offered no usable sealing key")
        return key

    def upload(self, sealed: bytes) -> UploadReceipt:
        """``POST /v1/edge/readings``: one sealed batch (``application/octet-stream``).

        Raises:
            EdgeRefusedError: the listener refused: 401 certificate, 413 too large,
                400 not a sealed box, 429 over the device's quota (``retry_after``).
            SealedBatchError: the answer is not a receipt.
            httpx.HTTPError: the listener could not be reached (or the TLS handshake failed).
        """
        response = self._http.post(
            "/v1/edge/readings",
            content=sealed,
            headers={"Content-Type": "application/octet-stream"},
        )
        if response.status_code != 201:
            raise refusal(response, "upload")
        try:
            body = response.json()
            return UploadReceipt(int(body["batch"]), str(body["sha256"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise SealedBatchError("the exchange answered the upload without a receipt") from exc


def upload_readings(
    credentials: DeviceCredentials,
    readings: bytes,
    *,
    now: datetime,
    timeout: float = DEFAULT_TIMEOUT,
) -> UploadReceipt:
    """Sign ``readings`` with the device's key, seal them to its enterprise, upload them.

    With an enterprise key pinned at enrolment, a different sealing key offered
    by the exchange is refused and nothing is uploaded.

    Raises:
        SealedBatchError: empty readings, or a sealing key that is not the pinned one.
        EnrollmentError: the directory holds no usable enrolment.
        EdgeRefusedError: the listener refused (its status and detail).
        httpx.HTTPError: the listener could not be reached (or the TLS handshake failed).
        OSError: a file of the directory cannot be read.
    """
    if not readings:
        raise SealedBatchError("refusing to upload an empty batch")
    signed = sign_batch(readings, credentials.private_key(), credentials.certificate(), now=now)
    pinned = credentials.pinned_enterprise_key()
    with DeviceUplink.of_device(credentials, timeout=timeout) as uplink:
        key = uplink.sealing_key()
        if pinned is not None and sealing_public_key(base64.b64decode(pinned)) != key:
            raise SealedBatchError(
                "the exchange offered a sealing key that is not the pinned enterprise key; "
                "nothing was uploaded"
            )
        receipt = uplink.upload(seal_batch(signed.to_bytes(), key))
    logger.info("uploaded batch %d (sha256 %s)", receipt.batch, receipt.sha256)
    return receipt
