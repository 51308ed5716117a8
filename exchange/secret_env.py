"""The secret-bearing ``IBX_*`` variables, taken out of the environment before anything runs.

Its own small module (no pydantic) because every ``ibx`` command takes them at
start, including thin remote clients that never build :class:`Settings`.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

__all__ = ["SECRET_VARIABLES", "take_secret_environment"]

SECRET_VARIABLES = {
    "IBX_MASTER_KEY": "master_key",
    "IBX_DATABASE_URL": "database_url",
    "IBX_LEDGER_FABRIC_KEY_PASSWORD": "ledger_fabric_key_password",
}
"""Secret-bearing variables and the settings they feed. They are taken out of the
process environment before anything else runs (the CLI's root command, ``create_app``):
a process that evaluates officer Rego must hold no secret a built-in could read."""


def take_secret_environment(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Remove :data:`SECRET_VARIABLES` from the environment; return them by setting name.

    Once per process: whoever builds the settings gets them from here, and no
    later reader of the environment (a policy built-in, a child process) does.
    """
    env = os.environ if environ is None else environ
    return {field: env.pop(name) for name, field in SECRET_VARIABLES.items() if name in env}
