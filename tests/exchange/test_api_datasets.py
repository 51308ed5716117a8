"""The catalog over the API: enterprises register (as the owner), sub-brains and auditors
browse and search; each route decided by the active pack, every list paginated.

Routes are called through :class:`exchange.client.ExchangeClient` in-process on a
real data dir; ``ibx dataset`` runs on the data dir and against a real ``ibx serve``
and must print and exit the same.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.clock import utcnow
from exchange.cli import main
from exchange.client import ExchangeClient
from exchange.deployment_ca import ensure_deployment_ca
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.identities import bootstrap, register
from tests.server import ExchangeUrl, running_exchange

LB, NM = "lithium-battery", "new-materials"
FORBIDDEN = "exchange.error_table.ForbiddenError"

IDENTITIES = {
    "cathode-co": (Role.ENTERPRISE, LB),
    "alloy-co": (Role.ENTERPRISE, NM),
    "sb-lb": (Role.SUBBRAIN, LB),
    "aud": (Role.AUDITOR, None),
    "officer": (Role.SECURITY_OFFICER, None),
    "ops": (Role.SYSADMIN, None),
}

CATALOG = [
    ("cathode-co", "cathode-co.energy", ["energy_kwh", "output_units"], "important",
     "Monthly ENERGY use per line"),
    ("cathode-co", "cathode-co.quality", ["defect_rate"], "general", None),
    ("cathode-co", "cathode-co.recipes", ["binder_ratio"], "core", "electrode recipes"),
    ("alloy-co", "alloy-co.energy", ["energy_kwh"], "general", "furnace energy"),
    ("alloy-co", "alloy-co.output", ["output_units"], "important", None),
]  # fmt: skip


@dataclass
class World:
    runtime: Runtime
    tokens: dict[str, str]

    def client(self, who: str | None) -> ExchangeClient:
        return ExchangeClient.local(self.runtime, token=self.tokens[who] if who else None)

    def ids(self, who: str, **params: str) -> list[str]:
        with self.client(who) as client:
            return [d["dataset_id"] for d in client.pages("/v1/datasets", **params)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    runtime = Runtime(Settings(data_dir=initialised(tmp_path_factory.mktemp("cat") / "data")))
    bootstrap(runtime)
    tokens = {
        name: register(runtime, name, role, industry).token
        for name, (role, industry) in IDENTITIES.items()
    }
    for owner, dataset_id, fields, classification, description in CATALOG:
        with ExchangeClient.local(runtime, token=tokens[owner]) as client:
            client.post(
                "/v1/datasets",
                {
                    "dataset_id": dataset_id,
                    "fields": fields,
                    "classification": classification,
                    "description": description,
                },
            )
    yield World(runtime, tokens)
    runtime.close()


def refused(call: object, *args: object, **kwargs: object) -> RemoteRefusalError:
    with pytest.raises(RemoteRefusalError) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    return info.value


def test_an_enterprise_registers_as_the_owner_and_the_registration_is_ledgered(
    world: World,
) -> None:
    size = world.runtime.ledger.size()
    with world.client("cathode-co") as client:
        made = client.post(
            "/v1/datasets", {"dataset_id": "cathode-co.scrap", "fields": ["scrap_kg"]}
        )
        shown = client.get("/v1/datasets/cathode-co.scrap")
        taken = refused(client.post, "/v1/datasets", {"dataset_id": "cathode-co.scrap",
                                                      "fields": ["x"]})  # fmt: skip
        bad = refused(client.post, "/v1/datasets", {"dataset_id": "no spaces", "fields": ["x"]})
        extra = refused(
            client.post, "/v1/datasets", {"dataset_id": "a", "fields": ["x"], "owner": "alloy-co"}
        )
    assert made == shown
    assert (made["owner"], made["classification"], made["fields"]) == (
        "cathode-co", "general", ["scrap_kg"],
    )  # fmt: skip
    assert (taken.status, taken.code) == (409, "consent.errors.DatasetExistsError")
    assert (bad.status, bad.code) == (400, "consent.errors.InvalidConsentError")
    assert extra.status == 400  # the owner is the caller, never a field of the request
    events = world.runtime.ledger.entries(size, world.runtime.ledger.size() - size)
    kinds = [(e.type, e.actor) for e in events]
    assert kinds[:2] == [("authz.decision", "cathode-co"), ("dataset.register", "cathode-co")]


@pytest.mark.parametrize(
    ("who", "rule"),
    [
        ("sb-lb", "no line lets subbrain sb-lb catalog_register"),
        ("aud", "no line lets auditor aud catalog_register"),
        ("officer", "no line lets security_officer officer catalog_register"),
        ("ops", "no line lets sysadmin ops catalog_register"),
    ],
    ids=["subbrain", "auditor", "security-officer", "sysadmin"],
)
def test_only_enterprises_register(world: World, who: str, rule: str) -> None:
    with world.client(who) as client:
        error = refused(client.post, "/v1/datasets", {"dataset_id": f"{who}.x", "fields": ["x"]})
    assert (error.status, error.code) == (403, FORBIDDEN)
    assert rule in str(error)
    with world.client("aud") as client:
        error = refused(client.get, f"/v1/datasets/{who}.x")
    assert error.status == 404  # nothing was registered


def test_sub_brains_enterprises_and_auditors_browse_others_do_not(world: World) -> None:
    for who in ("sb-lb", "cathode-co", "alloy-co", "aud"):
        assert {"cathode-co.energy", "alloy-co.energy"} <= set(world.ids(who)), who
    for who, rule in [
        ("officer", "no line lets security_officer officer catalog_read"),
        ("ops", "no line lets sysadmin ops catalog_read"),
    ]:
        with world.client(who) as client:
            listing = refused(client.get, "/v1/datasets")
            one = refused(client.get, "/v1/datasets/cathode-co.energy")
        for error in (listing, one):
            assert (error.status, error.code) == (403, FORBIDDEN)
            assert rule in str(error)
    with world.client(None) as client:
        assert refused(client.get, "/v1/datasets").status == 401


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"owner": "alloy-co"}, ["alloy-co.energy", "alloy-co.output"]),
        ({"industry": NM}, ["alloy-co.energy", "alloy-co.output"]),
        ({"field": "energy_kwh"}, ["alloy-co.energy", "cathode-co.energy"]),
        ({"classification": "core"}, ["cathode-co.recipes"]),
        ({"q": "energy"}, ["alloy-co.energy", "cathode-co.energy"]),
        ({"q": "RECIPES"}, ["cathode-co.recipes"]),
        ({"q": "per line"}, ["cathode-co.energy"]),  # in the description, any case
        ({"industry": LB, "classification": "important"}, ["cathode-co.energy"]),
        ({"industry": "textiles"}, []),
        ({"owner": "cathode-co", "field": "energy_kwh", "q": "furnace"}, []),
    ],
    ids=["owner", "industry", "field", "classification", "q-id", "q-case", "q-description",
         "industry-and-classification", "no-industry", "nothing-matches"],
)  # fmt: skip
def test_filters_search_the_catalog(
    world: World, params: dict[str, str], expected: list[str]
) -> None:
    assert [i for i in world.ids("sb-lb", **params) if i != "cathode-co.scrap"] == expected


def test_the_catalog_pages_through_to_the_end_by_id(world: World) -> None:
    with world.client("cathode-co") as client:
        for i in range(7):
            client.post("/v1/datasets", {"dataset_id": f"cathode-co.line-{i}", "fields": ["kwh"]})
    everything = world.ids("sb-lb")
    assert everything == sorted(everything)
    with world.client("sb-lb") as client:
        pages, cursor = [], None
        while True:
            page = client.get("/v1/datasets", limit=3, cursor=cursor)
            pages.append([d["dataset_id"] for d in page["items"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [i for p in pages for i in p] == everything
        assert len(pages) == -(-len(everything) // 3)
        assert refused(client.get, "/v1/datasets", cursor="a").status == 400
        assert refused(client.get, "/v1/datasets", limit=0).status == 400
        assert refused(client.get, "/v1/datasets", classification="secret").status == 400


# --- the CLI in both modes -----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


@dataclass
class Served:
    data_dir: Path
    url: ExchangeUrl
    files: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("dataset-cli")
    data = initialised(root / "data")
    files = root / "files"
    files.mkdir()
    runtime = Runtime(Settings(data_dir=data))
    bootstrap(runtime)
    for name, (role, industry) in IDENTITIES.items():
        token = files / f"{name}.token"
        token.write_text(register(runtime, name, role, industry).token + "\n")
        token.chmod(0o600)
    ensure_deployment_ca(runtime.edge_pki, actor="sysadmin", now=utcnow())
    runtime.admin_certificates.issue("aud", actor="sysadmin", now=utcnow()).write(files)
    runtime.close()
    with running_exchange(data) as url:
        yield Served(data, url, files)


def ibx(
    served: Served, capsys: pytest.CaptureFixture[str], who: str, *command: str, remote: bool
) -> Outcome:
    where = [] if remote else ["--data-dir", str(served.data_dir)]
    argv = [*where, "--token-file", str(served.files / f"{who}.token"), *command]
    if who == "aud":  # an administrator's second factor (ignored on the data dir)
        argv += ["--client-cert", str(served.files / "aud.crt"),
                 "--client-key", str(served.files / "aud.key")]  # fmt: skip
    if remote:
        argv += served.url.cli_args()
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["ibx", *argv])
        for name in [n for n in os.environ if n.startswith("IBX_")]:
            mp.delenv(name)
        with pytest.raises(SystemExit) as exited:
            main()
    captured = capsys.readouterr()
    code = exited.value.code
    return Outcome(code if isinstance(code, int) else 0, captured.out, captured.err)


def both(served: Served, capsys: pytest.CaptureFixture[str], who: str, *command: str) -> Outcome:
    local = ibx(served, capsys, who, *command, remote=False)
    remote = ibx(served, capsys, who, *command, remote=True)
    assert local == remote, command
    return local


def test_the_dataset_commands_print_and_exit_the_same_locally_and_remotely(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    register = ("dataset", "register", "--field", "energy_kwh", "--field", "output_units",
                "--classification", "important", "--description", "energy per line")  # fmt: skip
    local = ibx(served, capsys, "cathode-co", *register, "--id", "cathode-co.a", remote=False)
    remote = ibx(served, capsys, "cathode-co", *register, "--id", "cathode-co.b", remote=True)
    assert local == Outcome(0, "registered cathode-co.a (energy_kwh, output_units)\n", "")
    assert remote == Outcome(0, "registered cathode-co.b (energy_kwh, output_units)\n", "")
    made = json.loads(ibx(served, capsys, "alloy-co", "dataset", "register", "--id", "alloy-co.c",
                          "--field", "kwh", "--json", remote=True).out)  # fmt: skip
    assert set(made) == {"dataset_id", "owner", "fields", "classification", "description",
                         "created_at"}  # fmt: skip
    assert (made["owner"], made["classification"]) == ("alloy-co", "general")

    listing = both(served, capsys, "sb-lb", "dataset", "list")
    assert listing.out == (
        "alloy-co.c\talloy-co\tgeneral\tkwh\n"
        "cathode-co.a\tcathode-co\timportant\tenergy_kwh,output_units\n"
        "cathode-co.b\tcathode-co\timportant\tenergy_kwh,output_units\n"
    )
    assert both(served, capsys, "sb-lb", "dataset", "list", "--industry", NM).out == (
        "alloy-co.c\talloy-co\tgeneral\tkwh\n"
    )
    as_json = both(served, capsys, "aud", "dataset", "list", "--json", "--owner", "alloy-co")
    assert json.loads(as_json.out) == [made]
    found = both(
        served, capsys, "sb-lb", "dataset", "search", "PER LINE", "--field", "output_units"
    )
    assert [line.split("\t")[0] for line in found.out.splitlines()] == [
        "cathode-co.a", "cathode-co.b",
    ]  # fmt: skip
    shown = both(served, capsys, "sb-lb", "dataset", "show", "cathode-co.a")
    assert shown.out.splitlines()[:5] == [
        "dataset\tcathode-co.a",
        "owner\tcathode-co",
        "classification\timportant",
        "fields\tenergy_kwh,output_units",
        "description\tenergy per line",
    ]
    assert json.loads(both(served, capsys, "sb-lb", "dataset", "show", "alloy-co.c",
                           "--json").out) == made  # fmt: skip

    denied = both(served, capsys, "sb-lb", *register, "--id", "sb-lb.x")
    assert (denied.code, denied.out) == (3, "")
    assert denied.err.startswith(
        "ibx: forbidden: sb-lb (subbrain) may not catalog_register dataset:*: casbin: no line"
    )
    missing = both(served, capsys, "sb-lb", "dataset", "show", "nobody.data")
    assert missing == Outcome(
        1, "", "ibx: unknown dataset: no dataset 'nobody.data' is registered\n"
    )
    taken = both(served, capsys, "cathode-co", *register, "--id", "cathode-co.a")
    assert taken == Outcome(
        1, "", "ibx: dataset already registered: dataset 'cathode-co.a' is already registered\n"
    )
