"""Privacy compute: homomorphic encryption, multi-party computation, set intersection.

Vetted recipes live here; raw primitives are in :mod:`mpc.hazmat`.

* HE (TenSEAL): :class:`HeJobSpec`, :class:`HeContributor` (enterprise side),
  :class:`HeAggregator` (public material only), :class:`KeyCustodian`
  (per-job keys, decrypts only approved final aggregates).
* MPC (MPyC, one OS process per party, TLS between them): :class:`MpcDeployment`,
  :class:`ShareDealer`, :class:`MpcRunner`.
* PSI (ECDH on the Ed25519 group): :class:`PsiParty`.
* Release guard: :class:`ReleaseGuard`, :class:`ReleasePolicy`, :func:`choose_engine`;
  releases are described by :class:`ReleaseQuery` (:func:`he_query`, :func:`mpc_query`)
  and judged against everything released to the requester's group; order
  statistics leave with OpenDP's quantile mechanism (:class:`DpOrderPolicy`),
  coarsened, or exactly where the policy allows.
"""

from pathlib import Path

from mpc._engine_queries import he_query, mpc_query, mpc_statistics
from mpc._party_main import main as run_party
from mpc.custodian import CustodianConfig, KeyCustodian
from mpc.deployment import MpcDeployment, party_name
from mpc.dp_order import DpOrderPolicy, OrderCounts
from mpc.entries import ENTRY_TYPES
from mpc.guard import (
    ConsentTerms,
    DominanceRule,
    DominanceVerdict,
    DpMechanism,
    DpPolicy,
    Engine,
    OrderRelease,
    ReleaseApproval,
    ReleaseGuard,
    ReleasePolicy,
    ReleaseRequest,
    choose_engine,
    industry_group,
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
from mpc.he_input import HeInputs, weights_from_pairs
from mpc.mpc_spec import DEFAULT_BOUND as DEFAULT_MPC_BOUND
from mpc.mpc_spec import MpcEncoding, MpcJobSpec, MpcResult, MpcStatistic
from mpc.precision import Precision, he_precisions, mpc_precision
from mpc.psi import BlindedSet, PsiMode, PsiOutcome, PsiParty, common_size
from mpc.release_query import ReleaseQuery, ReleaseSubject, StatisticKind
from mpc.runner import MpcRunner, RunnerConfig
from mpc.sharing import DealtInput, RankKey, SealedShare, ShareDealer

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
"""mpc's Alembic branch (``branch_labels=("mpc",)``)."""

__all__ = [
    "DEFAULT_MPC_BOUND",
    "ENTRY_TYPES",
    "MIGRATIONS",
    "BlindedSet",
    "ConsentTerms",
    "CustodianConfig",
    "DealtInput",
    "DominanceRule",
    "DominanceVerdict",
    "DpMechanism",
    "DpOrderPolicy",
    "DpPolicy",
    "EncryptedAggregate",
    "Engine",
    "HeAggregator",
    "HeContribution",
    "HeContributor",
    "HeInputs",
    "HeJobPublic",
    "HeJobSpec",
    "HeOperation",
    "HeResult",
    "HeScheme",
    "KeyCustodian",
    "MpcDeployment",
    "MpcEncoding",
    "MpcJobSpec",
    "MpcResult",
    "MpcRunner",
    "MpcStatistic",
    "OrderCounts",
    "OrderRelease",
    "Precision",
    "PsiMode",
    "PsiOutcome",
    "PsiParty",
    "RankKey",
    "RegressionInput",
    "ReleaseApproval",
    "ReleaseGuard",
    "ReleasePolicy",
    "ReleaseQuery",
    "ReleaseRequest",
    "ReleaseSubject",
    "RunnerConfig",
    "SealedShare",
    "ShareDealer",
    "StatisticKind",
    "choose_engine",
    "common_size",
    "he_precisions",
    "he_query",
    "industry_group",
    "mpc_precision",
    "mpc_query",
    "mpc_statistics",
    "party_name",
    "run_party",
    "weights_from_pairs",
]
