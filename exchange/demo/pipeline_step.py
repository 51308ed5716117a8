"""Demo step: the authorize-before-use pipeline for real — ``ibx serve``, one ``ibx agent``
process per enterprise over its own data, a sub-brain's HE, MPC and PSI requests, a
denial, a cohort too small, and a consent revoked while its job collects.

Everyone acts as they would in production: the server is a separate ``ibx serve``
process on the demo's data dir; each enterprise has a directory of its own (its
key, its token, its CSV file or SQLite database, its agent's state) and talks
HTTPS to the exchange; the sub-brain only ever sees results.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from consent import (
    ConsentReceipt,
    DatasetScope,
    Engine,
    EnterpriseKey,
    Operation,
    Purpose,
    Requester,
    Revocation,
    new_consent_id,
)
from core.clock import utcnow
from exchange.client import ExchangeClient
from exchange.error_table import RemoteRefusalError
from exchange.identities import IssuedIdentity, Role

if TYPE_CHECKING:
    from exchange.demo import Scene
    from exchange.settings import Settings

INDUSTRY = "lithium-battery"
SUBBRAIN = "sb-battery-pipeline"
OUTSIDER = "sb-materials"
"""A sub-brain of another industry: the policy keeps it out of lithium-battery data."""
COLUMNS = ("energy_kwh", "output_units", "water_m3", "supplier")
RECIPES = "plant-hangzhou.recipes"
"""Core data (the policy whitelists only monitoring, risk warning and policy evaluation)."""
TERMINAL = frozenset({"released", "refused", "failed", "cancelled"})

# each plant's monthly rows: energy used, units made, water used, the supplier of the month
PLANTS: Mapping[str, tuple[tuple[float, float, float, str], ...]] = {
    "plant-hangzhou": ((4180.0, 100.0, 31.0, "lithium-qh"), (4390.0, 104.0, 29.5, "graphite-sx"),
                       (4020.0, 97.0, 30.2, "sep-film-nb"), (4255.0, 101.0, 32.8, "cobalt-jx")),
    "plant-ningbo": ((3720.0, 100.0, 27.1, "lithium-qh"), (3810.0, 103.0, 26.0, "graphite-sx"),
                     (3650.0, 98.0, 28.4, "foil-wz"), (3700.0, 99.0, 27.7, "cobalt-jx")),
    "plant-wenzhou": ((4590.0, 100.0, 35.6, "lithium-qh"), (4700.0, 102.0, 36.1, "graphite-sx"),
                      (4480.0, 97.0, 34.9, "foil-wz"), (4620.0, 101.0, 35.0, "binder-hz")),
    "plant-jiaxing": ((3940.0, 100.0, 29.9, "lithium-qh"), (4010.0, 102.0, 30.3, "graphite-sx"),
                      (3880.0, 99.0, 29.0, "sep-film-nb"), (3990.0, 101.0, 31.2, "nickel-gs")),
    "plant-huzhou": ((5230.0, 100.0, 40.2, "lithium-qh"), (5310.0, 101.0, 41.0, "graphite-sx"),
                     (5150.0, 98.0, 39.4, "nickel-gs"), (5280.0, 102.0, 40.8, "binder-hz")),
}  # fmt: skip


def run(scene: Scene) -> None:
    """The pipeline with real processes: server, agents, requests, refusals, a revocation."""
    runtime = scene.runtime
    base = scene.work_dir / "pipeline"
    base.mkdir(parents=True, exist_ok=True)
    sub_brain = _identity(scene, SUBBRAIN, Role.SUBBRAIN, INDUSTRY)
    outsider = _identity(scene, OUTSIDER, Role.SUBBRAIN, "new-materials")
    vkey = runtime.ledger.vkey()
    plants = [_Plant.create(scene, base / name, name, vkey) for name in PLANTS]
    with _serving(runtime.settings, base / "serve.log") as url:
        bundle = runtime.settings.data_dir / "ca-bundle.pem"
        scene.say(
            f"ibx serve runs on {url}; {len(plants)} plants each run their own ibx agent over "
            "their own CSV or SQLite file, with the ledger key the operator handed them"
        )
        for plant in plants:
            plant.register_and_consent(url, bundle, runtime.settings.ledger_origin)
        scene.say(
            f"    each registered its dataset (metadata only) and signed a consent for {INDUSTRY}"
            " sub-brains: benchmarking, trade matching; mean, ranks, supplier overlap; cohort >= 3"
        )
        agents = [plant.start_agent(url, bundle) for plant in plants]
        try:
            asker = _Requester(url, bundle, sub_brain, scene)
            datasets = [p.dataset for p in plants]
            _he_mean(scene, asker, plants, datasets)
            _mpc_ranks(scene, asker, plants, datasets)
            _psi(scene, asker, plants[:3])
            _refusals(scene, _Requester(url, bundle, outsider, scene), asker, datasets)
            _revocation(scene, asker, plants, agents)
        finally:
            for agent in agents:
                agent.stop()


# --- the story ------------------------------------------------------------------------


def _he_mean(scene: Scene, asker: _Requester, plants: list[_Plant], datasets: list[str]) -> None:
    job = asker.submit("mean", ["energy_kwh"], datasets, engine="he", length=4)
    scene.say(
        f"{SUBBRAIN} asks for the mean monthly energy of {len(plants)} plants (HE): decision "
        f"on ledger entry {job['decision_index']} before any agent was asked"
    )
    view, result = asker.finish(job)
    truth = [sum(p.rows[m][0] for p in plants) / len(plants) for m in range(4)]
    scene.say(
        f"    {view['contributed']} agents verified it on the ledger and sent encrypted "
        f"columns; released mean {_numbers(result['values']['mean'])} (plain: {_numbers(truth)})"
    )
    scene.say(f"    result sha256 {result['result_sha256'][:16]}… on ledger entry "
              f"{result['result_index']}")  # fmt: skip


def _mpc_ranks(scene: Scene, asker: _Requester, plants: list[_Plant], datasets: list[str]) -> None:
    job = asker.submit("percentile_rank", ["energy_kwh"], datasets, engine="auto", bound=10000.0)
    view, result = asker.finish(job)
    values = result["values"]
    scene.say(
        f"benchmarking on {job['engine'].upper()}: each agent secret-shares its mean to 3 "
        f"parties; median {_numbers(values['median'])}, quartiles {_numbers(values['quartiles'])}"
    )
    for plant in plants:
        rank = plant.rank(job["job_id"])
        scene.say(f"    {plant.name} alone learns its rank: "
                  f"{'?' if rank is None else f'{rank:.0f}%'} of the others use less")  # fmt: skip
    del view


def _psi(scene: Scene, asker: _Requester, plants: list[_Plant]) -> None:
    job = asker.submit(
        "set_intersection_size",
        ["supplier"],
        [p.dataset for p in plants],
        engine="auto",
        purpose="trade_matching",
    )
    _, result = asker.finish(job)
    scene.say(
        f"supplier overlap of {len(plants)} plants (PSI, {len(plants)} blinding rounds): "
        f"{result['values']['size'][0]:.0f} suppliers in common; which ones, nobody learns"
    )


def _refusals(scene: Scene, outsider: _Requester, asker: _Requester, datasets: list[str]) -> None:
    asker.refused(
        f"{SUBBRAIN} benchmarking over a plant's core recipe data",
        lambda: asker.submit("mean", ["binder_ratio"], [RECIPES], engine="auto"),
    )
    outsider.refused(
        f"{OUTSIDER} (new-materials) asking for the same data",
        lambda: outsider.submit("mean", ["energy_kwh"], datasets, engine="he"),
    )
    asker.refused(
        f"{SUBBRAIN} asking about 2 plants only",
        lambda: asker.submit("mean", ["energy_kwh"], datasets[:2], engine="he"),
    )


def _revocation(
    scene: Scene, asker: _Requester, plants: list[_Plant], agents: list[_Agent]
) -> None:
    slow, quitter = agents[0], plants[-1]
    slow.stop()  # one plant's agent is offline: the job keeps collecting
    job = asker.submit("mean", ["water_m3"], [p.dataset for p in plants], engine="he", length=4)
    asker.wait_until(job["job_id"], lambda v: v["contributed"] == len(plants) - 1)
    quitter.revoke()
    scene.say(
        f"while a water-use job collects, {quitter.name} revokes its consent "
        f"(signed with its key) after its agent had contributed"
    )
    slow.start()
    _, result = asker.finish(job)
    kept = [p for p in plants if p is not quitter]
    truth = [sum(p.rows[m][2] for p in kept) / len(kept) for m in range(4)]
    scene.say(
        f"    its contribution is removed before release: mean over {result['cohort']} plants "
        f"{_numbers(result['values']['mean'])} (plain, without {quitter.name}: {_numbers(truth)})"
    )


# --- the actors -----------------------------------------------------------------------


def _identity(scene: Scene, name: str, role: Role, industry: str | None) -> IssuedIdentity:
    if name not in scene.identities:
        scene.identities[name] = scene.runtime.identities.create(name, role, industry=industry)
    return scene.identities[name]


def _numbers(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in values) + "]"


@dataclass
class _Plant:
    """An enterprise's machine: key, token, data and the agent's state dir."""

    name: str
    home: Path
    token: str
    key: EnterpriseKey
    rows: tuple[tuple[float, float, float, str], ...]
    consent_id: str = ""
    url: str = ""
    bundle: Path | None = None
    origin: str = ""

    @property
    def dataset(self) -> str:
        return f"{self.name}.plant"

    @classmethod
    def create(cls, scene: Scene, home: Path, name: str, vkey: str) -> _Plant:
        """The operator creates the identity with the public key the plant handed over."""
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = EnterpriseKey.generate(home / "consent.key")
        issued = scene.runtime.identities.create(
            name, Role.ENTERPRISE, industry=INDUSTRY, public_key=key.signer.public_key
        )
        scene.identities[name] = issued
        (home / "ledger.vkey").write_text(vkey + "\n")
        plant = cls(name, home, issued.token, key, PLANTS[name])
        plant.write_data(sqlite=len(scene.identities) % 2 == 0)
        return plant

    def write_data(self, *, sqlite: bool) -> None:
        if not sqlite:
            with (self.home / "plant.csv").open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(COLUMNS)
                writer.writerows(self.rows)
            return
        with closing(sqlite3.connect(self.home / "plant.db")) as db:
            db.execute(
                "CREATE TABLE plant (energy_kwh REAL, output_units REAL, water_m3 REAL, "
                "supplier TEXT)"
            )
            db.executemany("INSERT INTO plant VALUES (?, ?, ?, ?)", self.rows)
            db.commit()

    def source(self) -> list[str]:
        if (self.home / "plant.db").exists():
            return ["--source", f"sqlite:///{self.home / 'plant.db'}", "--table", "plant"]
        return ["--source", str(self.home / "plant.csv")]

    def client(self) -> ExchangeClient:
        return ExchangeClient.remote(self.url, token=self.token, ca_bundle=self.bundle)

    def register_and_consent(self, url: str, bundle: Path, origin: str) -> None:
        """Register the dataset's metadata and sign a consent, on the plant's side."""
        self.url, self.bundle, self.origin = url, bundle, origin
        now = utcnow()
        with self.client() as client:
            client.post(
                "/v1/datasets",
                {"dataset_id": self.dataset, "fields": list(COLUMNS),
                 "classification": "general", "description": "monthly plant figures"},
            )  # fmt: skip
            receipt = ConsentReceipt(
                consent_id=new_consent_id(),
                origin=origin,
                enterprise=self.name,
                public_key=self.key.signer.public_key,
                scope=(DatasetScope(self.dataset, COLUMNS),),
                requester=Requester.group("subbrain", INDUSTRY),
                purposes=(Purpose.BENCHMARKING, Purpose.TRADE_MATCHING),
                operations=(
                    Operation.MEAN,
                    Operation.PERCENTILE_RANK,
                    Operation.SET_INTERSECTION_SIZE,
                ),
                engines=(Engine.HE, Engine.MPC, Engine.PSI),
                min_cohort=3,
                valid_from=now,
                valid_until=now + timedelta(days=90),
                signed_at=now,
            )
            record = client.post("/v1/consents", receipt.sign(self.key.signer).to_dict())
            if RECIPES.startswith(self.name + "."):
                client.post(
                    "/v1/datasets",
                    {"dataset_id": RECIPES, "fields": ["binder_ratio"], "classification": "core"},
                )
        self.consent_id = record["consent_id"]

    def revoke(self) -> None:
        """Sign a revocation with the plant's own key and hand it to the exchange."""
        revocation = Revocation(
            consent_id=self.consent_id,
            origin=self.origin,
            enterprise=self.name,
            public_key=self.key.signer.public_key,
            reason="stops sharing water figures",
            signed_at=utcnow(),
        )
        with self.client() as client:
            client.post(
                f"/v1/consents/{self.consent_id}/revocation",
                revocation.sign(self.key.signer).to_dict(),
            )

    def start_agent(self, url: str, bundle: Path) -> _Agent:
        agent = _Agent(self, url, bundle)
        agent.start()
        return agent

    def rank(self, job_id: str, timeout: float = 20) -> float | None:
        """The rank the plant's agent learnt from its own share (its journal)."""
        journal = self.home / "state" / "journal.jsonl"
        stop = time.monotonic() + timeout
        while time.monotonic() < stop:
            if journal.exists():
                for line in journal.read_text().splitlines():
                    event = json.loads(line)
                    if event.get("job_id") == job_id and event.get("event") == "rank":
                        return float(event["percentile"])
            time.sleep(0.2)
        return None


class _Agent:
    """``ibx agent`` for one plant, as a process of its own."""

    def __init__(self, plant: _Plant, url: str, bundle: Path) -> None:
        self.plant, self.url, self.bundle = plant, url, bundle
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        plant = self.plant
        env = {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}
        env["IBX_TOKEN"] = plant.token
        log = (plant.home / "agent.log").open("ab")
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "exchange.cli", "agent", "--exchange", self.url,
             "--ca-bundle", str(self.bundle), "--enterprise", plant.name,
             "--key", str(plant.home / "consent.key"), *plant.source(),
             "--ledger-vkey", str(plant.home / "ledger.vkey"),
             "--state", str(plant.home / "state"), "--poll", "5"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=plant.home,
        )  # fmt: skip
        log.close()

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class _Requester:
    """A sub-brain talking to the exchange over HTTPS: requests, jobs, results."""

    def __init__(self, url: str, bundle: Path, issued: IssuedIdentity, scene: Scene) -> None:
        self.url, self.bundle, self.issued, self.scene = url, bundle, issued, scene

    def client(self) -> ExchangeClient:
        return ExchangeClient.remote(self.url, token=self.issued.token, ca_bundle=self.bundle)

    def submit(
        self,
        operation: str,
        fields: list[str],
        datasets: list[str],
        *,
        engine: str,
        purpose: str = "benchmarking",
        **parameters: Any,
    ) -> dict[str, Any]:
        body = {
            "purpose": purpose,
            "operation": operation,
            "fields": fields,
            "datasets": datasets,
            "engine": engine,
            "parameters": {"deadline_seconds": 90, **parameters},
        }
        with self.client() as client:
            job: dict[str, Any] = client.post("/v1/requests", body)
        return job

    def wait_until(
        self, job_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 100
    ) -> dict[str, Any]:
        stop = time.monotonic() + timeout
        with self.client() as client:
            while True:
                view: dict[str, Any] = client.get(f"/v1/jobs/{job_id}")
                if done(view) or view["state"] in TERMINAL:
                    return view
                if time.monotonic() > stop:
                    raise RuntimeError(f"job {job_id} is still {view['state']}")
                time.sleep(0.2)

    def finish(self, job: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Wait for the job to end; its view and result (a job not released stops the demo)."""
        view = self.wait_until(job["job_id"], lambda v: v["state"] in TERMINAL)
        if view["state"] != "released":
            raise RuntimeError(f"job {job['job_id']} {view['state']}: {view.get('reason')}")
        with self.client() as client:
            result: dict[str, Any] = client.get(f"/v1/results/{job['job_id']}")
        return view, result

    def refused(self, what: str, call: Callable[[], object]) -> None:
        try:
            call()
        except RemoteRefusalError as exc:
            self.scene.say(f"{what}: HTTP {exc.status}: {exc}")
            return
        raise RuntimeError(f"{what} was not refused")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def _serving(settings: Settings, log_path: Path) -> Iterator[str]:
    """``ibx serve`` on the demo's data dir, in a process of its own, until the block ends.

    The server gets the demo's own secrets (the database URL, the master key) the way an
    operator hands them, in its environment; ``ibx`` took them out of this process's.
    """
    data_dir = settings.data_dir
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}
    if settings.database_url:
        env["IBX_DATABASE_URL"] = settings.database_url
    if settings.master_key is not None:
        env["IBX_MASTER_KEY"] = settings.master_key.get_secret_value()
    with log_path.open("ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "exchange.cli", "--data-dir", str(data_dir), "serve",
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=log, env=env,
        )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    bundle = data_dir / "ca-bundle.pem"
    try:
        stop = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ibx serve stopped: see {log_path}")
            try:
                context = ssl.create_default_context(cafile=str(bundle))
                if httpx.get(f"{url}/healthz", verify=context, timeout=1).status_code == 200:
                    break
            except (httpx.TransportError, ssl.SSLError, FileNotFoundError):
                pass
            if time.monotonic() > stop:
                raise RuntimeError("ibx serve did not come up")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
