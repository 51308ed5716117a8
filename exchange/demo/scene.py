"""What the story's steps share: the deployment, its actors and their machines.

The work dir (``./.ibx-demo``) is laid out the way the actors' machines
would be, one directory each::

    data/                 the exchange's data dir (ibx init, ibx serve)
    officers/<name>/      a security officer: key file, token, client certificate
    auditor/, witness/    the auditor's and the witness's
    sub-brain/            the lithium-battery sub-brain's token
    plants/<name>/        an enterprise: consent key, token, its data, its agent's state
    plants/<name>/device/ its edge terminal's key and certificate (the edge plant)
    ledger.vkey           the ledger's verifier key, handed out of band
    ca-bundle.pem         the deployment CA, handed to every user
    commands.log          every ibx command the story ran
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from exchange.demo.cluster import EDGE_PLANT, PlantProfile
from exchange.demo.processes import Actor

if TYPE_CHECKING:
    from pathlib import Path

    from exchange.demo.consortium import Consortium
    from exchange.demo.narration import LedgerView, Narrator
    from exchange.demo.processes import Background, Cli

__all__ = ["OFFICERS", "Plant", "Scene"]

OFFICERS = ("officer-wang", "officer-li")
"""The two bootstrap security officers: 王 proposes, 李 approves."""
SUBBRAIN = "sb-lithium-battery"
AUDITOR = "auditor-zhao"
WITNESS = "witness-qiu"


@dataclass
class Plant:
    """An enterprise of the cluster on its own machine."""

    profile: PlantProfile
    actor: Actor
    consent_id: str = ""
    consent_index: int = -1
    agent: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The identity name."""
        return self.profile.name

    @property
    def edge(self) -> bool:
        """Whether its figures come from its edge terminal."""
        return self.profile is EDGE_PLANT

    @property
    def key_file(self) -> Path:
        """The enterprise's consent key (``ibx consent keygen``)."""
        return self.actor.home / "consent.key"

    @property
    def device_dir(self) -> Path:
        """Its edge terminal's credentials (``ibx edge enroll --out``)."""
        return self.actor.home / "device"


@dataclass
class Scene:
    """The deployment and everyone in it, as the steps build them."""

    work: Path
    cli: Cli
    say: Narrator
    ledger: LedgerView
    background: Background
    officers: dict[str, Actor] = field(default_factory=dict)
    plants: list[Plant] = field(default_factory=list)
    edge_url: str = ""
    jobs: dict[str, str] = field(default_factory=dict)
    """Job ids by the story's label (``he``, ``mpc``, ``psi``, ``after-revocation``)."""
    witnessed: int = 0
    """The size of the last checkpoint the witness cosigned."""
    consortium: Consortium | None = None
    """The Fabric channel the exchange ships its log to (None: the consortium ledger is off)."""

    @property
    def data_dir(self) -> Path:
        """The exchange's data dir."""
        return self.work / "data"

    @property
    def ledger_vkey(self) -> Path:
        """The ledger's verifier key file everyone was handed."""
        return self.work / "ledger.vkey"

    @property
    def report(self) -> Path:
        """Where the auditor writes the HTML report."""
        return self.work / "report.html"

    def shown(self, path: Path) -> str:
        """``path`` as the reader would type it: relative to where the demo was started."""
        here = self.work.parent
        return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)

    def officer_key(self, name: str) -> Path:
        """Officer ``name``'s key file."""
        return self.officers[name].home / "officer.key"

    @property
    def subbrain(self) -> Actor:
        """The lithium-battery sub-brain."""
        return Actor(SUBBRAIN, self.work / "sub-brain")

    @property
    def auditor(self) -> Actor:
        """The auditor (审计管理员)."""
        return Actor(AUDITOR, self.work / "auditor")

    @property
    def witness(self) -> Actor:
        """The witness, run by a third party."""
        return Actor(WITNESS, self.work / "witness")

    def plant(self, profile: PlantProfile) -> Plant:
        """The plant of ``profile``.

        Raises:
            LookupError: not in the scene yet.
        """
        for plant in self.plants:
            if plant.profile is profile:
                return plant
        raise LookupError(profile.name)
