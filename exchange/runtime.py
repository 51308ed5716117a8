"""The composition root: builds every component from :class:`Settings`.

One ``Runtime`` per process (the server builds it in ``create_app``, each CLI
command builds its own). Components that are heavy to build are created on
first use.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from core.db import Database, migrate
from core.keys import KeyRing, MasterKey
from exchange.settings import Settings

if TYPE_CHECKING:
    import consent
    import edge_tls
    import ledger
    import mpc
    import policies
    from exchange.identities import IdentityRegistry

__all__ = ["MIGRATION_BRANCHES", "Runtime"]

logger = logging.getLogger(__name__)


def _migrations_of(package: str) -> Path:
    """``<package>/migrations``, found without importing the package."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None, package
    return Path(spec.origin).resolve().parent / "migrations"


MIGRATION_BRANCHES: list[Path] = [
    _migrations_of("core"),
    _migrations_of("ledger"),
    _migrations_of("consent"),
    _migrations_of("mpc"),
    _migrations_of("edge_tls"),
    _migrations_of("policies"),
    _migrations_of("exchange"),
]
"""Every package's Alembic branch; a package with tables adds its own here.

Paths only: a command that needs the ledger alone does not import TenSEAL or
the policy engine to learn where their migrations are.
"""


class Runtime:
    """Database, keys, ledger and the package services, wired together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.name == "posix":
            self.data_dir.chmod(0o700)
        self.db = Database(settings.resolved_database_url())
        migrate(self.db, MIGRATION_BRANCHES)
        if settings.master_key is not None:
            master = MasterKey.from_text(settings.master_key.get_secret_value())
        else:
            master = MasterKey.load_or_create(self.data_dir / "master.key")
        self.keyring = KeyRing(self.db, master)
        self.master_key = master

    @cached_property
    def ledger(self) -> ledger.Ledger:
        """The ledger (SQL backend on the project database)."""
        import ledger

        return ledger.Ledger(
            ledger.SqlLedgerBackend(self.db),
            self.keyring.get_or_create("ledger"),
            ledger.LedgerConfig(origin=self.settings.ledger_origin),
        )

    @cached_property
    def identities(self) -> IdentityRegistry:
        """The identity registry."""
        from exchange.identities import IdentityRegistry

        return IdentityRegistry(
            self.db, self.ledger, token_ttl=timedelta(days=self.settings.token_ttl_days)
        )

    @cached_property
    def consents(self) -> consent.ConsentService:
        """Consent receipts, revocations and checks (keys and requesters from identities)."""
        import consent
        from exchange.consent_directory import IdentityDirectory

        directory = IdentityDirectory(self.identities)
        return consent.ConsentService(
            self.db,
            self.ledger,
            directory,
            directory,
            consent.ConsentConfig(
                origin=self.settings.ledger_origin,
                request_skew=timedelta(seconds=self.settings.consent_request_skew_seconds),
            ),
        )

    @cached_property
    def edge_pki(self) -> edge_tls.EdgePki:
        """The edge certificate authority, EST enrolment and revocation."""
        import edge_tls

        return edge_tls.EdgePki(
            self.db,
            self.master_key,
            self.ledger,
            edge_tls.PkiConfig(
                trust_domain=self.settings.trust_domain,
                device_lifetime=timedelta(hours=self.settings.edge_device_cert_hours),
            ),
        )

    @cached_property
    def edge_readings(self) -> edge_tls.ReadingStore:
        """Sealed reading batches uploaded by edge devices."""
        import edge_tls

        return edge_tls.ReadingStore(
            self.db,
            self.ledger,
            edge_tls.UploadQuota(
                max_batch_bytes=self.settings.edge_max_batch_bytes,
                bytes_per_hour=self.settings.edge_upload_bytes_per_hour,
            ),
        )

    @cached_property
    def release_guard(self) -> mpc.ReleaseGuard:
        """The privacy-compute release guard (cohorts, differencing, DP budgets)."""
        import mpc

        return mpc.ReleaseGuard(self.db)

    @cached_property
    def key_custodian(self) -> mpc.KeyCustodian:
        """The HE key custodian: per-job keys, recorded on the ledger."""
        import mpc

        return mpc.KeyCustodian(self.db, self.master_key, self.ledger, self.release_guard)

    @cached_property
    def policy(self) -> policies.PolicyDecisionPoint:
        """The policy decision point (embedded Rego, or the OPA server of IBX_OPA_URL)."""
        import policies

        return policies.PolicyDecisionPoint(
            self.db, self.ledger, policies.PolicyConfig(opa_url=self.settings.opa_url)
        )

    def close(self) -> None:
        """Release database connections."""
        self.db.dispose()
