"""Which :class:`~exchange.pipeline.engine.EngineJob` computes each engine's jobs.

HE is built in (:mod:`exchange.pipeline.he_job`); MPC and PSI come from
``exchange.pipeline.mpc_job`` and ``exchange.pipeline.psi_job``, imported on
first use so the exchange runs (and refuses those requests with 501) where
they are not installed yet.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

from exchange.pipeline.engine import EngineJob
from exchange.pipeline.errors import EngineUnavailableError
from exchange.pipeline.request import EngineName

if TYPE_CHECKING:
    from exchange.runtime import Runtime

__all__ = ["build_engine"]

logger = logging.getLogger(__name__)

_MODULES = {
    EngineName.HE: ("exchange.pipeline.he_job", "he_engine"),
    EngineName.MPC: ("exchange.pipeline.mpc_job", "mpc_engine"),
    EngineName.PSI: ("exchange.pipeline.psi_job", "psi_engine"),
}


def build_engine(runtime: Runtime, name: EngineName) -> EngineJob:
    """The engine ``name`` over ``runtime``.

    Raises:
        EngineUnavailableError: its module is not installed, or ``name`` is ``auto``.
    """
    where = _MODULES.get(name)
    if where is None:
        raise EngineUnavailableError(f"no engine {name.value!r}")
    module_name, factory = where
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise EngineUnavailableError(
            f"the {name.value} engine is not available on this exchange yet"
        ) from exc
    engine: EngineJob = getattr(module, factory)(runtime)
    return engine
