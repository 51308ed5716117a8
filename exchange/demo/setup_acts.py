"""Steps 1-5 of the story: the deployment, its officers and policy, the plants, the edge
terminal, and the witness's first round.

Each act is the ``ibx`` command its actor would type (:mod:`exchange.demo.processes`);
the narrator prints what came of it and, where it matters, the ledger entry.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
from typing import TYPE_CHECKING

from exchange.demo.cluster import (
    CORE_DATASET,
    EDGE_DEVICE,
    EDGE_PLANT,
    INDUSTRY,
    PLANTS,
    write_csv,
    write_sqlite,
)
from exchange.demo.processes import Actor, DemoError, free_port, in_parallel, start_server
from exchange.demo.scene import OFFICERS, Plant
from policies import BASELINE_PACK

if TYPE_CHECKING:
    from pathlib import Path

    from exchange.demo.cluster import PlantProfile
    from exchange.demo.scene import Scene

__all__ = [
    "agent_argv",
    "deploy",
    "edge_readings",
    "officers_and_policy",
    "plants_join",
    "witness_round",
]

_OFFICER_LINE = re.compile(r"^officer\s+(\S+)\s+key\s+(\S+).*\btoken\s+(\S+)\s*$")
_CONSENT = (
    "--requester-group",
    f"subbrain:{INDUSTRY}",
    "--purpose",
    "benchmarking",
    "--purpose",
    "trade_matching",
    "--operation",
    "mean",
    "--operation",
    "percentile_rank",
    "--operation",
    "set_intersection_size",
    "--engine",
    "he",
    "--engine",
    "mpc",
    "--engine",
    "psi",
    "--min-cohort",
    "3",
    "--days",
    "90",
)
"""What every plant consents to: lithium-battery sub-brains may benchmark and match trade
partners, by mean, rank and supplier overlap, over at least three plants."""


def deploy(scene: Scene) -> None:
    """1. ``ibx init`` with two bootstrap officers, then ``ibx serve``.

    Raises:
        DemoError: a command failed or printed something the story did not expect.
    """
    say, cli = scene.say, scene.cli
    handed = scene.work / "init-keys"
    ran = cli.operator(
        "init", "--officer", OFFICERS[0], "--officer", OFFICERS[1], "--officer-keys", str(handed)
    )
    info = dict(_pairs(ran.stdout))
    say.fact(
        f"ibx init: a deployment in {scene.shown(scene.data_dir)} ({info.get('database', '?')}), "
        f"ledger origin {info.get('origin', '?')}"
    )
    for line in ran.stdout.splitlines():
        found = _OFFICER_LINE.match(line.strip())
        if not found:
            continue
        name, key, token = found.groups()
        officer = Actor(name, scene.work / "officers" / name)
        officer.keep_token(token)
        shutil.move(str(handed / key.rsplit("/", 1)[-1]), officer.home / "officer.key")
        scene.officers[name] = officer
    if set(scene.officers) != set(OFFICERS):
        raise DemoError(f"ibx init named no officers: {ran.stdout[-300:]}")
    shutil.rmtree(handed)
    say.fact(
        f"bootstrap security officers {OFFICERS[0]} (王) and {OFFICERS[1]} (李): "
        "each handed a key file and a token, shown once; the copies deleted"
    )
    api, edge = free_port(), free_port()
    url = start_server(
        scene.background, cli, port=api, edge_port=edge, log=scene.work / "serve.log"
    )
    scene.edge_url = f"https://127.0.0.1:{edge}"
    bundle = scene.work / "ca-bundle.pem"
    shutil.copyfile(scene.data_dir / "ca-bundle.pem", bundle)
    cli.exchange, cli.ca_bundle = url, bundle
    say.fact(
        f"ibx serve: the API on {url}, the edge terminals' mutual-TLS port on {scene.edge_url}"
    )
    if scene.consortium is not None:
        fabric = scene.consortium
        say.fact(
            f"ibx serve ships the ledger to the consortium's Fabric channel {fabric.channel} "
            f"(chaincode {fabric.chaincode}, peer {fabric.gateway}, {fabric.mode} mode) as "
            f"log {fabric.origin}"
        )
    vkey = cli.operator("ledger", "vkey").stdout.strip()
    scene.ledger_vkey.write_text(vkey + "\n", encoding="utf-8")
    say.fact(f"ledger verifier key {vkey[:40]}… handed out of band (ledger.vkey)")
    in_parallel(
        [
            functools.partial(cli.operator, "identity", "cert", n, "--out", str(officer.home))
            for n, officer in scene.officers.items()
        ]
    )
    say.fact("the operator issues each officer a client certificate: their second factor")


def _pairs(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        key, _, value = line.partition("  ")
        if value.strip():
            out.append((key.strip(), value.strip()))
    return out


def officers_and_policy(scene: Scene) -> None:
    """2. 王 proposes and tests the pack, 李 approves and activates it; 王 registers the
    auditor and the witness.

    Raises:
        DemoError: a command failed or printed something the story did not expect.
    """
    say, cli, ledger = scene.say, scene.cli, scene.ledger
    wang, li = (scene.officers[n] for n in OFFICERS)
    mark = ledger.size()
    proposed = cli.as_actor(
        wang,
        "policy",
        "propose",
        str(BASELINE_PACK),
        "--key",
        str(scene.officer_key(wang.name)),
        "--json",
        admin=True,
    ).json()
    version = str(proposed["hash"])
    summary = proposed.get("summary", {})
    say.fact(
        f"{wang.name} proposes the baseline pack, signed with their key: version "
        f"{version[:16]} ({summary.get('p_lines')} policy lines, {summary.get('modules')} "
        f"Rego modules), ledger #{_index(scene, 'policy.propose', mark)}"
    )
    tested = cli.as_actor(
        wang,
        "policy",
        "test",
        version,
        "--key",
        str(scene.officer_key(wang.name)),
        "--json",
        admin=True,
    ).json()
    say.fact(
        f"{wang.name} runs its tests in the sandbox: {_passed(tested)}, "
        f"ledger #{_index(scene, 'policy.test', mark)}"
    )
    for step in ("approve", "activate"):
        cli.as_actor(
            li, "policy", step, version, "--key", str(scene.officer_key(li.name)), admin=True
        )
        say.fact(
            f"{li.name} {step}s it, a signed duty checked against the key the ledger "
            f"records for {li.name}: ledger #{_index(scene, f'policy.{step}', mark)}"
        )
    say.detail(
        f"four eyes: proposed by {wang.name}, approved by {li.name}; "
        f"version {version[:16]} is active"
    )
    auditor, witness = scene.auditor, scene.witness
    for actor in (auditor, witness):
        actor.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    in_parallel(
        [
            lambda: cli.as_actor(
                auditor,
                "identity",
                "keygen",
                "--out",
                str(auditor.home / "auditor.key"),
                remote=False,
            ),
            lambda: cli.as_actor(
                witness,
                "identity",
                "keygen",
                "--out",
                str(witness.home / "witness.key"),
                remote=False,
            ),
        ]
    )
    mark = ledger.size()
    officer = ["--key", str(scene.officer_key(wang.name)), "--officer", wang.name, "--json"]
    created = cli.operator(
        "identity",
        "create",
        "--role",
        "auditor",
        "--name",
        auditor.name,
        "--public-key",
        str(auditor.home / "auditor.key"),
        "--cert-out",
        str(auditor.home),
        *officer,
    ).json()
    auditor.keep_token(str(created["token"]))
    created = cli.operator(
        "identity",
        "create",
        "--role",
        "witness",
        "--name",
        witness.name,
        "--public-key",
        str(witness.home / "witness.key"),
        *officer,
    ).json()
    witness.keep_token(str(created["token"]))
    made = ledger.find("identity.create", since=mark)
    say.fact(
        f"{wang.name} co-signs the registration of auditor {auditor.name} (审计管理员) and "
        f"witness {witness.name}, each with a key made on their own machine: ledger "
        f"{', '.join(f'#{e.index}' for e in made)}"
    )


def _passed(report: dict[str, object]) -> str:
    results = report.get("results")
    if isinstance(results, list):
        passed = sum(1 for r in results if isinstance(r, dict) and r.get("passed"))
        return f"{passed}/{len(results)} passed"
    return "passed"


def _index(scene: Scene, type_: str, since: int) -> int:
    return scene.ledger.last(type_, since=since).index


def plants_join(scene: Scene) -> None:
    """3. The operator registers the sub-brain and five plants; each plant makes its key,
    registers its dataset, signs its consent and starts its agent.

    Raises:
        DemoError: a command failed or printed something the story did not expect.
    """
    say, cli = scene.say, scene.cli
    subbrain = scene.subbrain
    created = cli.operator(
        "identity",
        "create",
        "--role",
        "subbrain",
        "--name",
        subbrain.name,
        "--industry",
        INDUSTRY,
        "--json",
    ).json()
    subbrain.keep_token(str(created["token"]))
    say.fact(f"the operator registers the sub-brain {subbrain.name} (锂电池产业细分大脑)")
    scene.plants = [Plant(p, Actor(p.name, scene.work / "plants" / p.name)) for p in PLANTS]
    in_parallel([functools.partial(_join, scene, plant) for plant in scene.plants])
    for plant in scene.plants:
        profile = plant.profile
        where = "its edge meter's readings" if plant.edge else "SQLite" if profile.sqlite else "CSV"
        say.fact(
            f"{profile.title}: key made at home; dataset {profile.dataset} "
            f"({len(profile.fields(edge=plant.edge))} fields, 12 months, {where}); "
            f"consent signed, ledger #{plant.consent_index}"
        )
    say.detail(
        f"each consent: {INDUSTRY} sub-brains, benchmarking and trade matching; mean, "
        "rank and supplier overlap; HE, MPC or PSI; cohort >= 3; 90 days"
    )
    say.fact(
        f"{PLANTS[0].title} also lists {CORE_DATASET} (electrolyte recipes, core data "
        "核心数据) in the catalog, with no consent"
    )
    for plant in scene.plants:
        _start_agent(scene, plant)
    say.fact(
        f"{len(scene.plants)} ibx agent processes started, one per plant, each with its "
        "own key, token and data, and the ledger key it was handed"
    )


def _join(scene: Scene, plant: Plant) -> None:
    cli, profile, home = scene.cli, plant.profile, plant.actor.home
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    cli.as_actor(plant.actor, "consent", "keygen", "--out", str(plant.key_file), remote=False)
    created = cli.operator(
        "identity",
        "create",
        "--role",
        "enterprise",
        "--name",
        plant.name,
        "--industry",
        INDUSTRY,
        "--public-key",
        str(plant.key_file),
        "--json",
    ).json()
    plant.actor.keep_token(str(created["token"]))
    if not plant.edge:
        if profile.sqlite:
            write_sqlite(profile, home / "monthly.db")
        else:
            write_csv(profile, home / "monthly.csv")
    fields = profile.fields(edge=plant.edge)
    cli.as_actor(
        plant.actor,
        "dataset",
        "register",
        "--id",
        profile.dataset,
        *(a for f in fields for a in ("--field", f)),
        "--classification",
        "general",
        "--description",
        f"{profile.english}: monthly output, energy, yield",
    )
    if profile.dataset.split(".")[0] == CORE_DATASET.split(".")[0]:
        cli.as_actor(
            plant.actor,
            "dataset",
            "register",
            "--id",
            CORE_DATASET,
            "--field",
            "electrolyte_ratio",
            "--classification",
            "core",
            "--description",
            "electrolyte recipes per line",
        )
    granted = cli.as_actor(
        plant.actor,
        "consent",
        "grant",
        "--key",
        str(plant.key_file),
        "--dataset",
        f"{profile.dataset}:{','.join(fields)}",
        *_CONSENT,
        "--json",
    ).json()
    plant.consent_id = str(granted["consent_id"])
    plant.consent_index = int(granted["ledger_index"])


def agent_argv(
    profile: PlantProfile, home: Path, *, exchange: str, ca_bundle: Path, ledger_vkey: Path
) -> list[str]:
    """``ibx ARGV`` of the plant's agent, its files in ``home`` (the demo's, or a copy of
    its work dir: ``make console`` and the console tests start the same agents)."""
    if profile is EDGE_PLANT:
        source = ["--source", "edge", "--edge-ca", str(ca_bundle)]
    elif profile.sqlite:
        source = ["--source", f"sqlite:///{home / 'monthly.db'}", "--table", "monthly"]
    else:
        source = ["--source", str(home / "monthly.csv")]
    return [
        "--token-file",
        str(home / "token"),
        "agent",
        "--exchange",
        exchange,
        "--ca-bundle",
        str(ca_bundle),
        "--enterprise",
        profile.name,
        "--key",
        str(home / "consent.key"),
        *source,
        "--ledger-vkey",
        str(ledger_vkey),
        "--state",
        str(home / "agent-state"),
        "--poll",
        "5",
    ]


def _start_agent(scene: Scene, plant: Plant) -> None:
    cli, home = scene.cli, plant.actor.home
    if cli.ca_bundle is None:
        raise DemoError("no exchange yet: step 1 starts it")
    argv = agent_argv(
        plant.profile, home, exchange=cli.exchange, ca_bundle=cli.ca_bundle,
        ledger_vkey=scene.ledger_vkey,
    )  # fmt: skip
    plant.agent = scene.background.start(
        f"ibx agent {plant.name}", argv, env=cli.base_env(), log=home / "agent.log", cwd=home
    )


def edge_readings(scene: Scene) -> None:
    """4. The edge plant's meter enrols over EST and uploads its months over mutual TLS.

    Raises:
        DemoError: a command failed or printed something the story did not expect.
    """
    say, cli, ledger = scene.say, scene.cli, scene.ledger
    plant = scene.plant(EDGE_PLANT)
    mark = ledger.size()
    token = cli.as_actor(
        plant.actor, "edge", "token", "create", "--device", EDGE_DEVICE, "--ttl", "30m", "--json"
    ).json()
    say.fact(
        f"{EDGE_PLANT.title} creates a one-time bootstrap token for {EDGE_DEVICE} "
        f"(ledger #{_index(scene, 'edge.token.create', mark)})"
    )
    device = Actor(EDGE_DEVICE, plant.device_dir)
    device.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    enrolled = cli.as_actor(
        device,
        "edge",
        "enroll",
        "--server",
        scene.edge_url,
        "--ca-bundle",
        str(cli.ca_bundle),
        "--device",
        EDGE_DEVICE,
        "--out",
        str(device.home / "credentials"),
        "--enterprise-key",
        _public_key(plant),
        "--json",
        remote=False,
        env={"IBX_BOOTSTRAP_TOKEN": str(token["token"])},
    ).json()
    say.fact(
        f"{EDGE_DEVICE} makes its key on the device and enrols over EST: certificate "
        f"{str(enrolled['serial'])[:16]}…, ledger "
        f"#{_index(scene, 'edge.certificate.issue', mark)}"
    )
    readings = write_csv(EDGE_PLANT, device.home / "readings-2025.csv", edge=True)
    uploaded = cli.as_actor(
        device,
        "edge",
        "upload",
        str(readings),
        "--dir",
        str(device.home / "credentials"),
        "--json",
        remote=False,
    ).json()
    say.fact(
        f"it signs 12 monthly readings, seals them to {EDGE_PLANT.english}'s key and "
        f"uploads them over mutual TLS: batch {uploaded['batch']}, ledger "
        f"#{_index(scene, 'edge.readings.upload', mark)}"
    )
    say.detail(
        "the exchange stores ciphertext only; the plant's agent (--source edge) opens "
        "it with the plant's key and checks the device's signature"
    )


def _public_key(plant: Plant) -> str:
    return str(json.loads(plant.key_file.read_text(encoding="utf-8"))["public_key"])


def witness_round(scene: Scene, *, first: bool) -> None:
    """5 and 9. The witness checks the new checkpoint against the one it kept and cosigns.

    Raises:
        DemoError: a command failed or printed something the story did not expect.
    """
    say, cli = scene.say, scene.cli
    witness = scene.witness
    ran = cli.as_actor(
        witness,
        "audit",
        "witness",
        "--once",
        "--state",
        str(witness.home / "state"),
        "--key",
        str(witness.home / "witness.key"),
        "--ledger-vkey",
        str(scene.ledger_vkey),
    )
    printed = ran.stdout + ran.stderr
    cosigned = re.search(r"cosigned checkpoint (\d+)", printed)
    if cosigned is None:
        raise DemoError(f"the witness cosigned nothing: {printed[-300:]}")
    size = int(cosigned.group(1))
    if first:
        say.fact(
            f"{witness.name} verifies the checkpoint of size {size} under the ledger key "
            "it was handed, cosigns it and keeps it"
        )
        vkey = re.search(r"cosigning as (\S+)", printed)
        if vkey:
            say.detail(
                f"its cosignature key {vkey.group(1)[:32]}… (an agent can require it: "
                "ibx agent --witness KEY --witness-quorum 1)"
            )
    else:
        say.fact(
            f"{witness.name} checks the consistency proof from the checkpoint it kept "
            f"(size {scene.witnessed}) to the new one (size {size}), and cosigns it"
        )
    say.detail("the exchange serves that checkpoint with the witness's cosignature")
    scene.witnessed = size
