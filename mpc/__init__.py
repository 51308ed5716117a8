"""Privacy compute: homomorphic encryption, multi-party computation, set intersection.

Vetted recipes live here; raw primitives are in :mod:`mpc.hazmat`.

* HE (TenSEAL): :class:`HeJobSpec`, :class:`HeContributor` (enterprise side),
  :class:`HeAggregator` (public material only), :class:`KeyCustodian`
  (per-job keys, decrypts only approved final aggregates).
* MPC (MPyC, one OS process per party, TLS between them): :class:`MpcDeployment`,
  :class:`ShareDealer`, :class:`MpcRunner`.
* PSI (ECDH on the Ed25519 group): :class:`PsiParty`.
* Release guard: :class:`ReleaseGuard`, :class:`ReleasePolicy`, :func:`choose_engine`.
"""

from pathlib import Path

from mpc._party_main import main as run_party
from mpc.custodian import CustodianConfig, KeyCustodian
from mpc.deployment import MpcDeployment, party_name
from mpc.guard import (
    ConsentTerms,
    DominanceRule,
    DominanceVerdict,
    DpMechanism,
    DpPolicy,
    Engine,
    ReleaseApproval,
    ReleaseGuard,
    ReleasePolicy,
    ReleaseRequest,
    choose_engine,
)
from mpc.hazmat.he import HeScheme
from mpc.he import (
    EncryptedAggregate,
    HeAggregator,
    HeContribution,
    HeContributor,
    HeJobPublic,
    HeJobSpec,
    HeOperation,
    HeResult,
    RegressionInput,
)
from mpc.mpc_spec import MpcJobSpec, MpcResult, MpcStatistic
from mpc.psi import BlindedSet, PsiMode, PsiOutcome, PsiParty
from mpc.runner import MpcRunner, RunnerConfig
from mpc.sharing import DealtInput, RankKey, SealedShare, ShareDealer

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
"""mpc's Alembic branch (``branch_labels=("mpc",)``)."""

__all__ = [
    "MIGRATIONS",
    "BlindedSet",
    "ConsentTerms",
    "CustodianConfig",
    "DealtInput",
    "DominanceRule",
    "DominanceVerdict",
    "DpMechanism",
    "DpPolicy",
    "EncryptedAggregate",
    "Engine",
    "HeAggregator",
    "HeContribution",
    "HeContributor",
    "HeJobPublic",
    "HeJobSpec",
    "HeOperation",
    "HeResult",
    "HeScheme",
    "KeyCustodian",
    "MpcDeployment",
    "MpcJobSpec",
    "MpcResult",
    "MpcRunner",
    "MpcStatistic",
    "PsiMode",
    "PsiOutcome",
    "PsiParty",
    "RankKey",
    "RegressionInput",
    "ReleaseApproval",
    "ReleaseGuard",
    "ReleasePolicy",
    "ReleaseRequest",
    "RunnerConfig",
    "SealedShare",
    "ShareDealer",
    "choose_engine",
    "party_name",
    "run_party",
]
