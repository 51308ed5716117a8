"""What a deployment looks like right now, and whether it is fit to serve.

``/readyz`` runs the cheap checks (database, ledger head); ``ibx status``
runs them all and exits non-zero when one fails. Every check is a
:class:`Check` with a name, a verdict and one line of detail; nothing here
repairs anything.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import text

from core.clock import format_rfc3339

if TYPE_CHECKING:
    from exchange.runtime import Runtime

__all__ = ["CA_WARNING", "Check", "DeploymentStatus", "deployment_status", "readiness"]

logger = logging.getLogger(__name__)

CA_WARNING = timedelta(days=30)
"""A CA certificate that expires sooner than this fails the check: renew it now."""


@dataclass(frozen=True)
class Check:
    """One check: ``ok`` or not, with a line a person can act on."""

    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, object]:
        """Stable JSON fields."""
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class DeploymentStatus:
    """The deployment's identity and the result of every check."""

    origin: str
    data_dir: str
    tree_size: int
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(check.ok for check in self.checks)

    def to_dict(self) -> dict[str, object]:
        """Stable JSON fields."""
        return {
            "ok": self.ok,
            "origin": self.origin,
            "data_dir": self.data_dir,
            "tree_size": self.tree_size,
            "checks": [check.to_dict() for check in self.checks],
        }


def readiness(runtime: Runtime) -> tuple[Check, ...]:
    """The checks a load balancer needs: the database answers, the ledger head verifies."""
    return (_database(runtime), _ledger_head(runtime))


def deployment_status(runtime: Runtime, *, now: datetime) -> DeploymentStatus:
    """Every check: readiness, the active policy, the edge CA, the MPC parties, Fabric."""
    checks = (
        *readiness(runtime),
        _policy(runtime),
        _edge_ca(runtime, now=now),
        _parties(runtime),
        _fabric(runtime),
    )
    size = 0
    try:
        size = runtime.ledger.size()
    except Exception:  # reported by the ledger check already
        logger.debug("ledger size unavailable", exc_info=True)
    return DeploymentStatus(
        origin=runtime.settings.ledger_origin,
        data_dir=str(runtime.data_dir),
        tree_size=size,
        checks=checks,
    )


def _database(runtime: Runtime) -> Check:
    try:
        with runtime.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return Check("database", False, f"{runtime.db.url.get_backend_name()}: {exc}")
    return Check("database", True, runtime.db.url.render_as_string(hide_password=True))


def _ledger_head(runtime: Runtime) -> Check:
    from ledger import Checkpoint, CheckpointError, SignedNote

    try:
        head = runtime.ledger.head()
        if head.size == 0:
            return Check("ledger", True, "empty (no checkpoint yet)")
        note = SignedNote.from_text(head.checkpoint)
        note.verify(runtime.ledger.verifier)
        body = Checkpoint.from_text(note.text)
        if (body.size, body.root) != (head.size, head.root):
            return Check("ledger", False, "the stored checkpoint does not match the tree head")
    except CheckpointError as exc:
        return Check("ledger", False, f"checkpoint does not verify: {exc}")
    except Exception as exc:
        return Check("ledger", False, f"cannot read the ledger head: {exc}")
    root = base64.b64encode(head.root).decode()
    return Check("ledger", True, f"size {head.size} root {root}")


def _policy(runtime: Runtime) -> Check:
    try:
        active = runtime.policy.active_version()
        mismatch = runtime.policy.active_mismatch()  # the row against the ledger
    except Exception as exc:
        return Check("policy", False, f"cannot read the active policy: {exc}")
    if mismatch is not None:
        return Check("policy", False, mismatch)
    if active is None:
        return Check(
            "policy", False, "no active policy: every decision is deny (ibx policy propose ...)"
        )
    return Check("policy", True, f"active version {active}")


def _edge_ca(runtime: Runtime, *, now: datetime) -> Check:
    pki = runtime.edge_pki
    if not pki.is_initialized():
        return Check("edge-ca", True, "not initialised (ibx pki init, when edge devices join)")
    try:
        ca = pki.authority()
    except Exception as exc:
        return Check("edge-ca", False, f"cannot open the CA: {exc}")
    soonest = min(ca.root.not_valid_after_utc, ca.issuing.not_valid_after_utc)
    detail = f"valid until {format_rfc3339(soonest)}"
    if soonest <= now:
        return Check("edge-ca", False, f"expired: {detail}")
    if soonest - now < CA_WARNING:
        return Check("edge-ca", False, f"expires within {CA_WARNING.days} days: {detail}")
    return Check("edge-ca", True, detail)


def _parties(runtime: Runtime) -> Check:
    base = runtime.data_dir / "mpc"
    if not (base / "box_public_keys").is_file():
        return Check("mpc-parties", True, "no local deployment (ibx mpc deploy)")
    from mpc import MpcDeployment

    try:
        deployment = MpcDeployment.from_dir(base)
    except Exception as exc:
        return Check("mpc-parties", False, f"deployment at {base} is unusable: {exc}")
    return Check(
        "mpc-parties",
        True,
        f"{deployment.parties} parties, threshold {deployment.threshold}, in {base}",
    )


def _fabric(runtime: Runtime) -> Check:
    """Shipping to the Fabric channel, as the shipper last recorded it (nothing is dialled)."""
    from core.errors import ConfigurationError

    try:
        config = runtime.fabric_config
    except ConfigurationError as exc:
        return Check("fabric", False, str(exc))
    if config is None:
        return Check("fabric", True, "off (IBX_LEDGER_FABRIC_MODE=off)")
    from ledger.fabric.outbox import FabricOutbox, OutboxKey

    origin = runtime.settings.ledger_origin
    where = f"{config.mode} mode to {config.channel}/{config.chaincode} via {config.gateway}"
    try:
        sql_size = runtime.ledger.size()
        status = FabricOutbox(runtime.db).status(
            OutboxKey(config.channel, config.chaincode, origin, str(config.mode))
        )
    except Exception as exc:
        return Check("fabric", False, f"{where}: cannot read the shipping status: {exc}")
    if status is None:
        return Check("fabric", True, f"{where}: nothing shipped yet (SQL size {sql_size})")
    lag = max(0, sql_size - status.shipped_size)
    detail = f"{where}: channel size {status.shipped_size} of SQL size {sql_size} (lag {lag})"
    if status.last_error is not None:
        return Check(
            "fabric",
            False,
            f"{detail}; {status.failures} failed passes in a row, the last at "
            f"{status.last_attempt}: {status.last_error}",
        )
    return Check("fabric", True, f"{detail}, as of {status.last_attempt}")
