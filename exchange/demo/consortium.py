"""The consortium ledger in the story: the exchange's log on a Hyperledger Fabric channel
(docs/fabric.md).

When the demo runs with ``IBX_LEDGER_FABRIC_MODE`` (``full`` or ``anchor``) and
the other ``IBX_LEDGER_FABRIC_*`` settings in its environment, the operator's
commands and ``ibx serve`` get them, so the exchange ships its log to that
channel as it runs, and the auditor checks the export against the channel with
``ibx audit verify --fabric``. Each run names its log with an origin of its
own (``demo-<run>.ibx.localhost/ledger``): a channel keeps every log it was
given and refuses a second genesis for a log id under another key, and every
run's ledger key is new. Without the settings the story tells that the
consortium ledger is off and where to read about it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["FABRIC_PREFIX", "Consortium"]

FABRIC_PREFIX: Final = "IBX_LEDGER_FABRIC_"
MODES: Final = ("full", "anchor")


@dataclass(frozen=True)
class Consortium:
    """The channel the exchange ships to, as the demo's environment describes it.

    Attributes:
        settings: every ``IBX_LEDGER_FABRIC_*`` variable of the demo's environment.
        origin: this run's ledger origin, the log id on the channel.
    """

    settings: Mapping[str, str]
    origin: str

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Consortium | None:
        """The consortium the environment names; None when ``IBX_LEDGER_FABRIC_MODE`` is
        unset or ``off`` (``ibx serve`` refuses incomplete settings with one line)."""
        settings = {k: v for k, v in environ.items() if k.startswith(FABRIC_PREFIX)}
        if settings.get(f"{FABRIC_PREFIX}MODE", "off") not in MODES:
            return None
        return cls(settings, f"demo-{secrets.token_hex(4)}.ibx.localhost/ledger")

    def _get(self, name: str, default: str = "?") -> str:
        return self.settings.get(f"{FABRIC_PREFIX}{name}") or default

    @property
    def mode(self) -> str:
        """``full`` or ``anchor``."""
        return self._get("MODE")

    @property
    def channel(self) -> str:
        """The channel's name."""
        return self._get("CHANNEL")

    @property
    def chaincode(self) -> str:
        """The chaincode's name on the channel."""
        return self._get("CHAINCODE", "ibx-ledger")

    @property
    def gateway(self) -> str:
        """The peer's Gateway endpoint."""
        return self._get("GATEWAY")

    @property
    def msp_id(self) -> str:
        """The client identity's organisation."""
        return self._get("MSP_ID")

    def operator_env(self) -> dict[str, str]:
        """What ``ibx init``, ``ibx serve`` and the operator's commands get: the settings and
        this run's origin."""
        return {**self.settings, "IBX_LEDGER_ORIGIN": self.origin}

    def auditor_env(self) -> dict[str, str]:
        """The auditor's own Fabric identity and peer. On a one-machine demo network it is
        the same organisation's; in the consortium it is the auditor's organisation's."""
        return dict(self.settings)
