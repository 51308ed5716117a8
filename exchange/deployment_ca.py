"""The deployment CA: the edge CA of :mod:`edge_tls`, which also certifies the API.

One CA per deployment issues the edge listener's and the API's server
certificates, the devices' client certificates and the administrators'
client certificates (:mod:`exchange.admin_certs`). ``ibx pki init`` creates
it; so does the first command that needs it (``ibx serve`` over TLS, ``ibx
identity create --cert-out``), recorded on the ledger as ``edge.ca.init``
like any other initialisation.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edge_tls import CaAlreadyInitializedError, CertificateAuthority, EdgePki, fingerprint

__all__ = ["CA_BUNDLE_NAME", "DeploymentCa", "ensure_deployment_ca", "write_ca_bundle"]

logger = logging.getLogger(__name__)

CA_BUNDLE_NAME = "ca-bundle.pem"
"""The file in the data dir holding the CA chain clients pass as ``--ca-bundle``."""


@dataclass(frozen=True)
class DeploymentCa:
    """The CA, and whether this call created it."""

    authority: CertificateAuthority
    created: bool


def ensure_deployment_ca(pki: EdgePki, *, actor: str, now: datetime) -> DeploymentCa:
    """The deployment CA, created first if the deployment has none yet.

    Two replicas starting at once on one database both try; the second finds
    the first's CA and uses it.

    Raises:
        KeyDecryptionError: the stored CA key does not open under this master key.
    """
    if pki.is_initialized():
        return DeploymentCa(pki.authority(), created=False)
    try:
        authority = pki.init(actor=actor, now=now)
    except CaAlreadyInitializedError:
        return DeploymentCa(pki.authority(), created=False)
    logger.info(
        "created the deployment CA (root sha256 %s); `ibx pki fingerprint` prints it for users",
        fingerprint(authority.root),
    )
    return DeploymentCa(authority, created=True)


def write_ca_bundle(authority: CertificateAuthority, data_dir: Path) -> Path:
    """Write the CA chain (public) to ``<data dir>/ca-bundle.pem``; return its path.

    Raises:
        OSError: the file cannot be written.
    """
    path = data_dir / CA_BUNDLE_NAME
    text = authority.chain_pem()
    if not path.exists() or path.read_text(encoding="ascii") != text:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="ascii")
        tmp.chmod(0o644)
        tmp.replace(path)
    return path
