"""The closed vocabularies of a consent: purposes, operations, engines, classifications."""

from __future__ import annotations

import enum

__all__ = ["Classification", "Engine", "Operation", "Purpose"]


class Purpose(enum.StrEnum):
    """What a requester may use the data for (ISO/IEC 29184 "purpose")."""

    INDUSTRY_MONITORING = "industry_monitoring"
    RISK_WARNING = "risk_warning"
    CHAIN_ANALYSIS = "chain_analysis"
    BENCHMARKING = "benchmarking"
    POLICY_EVALUATION = "policy_evaluation"
    TRADE_MATCHING = "trade_matching"


class Operation(enum.StrEnum):
    """The computations whose results may be released."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    VARIANCE = "variance"
    HISTOGRAM = "histogram"
    PERCENTILE_RANK = "percentile_rank"
    REGRESSION = "regression"
    SET_INTERSECTION_SIZE = "set_intersection_size"
    QUANTILES = "quantiles"
    MIN_MAX = "min_max"
    DOMINANCE_CHECK = "dominance_check"


class Engine(enum.StrEnum):
    """The privacy-compute engines allowed to touch the data."""

    HE = "he"
    MPC = "mpc"
    PSI = "psi"


class Classification(enum.StrEnum):
    """Data classification of a dataset (一般数据 / 重要数据 / 核心数据)."""

    GENERAL = "general"
    IMPORTANT = "important"
    CORE = "core"
