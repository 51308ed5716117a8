"""The composition root: builds every component from :class:`Settings`.

One ``Runtime`` per process (the server builds it in ``create_app``, each CLI
command builds its own). Components that are heavy to build are created on
first use.
"""

from __future__ import annotations

import hmac
import importlib.util
import logging
import os
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from core.clock import utcnow
from core.db import Database, migrate
from core.errors import ConfigurationError
from core.keyring import KeyRing
from core.keys import MasterKey
from exchange.datadir import (
    AlreadyInitialisedError,
    DeploymentRecord,
    NotInitialisedError,
    read_record,
    write_record,
)
from exchange.settings import Settings

if TYPE_CHECKING:
    import consent
    import edge_tls
    import ledger
    import mpc
    import policies
    from exchange.admin_certs import AdminCertificates
    from exchange.agent_contacts import AgentContacts
    from exchange.auth_lockout import AuthFailureGuard
    from exchange.console_sessions import ConsoleSessions
    from exchange.duty_keys import LedgerDutyKeys
    from exchange.identities import IdentityRegistry
    from exchange.pipeline.service import Pipeline
    from ledger.fabric import FabricConfig
    from ledger.fabric.shipper import FabricShipper

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
    """Database, keys, ledger and the package services, wired together.

    ``Runtime(settings)`` opens a deployment that ``ibx init``
    (:meth:`initialise`) created: it refuses a data dir without a deployment
    record, settings that contradict what was fixed at initialisation, and a
    master key other than the deployment's — and it never creates a key.
    """

    def __init__(self, settings: Settings) -> None:
        """Open the deployment in ``settings.data_dir``.

        Raises:
            NotInitialisedError: the data dir was never initialised.
            ConfigurationError: a setting contradicts the deployment record, or the
                master key is missing or not the deployment's.
        """
        record = read_record(settings.data_dir)
        if record is None:
            raise NotInitialisedError(settings.data_dir)
        settings = _reconcile(settings, record)
        master = _existing_master_key(settings)
        if not hmac.compare_digest(master.fingerprint(), record.master_key_fingerprint):
            raise ConfigurationError(
                f"the master key is not this deployment's (it needs the key with fingerprint "
                f"{record.master_key_fingerprint[:16]}…): restore {settings.data_dir}/master.key "
                "or set IBX_MASTER_KEY to it"
            )
        self._wire(settings, master)
        self.record = record

    def _wire(self, settings: Settings, master: MasterKey) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.db = Database(settings.resolved_database_url())
        migrate(self.db, MIGRATION_BRANCHES)
        self.keyring = KeyRing(self.db, master)
        self.master_key = master

    @classmethod
    def initialise(cls, settings: Settings, *, now: datetime | None = None) -> Runtime:
        """Create the deployment in ``settings.data_dir`` and open it.

        A data dir with a database but no record (made before records existed,
        or a replica joining a shared PostgreSQL database) is adopted: its
        ledger must carry this origin and its keys must open under this master
        key. The master key comes from ``IBX_MASTER_KEY`` or is generated into
        ``<data dir>/master.key`` (mode 0600) when neither exists.

        Raises:
            AlreadyInitialisedError: the data dir already holds a deployment.
            ConfigurationError: an adopted database contradicts these settings.
            KeyDecryptionError: an adopted database's keys do not open under the key.
        """
        data_dir = settings.data_dir
        if read_record(data_dir) is not None:
            raise AlreadyInitialisedError(
                f"{data_dir} already holds a deployment (ibx --data-dir {data_dir} status)"
            )
        data_dir.mkdir(parents=True, exist_ok=True)
        if os.name == "posix":
            data_dir.chmod(0o700)
        if settings.master_key is not None:
            master = MasterKey.from_text(settings.master_key.get_secret_value())
        else:
            master = MasterKey.load_or_create(data_dir / "master.key")
        opened = cls.__new__(cls)
        opened._wire(settings, master)
        log = opened.ledger  # creates the ledger key, or opens an adopted one
        if log.size() > 0:
            from ledger import Checkpoint, SignedNote

            stored = Checkpoint.from_text(SignedNote.from_text(log.head().checkpoint).text)
            if stored.origin != settings.ledger_origin:
                raise ConfigurationError(
                    f"the database's ledger has origin {stored.origin!r}, not "
                    f"{settings.ledger_origin!r}: set IBX_LEDGER_ORIGIN={stored.origin}"
                )
        record = DeploymentRecord(
            origin=settings.ledger_origin,
            database_kind=opened.db.url.get_backend_name(),
            master_key_fingerprint=master.fingerprint(),
            created_at=now or utcnow(),
        )
        write_record(data_dir, record)
        opened.record = record
        logger.info("initialised %s (origin %s)", data_dir, record.origin)
        return opened

    @classmethod
    def open_or_initialise(cls, settings: Settings) -> Runtime:
        """Open the deployment, initialising it first if the data dir has none (serve --init).

        Raises:
            ConfigurationError: as :meth:`__init__` and :meth:`initialise`.
        """
        if read_record(settings.data_dir) is None:
            return cls.initialise(settings)
        return cls(settings)

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
    def fabric_config(self) -> FabricConfig | None:
        """How the ledger reaches its Fabric channel (``IBX_LEDGER_FABRIC_*``); None when off.

        Raises:
            ConfigurationError: a mode is set but the settings are incomplete or the
                ledger origin cannot name a log (:meth:`Settings.fabric_config`).
        """
        return self.settings.fabric_config()

    @cached_property
    def fabric_shipper(self) -> FabricShipper | None:
        """The shipper of the ledger to its Fabric channel; None when shipping is off.

        Opens the gateway connection (lazily: nothing is dialled until the first call).

        Raises:
            ConfigurationError: as :attr:`fabric_config`.
            FabricConfigError: a certificate or key file is unreadable or unusable.
        """
        config = self.fabric_config
        if config is None:
            return None
        import ledger
        from ledger.fabric.gateway import open_channel
        from ledger.fabric.outbox import FabricOutbox, OutboxKey
        from ledger.fabric.shipper import FabricShipper, OutboxSlot

        origin = self.settings.ledger_origin
        channel = open_channel(config, origin)
        key = OutboxKey(config.channel, config.chaincode, origin, str(config.mode))
        return FabricShipper(
            self.ledger,
            ledger.SqlLedgerBackend(self.db),
            channel,
            config.mode,
            batch_size=config.batch_size,
            outbox=OutboxSlot(FabricOutbox(self.db), key),
        )

    @cached_property
    def identities(self) -> IdentityRegistry:
        """The identity registry."""
        from exchange.identities import IdentityRegistry

        return IdentityRegistry(
            self.db, self.ledger, token_ttl=timedelta(days=self.settings.token_ttl_days)
        )

    @property
    def duty_keys(self) -> LedgerDutyKeys:
        """Administrators' keys as the ledger records them (verifies signed duties)."""
        return self.identities.duty_keys

    @cached_property
    def admin_certificates(self) -> AdminCertificates:
        """Administrators' client certificates (the second factor), issued by the deployment CA."""
        from exchange.admin_certs import AdminCertificates

        return AdminCertificates(
            self.db,
            self.ledger,
            self.identities,
            self.edge_pki,
            lifetime=timedelta(days=self.settings.admin_cert_days),
        )

    @cached_property
    def console_sessions(self) -> ConsoleSessions:
        """The web console's signed-in browsers (docs/console.md)."""
        from exchange.console_sessions import ConsoleSessions

        return ConsoleSessions(
            self,
            idle=timedelta(seconds=self.settings.console_idle_seconds),
            lifetime=timedelta(hours=self.settings.console_session_hours),
        )

    @cached_property
    def auth_guard(self) -> AuthFailureGuard:
        """Failed authentications per client address, in this process's memory."""
        from exchange.auth_lockout import AuthFailureGuard, AuthFailureLimits

        return AuthFailureGuard(
            AuthFailureLimits(
                max_failures=self.settings.auth_max_failures,
                window=timedelta(seconds=self.settings.auth_failure_window_seconds),
                lockout=timedelta(seconds=self.settings.auth_lockout_seconds),
            ),
            self.ledger,
        )

    @cached_property
    def consents(self) -> consent.ConsentService:
        """Consent receipts, revocations and checks (keys and requesters from identities)."""
        import consent
        from exchange.consent_directory import IdentityDirectory

        directory = IdentityDirectory(self.identities, self.ledger)
        return consent.ConsentService(
            self.db,
            self.ledger,
            directory,
            directory,
            consent.ConsentConfig(
                origin=self.settings.ledger_origin,
                request_skew=timedelta(seconds=self.settings.consent_request_skew_seconds),
            ),
            key_ledger=directory,
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
        from exchange.policy_activations import LedgerActivations

        return policies.PolicyDecisionPoint(
            self.db,
            self.ledger,
            policies.PolicyConfig(
                opa_url=self.settings.opa_url, bootstrap_pack=policies.BASELINE_PACK
            ),
            duty_keys=self.duty_keys,  # officers' steps: signed duties under ledgered keys
            origin=self.settings.ledger_origin,
            activations=LedgerActivations(self.ledger),  # the active row must match the ledger
        )

    @cached_property
    def agent_contacts(self) -> AgentContacts:
        """When each enterprise's data agent last polled (an index row, not a signed fact)."""
        from exchange.agent_contacts import AgentContacts

        return AgentContacts(self.db)

    @cached_property
    def pipeline(self) -> Pipeline:
        """The authorize-before-use pipeline: requests, jobs, the agents' answers, release."""
        from exchange.pipeline.service import Pipeline

        return Pipeline(self)

    def close(self) -> None:
        """Release database connections (after the pipeline's running work, if it was used)."""
        if "pipeline" in self.__dict__:
            self.pipeline.close()
        shipper = self.__dict__.get("fabric_shipper")
        if shipper is not None:
            shipper.channel.close()
        self.db.dispose()


def _reconcile(settings: Settings, record: DeploymentRecord) -> Settings:
    """``settings`` with what the record fixed; refuses an explicit contradiction."""
    if settings.ledger_origin != record.origin:
        if "ledger_origin" in settings.model_fields_set:
            raise ConfigurationError(
                f"IBX_LEDGER_ORIGIN is {settings.ledger_origin!r} but this deployment's origin "
                f"is {record.origin!r} (fixed at init: every checkpoint and consent names it)"
            )
        settings = settings.model_copy(update={"ledger_origin": record.origin})
    kind = make_url(settings.resolved_database_url()).get_backend_name()
    if kind != record.database_kind:
        raise ConfigurationError(
            f"the database URL is {kind} but this deployment's database is "
            f"{record.database_kind} (fixed at init; ibx backup/restore moves a deployment)"
        )
    return settings


def _existing_master_key(settings: Settings) -> MasterKey:
    """The configured master key; never a new one for an existing deployment."""
    if settings.master_key is not None:
        return MasterKey.from_text(settings.master_key.get_secret_value())
    path = settings.data_dir / "master.key"
    if not path.exists():
        raise ConfigurationError(
            f"no master key: {path} is missing and IBX_MASTER_KEY is not set; restore the "
            "deployment's key (ibx never creates a new one for an existing deployment)"
        )
    return MasterKey.load_or_create(path)
