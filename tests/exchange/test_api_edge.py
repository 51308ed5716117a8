"""The enterprise's edge duties over the API: bootstrap tokens and its sealed readings.

A real ``ibx serve`` (HTTPS API and the mutual-TLS edge listener) on free
ports; devices enrol and upload through :mod:`edge_tls` against the edge
listener. The routes are called through :class:`exchange.client.ExchangeClient`
in both modes (the app in-process on the data dir, and HTTPS to the server),
and the ``ibx edge`` commands run on the data dir and with ``--exchange``:
same output, same exit codes. Who may create tokens and pull is the pack's
decision (403 naming the rule for a sub-brain and for a system administrator
holding its second factor); an enterprise's readings never reach another.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from consent import EnterpriseKey
from core.clock import utcnow
from edge_tls import DeviceCredentials, enroll, upload_readings
from exchange.cli import main
from exchange.client import ExchangeClient
from exchange.deployment_ca import ensure_deployment_ca
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.identities import bootstrap, register
from tests.server import ExchangeUrl, free_port, running_exchange

LB = "lithium-battery"
FORBIDDEN = "exchange.error_table.ForbiddenError"
IDENTITIES = {
    "kiln-co": (Role.ENTERPRISE, LB),
    "anode-co": (Role.ENTERPRISE, "new-materials"),
    "sb-lb": (Role.SUBBRAIN, LB),
    "ops": (Role.SYSADMIN, None),
}
ADMINS = frozenset({"ops"})
KILN_BATCHES = 3  # uploaded by kiln-co's device kiln-1
ANODE_BATCHES = 1  # uploaded by anode-co's device anode-1
MODES = pytest.mark.parametrize("remote", [False, True], ids=["local", "remote"])


@dataclass
class Served:
    """A data dir served by a real ``ibx serve --edge-port``, with its users' files."""

    data_dir: Path
    url: ExchangeUrl
    edge: str
    files: Path
    tokens: dict[str, str]

    def client(self, who: str | None, *, remote: bool, runtime: Runtime) -> ExchangeClient:
        token = self.tokens[who] if who else None
        if not remote:
            return ExchangeClient.local(runtime, token=token)
        cert = self.files / f"{who}.crt" if who in ADMINS else None
        key = self.files / f"{who}.key" if who in ADMINS else None
        return ExchangeClient.remote(
            self.url.url,
            token=token,
            ca_bundle=self.url.ca_bundle,
            client_cert=cert,
            client_key=key,
        )

    def key_file(self, who: str) -> Path:
        return self.files / f"{who}.consent-key"


def _enrolled_device(served: Served, owner: str, device: str, runtime: Runtime) -> Path:
    """Create a bootstrap token over the API, enrol the device over EST; its directory."""
    with served.client(owner, remote=True, runtime=runtime) as client:
        issued = client.post("/v1/edge/tokens", {"device": device})
    assert issued["enterprise"] == owner
    directory = served.files / "devices" / device
    assert served.url.ca_bundle is not None
    enroll(
        DeviceCredentials(directory),
        server=served.edge,
        ca_pem=served.url.ca_bundle.read_bytes(),
        device=device,
        token=issued["token"],
    )
    return directory


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("edge-api")
    data = initialised(root / "data")
    files = root / "files"
    files.mkdir()
    tokens: dict[str, str] = {}
    runtime = Runtime(Settings(data_dir=data))
    try:
        bootstrap(runtime)
        for name, (role, industry) in IDENTITIES.items():
            tokens[name] = register(runtime, name, role, industry).token
            token_file = files / f"{name}.token"
            token_file.write_text(tokens[name] + "\n")
            token_file.chmod(0o600)
            if role is Role.ENTERPRISE:
                key = EnterpriseKey.generate(files / f"{name}.consent-key")
                runtime.identities.set_public_key(name, key.signer.public_key, actor=name)
        ensure_deployment_ca(runtime.edge_pki, actor="sysadmin", now=utcnow())
        for name in ADMINS:
            runtime.admin_certificates.issue(name, actor="sysadmin", now=utcnow()).write(files)
    finally:
        runtime.close()
    edge_port = free_port()
    with running_exchange(data, "--edge-port", str(edge_port)) as url:
        world = Served(data, url, f"https://127.0.0.1:{edge_port}", files, tokens)
        local = Runtime(Settings(data_dir=data))
        try:
            kiln = _enrolled_device(world, "kiln-co", "kiln-1", local)
            anode = _enrolled_device(world, "anode-co", "anode-1", local)
        finally:
            local.close()
        for n in range(KILN_BATCHES):
            readings = f"line,energy_kwh\nkiln,{100 + n}.5\n".encode()
            upload_readings(DeviceCredentials(kiln), readings, now=utcnow())
        upload_readings(DeviceCredentials(anode), b"line,energy_kwh\nanode,7.25\n", now=utcnow())
        yield world


@pytest.fixture
def runtime(served: Served) -> Iterator[Runtime]:
    """The served data dir, opened in this process (what the CLI's local mode does)."""
    opened = Runtime(Settings(data_dir=served.data_dir))
    yield opened
    opened.close()


def refused(call: object, *args: object, **kwargs: object) -> RemoteRefusalError:
    with pytest.raises(RemoteRefusalError) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    return info.value


# --- the routes ------------------------------------------------------------------------------


@MODES
def test_an_enterprise_creates_tokens_for_its_own_devices_only(
    served: Served, runtime: Runtime, remote: bool
) -> None:
    with served.client("kiln-co", remote=remote, runtime=runtime) as client:
        issued = client.post("/v1/edge/tokens", {"device": "press-9", "ttl_seconds": 600})
        assert (issued["enterprise"], issued["device"]) == ("kiln-co", "press-9")
        assert issued["token"].startswith("ibxb_")
        named = client.post("/v1/edge/tokens", {"device": "press-9", "enterprise": "kiln-co"})
        assert named["enterprise"] == "kiln-co"
        other = refused(
            client.post, "/v1/edge/tokens", {"device": "press-9", "enterprise": "anode-co"}
        )
    assert (other.status, other.code) == (403, FORBIDDEN)
    assert "kiln-co creates bootstrap tokens for its own devices only, not anode-co's" in str(other)


@MODES
@pytest.mark.parametrize(
    ("who", "rule"),
    [
        ("sb-lb", f"casbin: no line lets subbrain sb-lb edge_token_create edge in domain {LB}"),
        ("ops", "casbin: no line lets sysadmin ops edge_token_create edge in domain platform"),
    ],
    ids=["subbrain", "sysadmin"],
)
def test_token_create_is_refused_to_other_roles_naming_the_rule(
    served: Served, runtime: Runtime, remote: bool, who: str, rule: str
) -> None:
    before = runtime.ledger.size()
    with served.client(who, remote=remote, runtime=runtime) as client:
        assert client.get("/v1/me")["name"] == who  # authenticated (the sysadmin: two factors)
        denied = refused(client.post, "/v1/edge/tokens", {"device": "press-1"})
    assert (denied.status, denied.code) == (403, FORBIDDEN)
    assert f"{who} ({IDENTITIES[who][0]}) may not edge_token_create edge:*: " in str(denied)
    assert rule in str(denied)
    decisions = [json.loads(entry.leaf_input) for entry in runtime.ledger.entries(before, 1000)]
    denials = [
        d["payload"]
        for d in decisions
        if d["type"] == "authz.decision" and d["payload"]["action"] == "edge_token_create"
    ]
    assert denials and denials[-1]["effect"] == "deny"


def _batches(client: ExchangeClient, **params: object) -> list[dict[str, object]]:
    return list(client.pages("/v1/edge/readings", **params))


@MODES
def test_readings_of_one_enterprise_never_reach_another(
    served: Served, runtime: Runtime, remote: bool
) -> None:
    with served.client("kiln-co", remote=remote, runtime=runtime) as client:
        kiln = _batches(client)
    with served.client("anode-co", remote=remote, runtime=runtime) as client:
        anode = _batches(client)
    assert [b["device"] for b in kiln] == ["kiln-1"] * KILN_BATCHES
    assert [b["device"] for b in anode] == ["anode-1"] * ANODE_BATCHES
    assert not {b["id"] for b in kiln} & {b["id"] for b in anode}
    stored = {b.id: b for b in runtime.edge_readings.batches("kiln-co")}
    for item in kiln:  # ciphertext as stored, never opened by the exchange
        batch = stored[int(str(item["id"]))]
        assert base64.b64decode(str(item["ciphertext"])) == batch.ciphertext
        assert item["sha256"] == batch.sha256
        assert b"kiln," not in batch.ciphertext
    with served.client("sb-lb", remote=remote, runtime=runtime) as client:
        denied = refused(_batches, client)
    assert (denied.status, denied.code) == (403, FORBIDDEN)
    assert "sb-lb (subbrain) may not reading_pull reading:*: casbin: no line lets" in str(denied)


@MODES
def test_readings_are_cursor_pages(served: Served, runtime: Runtime, remote: bool) -> None:
    with served.client("kiln-co", remote=remote, runtime=runtime) as client:
        everything = _batches(client)
        ids = [int(str(b["id"])) for b in everything]
        assert ids == sorted(ids) and len(ids) == KILN_BATCHES
        first = client.get("/v1/edge/readings", limit=1)
        assert [b["id"] for b in first["items"]] == ids[:1] and first["next_cursor"]
        second = client.get("/v1/edge/readings", limit=1, cursor=first["next_cursor"])
        assert [b["id"] for b in second["items"]] == ids[1:2]
        assert _batches(client, limit=1) == everything  # followed to the end
        after = client.get("/v1/edge/readings", after=ids[0])
        assert [b["id"] for b in after["items"]] == ids[1:] and after["next_cursor"] is None
        last = client.get("/v1/edge/readings", after=ids[-1])
        assert last == {"items": [], "next_cursor": None}
        for cursor in ("!!!", base64.urlsafe_b64encode(b"not a batch id").decode(), "9" * 40):
            bad = refused(client.get, "/v1/edge/readings", cursor=cursor)
            assert bad.status == 400, cursor


@MODES
def test_no_token_is_401(served: Served, runtime: Runtime, remote: bool) -> None:
    with served.client(None, remote=remote, runtime=runtime) as client:
        for call in (
            lambda: client.post("/v1/edge/tokens", {"device": "press-1"}),
            lambda: client.get("/v1/edge/readings"),
        ):
            assert refused(call).status == 401


# --- the CLI in both modes -------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def ibx(
    served: Served,
    capsys: pytest.CaptureFixture[str],
    who: str | None,
    *command: str,
    remote: bool,
) -> Outcome:
    """``ibx [--data-dir D] [--token-file F] COMMAND... [--exchange URL --ca-bundle CA]``."""
    where = [] if remote else ["--data-dir", str(served.data_dir)]
    token = ["--token-file", str(served.files / f"{who}.token")] if who else []
    cert = (
        ["--client-cert", str(served.files / f"{who}.crt"),
         "--client-key", str(served.files / f"{who}.key")]
        if remote and who in ADMINS
        else []
    )  # fmt: skip
    connection = served.url.cli_args() if remote else []
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["ibx", *where, *token, *command, *connection, *cert])
        for name in [n for n in os.environ if n.startswith("IBX_")]:
            mp.delenv(name)
        with pytest.raises(SystemExit) as exited:
            main()
    captured = capsys.readouterr()
    code = exited.value.code
    return Outcome(code if isinstance(code, int) else 0, captured.out, captured.err)


def both(
    served: Served, capsys: pytest.CaptureFixture[str], who: str | None, *command: str
) -> Outcome:
    """Run ``command`` on the data dir and against the server: the same output and exit."""
    local = ibx(served, capsys, who, *command, remote=False)
    remote = ibx(served, capsys, who, *command, remote=True)
    assert local == remote, command
    return local


CREATED = re.compile(
    r"^bootstrap token for kiln-co/press-7, one use, expires \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n"
    r"ibxb_[A-Za-z0-9_-]{43}\n$"
)


def test_token_create_prints_the_same_in_both_modes(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ("edge", "token", "create", "--enterprise", "kiln-co", "--device", "press-7")
    for remote in (False, True):
        done = ibx(served, capsys, "kiln-co", *command, "--ttl", "30m", remote=remote)
        assert (done.code, done.err) == (0, ""), done
        assert CREATED.match(done.out), done.out
        shown = ibx(served, capsys, "kiln-co", *command, "--json", remote=remote)
        assert shown.code == 0
        assert sorted(json.loads(shown.out)) == ["device", "enterprise", "expires_at", "token"]


@pytest.mark.parametrize(
    ("who", "command", "code", "err"),
    [
        ("sb-lb", ("edge", "token", "create", "--device", "press-1"), 3,
         "ibx: forbidden: sb-lb (subbrain) may not edge_token_create edge:*: casbin: no line "
         f"lets subbrain sb-lb edge_token_create edge in domain {LB}"),
        ("ops", ("edge", "token", "create", "--device", "press-1"), 3,
         "ibx: forbidden: ops (sysadmin) may not edge_token_create edge:*: casbin: no line "
         "lets sysadmin ops edge_token_create edge in domain platform"),
        ("anode-co", ("edge", "token", "create", "--enterprise", "kiln-co", "--device", "p-1"), 3,
         "ibx: forbidden: anode-co creates bootstrap tokens for its own devices only, "
         "not kiln-co's"),
        (None, ("edge", "token", "create", "--device", "press-1"), 4,
         "ibx: authentication required: a bearer token is required: IBX_TOKEN, --token-file"),
        ("kiln-co", ("edge", "token", "create", "--device", "bad/name"), 2,
         "ibx: edge enrolment error: "),
    ],
    ids=["subbrain", "sysadmin", "other-enterprise", "no-token", "bad-device"],
)  # fmt: skip
def test_token_create_refusals_are_the_same_in_both_modes(
    served: Served,
    capsys: pytest.CaptureFixture[str],
    who: str | None,
    command: tuple[str, ...],
    code: int,
    err: str,
) -> None:
    done = both(served, capsys, who, *command)
    assert (done.code, done.out) == (code, "")
    assert done.err.startswith(err), done.err
    assert done.err.count("\n") == 1


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_readings_pull_opens_the_same_rows_in_both_modes(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key = str(served.key_file("kiln-co"))
    outs = {}
    for remote in (False, True):
        out = tmp_path / ("remote" if remote else "local") / "kiln.csv"
        out.parent.mkdir()
        done = ibx(
            served, capsys, "kiln-co", "edge", "readings", "pull", "--key", key,
            "--out", str(out), "--enterprise", "kiln-co", remote=remote,
        )  # fmt: skip
        assert (done.code, done.err) == (0, ""), done
        assert done.out == f"opened {KILN_BATCHES} batches, appended {KILN_BATCHES} rows to {out}\n"
        again = ibx(
            served, capsys, "kiln-co", "edge", "readings", "pull", "--key", key,
            "--out", str(out), "--json", *(["--enterprise", "kiln-co"] if remote else []),
            remote=remote,
        )  # fmt: skip
        assert json.loads(again.out) == {"opened": 0, "rows": 0, "out": str(out), "skipped": []}
        outs[remote] = out
    local, remote_out = _rows(outs[False]), _rows(outs[True])
    assert local == remote_out
    assert local[0] == ["batch", "device", "line", "energy_kwh"]
    assert [row[1:] for row in local[1:]] == [
        ["kiln-1", "kiln", f"{100 + n}.5"] for n in range(KILN_BATCHES)
    ]


def test_another_enterprise_pulls_only_its_own(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for remote in (False, True):
        out = tmp_path / f"anode-{remote}.csv"
        done = ibx(
            served, capsys, "anode-co", "edge", "readings", "pull",
            "--key", str(served.key_file("anode-co")), "--out", str(out),
            "--enterprise", "anode-co", remote=remote,
        )  # fmt: skip
        assert done.code == 0, done
        assert [row[1:] for row in _rows(out)[1:]] == [["anode-1", "anode", "7.25"]]


@pytest.mark.parametrize(
    ("who", "extra", "code", "err"),
    [
        ("sb-lb", ("--enterprise", "sb-lb"), 3,
         "ibx: forbidden: sb-lb (subbrain) may not reading_pull reading:*: casbin: "),
        ("anode-co", ("--enterprise", "kiln-co"), 2,
         "Invalid value: --enterprise kiln-co: the token is anode-co's"),
        (None, ("--enterprise", "kiln-co"), 4,
         "ibx: authentication required: a bearer token is required"),
    ],
    ids=["subbrain", "another-enterprise", "no-token"],
)  # fmt: skip
def test_readings_pull_refusals_are_the_same_in_both_modes(
    served: Served,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    who: str | None,
    extra: tuple[str, ...],
    code: int,
    err: str,
) -> None:
    out = tmp_path / "never.csv"
    done = both(
        served, capsys, who, "edge", "readings", "pull",
        "--key", str(served.key_file("kiln-co")), "--out", str(out), *extra,
    )  # fmt: skip
    assert (done.code, done.out) == (code, "")
    assert err in done.err, done.err
    assert not out.exists()


def test_a_remote_pull_needs_the_enterprise_and_the_pinned_ca_from_the_user(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pull = (
        "edge", "readings", "pull", "--key", str(served.key_file("kiln-co")),
        "--out", str(tmp_path / "x.csv"),
    )  # fmt: skip
    done = ibx(served, capsys, "kiln-co", *pull, remote=True)
    assert done.code == 2 and "--enterprise is required with --exchange" in done.err
    bare = ibx(
        served, capsys, "kiln-co", *pull, "--exchange", served.url.url, "--enterprise", "kiln-co",
        remote=False,
    )  # fmt: skip
    assert bare.code == 2  # no CA bundle: neither the TLS server nor the batches can be trusted
    assert "--ca-bundle is required with --exchange" in bare.err


def test_a_profile_pins_the_ca_a_remote_pull_trusts(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """After ``ibx login`` (the deployment's CA bundle pinned), pull needs no --ca-bundle."""
    assert served.url.ca_bundle is not None
    out = tmp_path / "profiled.csv"
    runs = [
        ["login", "--exchange", served.url.url, "--ca-bundle", str(served.url.ca_bundle),
         "--token-file", str(served.files / "kiln-co.token"), "--profile", "kiln"],
        ["--profile", "kiln", "edge", "readings", "pull", "--key",
         str(served.key_file("kiln-co")), "--out", str(out), "--enterprise", "kiln-co"],
    ]  # fmt: skip
    outcomes = []
    for argv in runs:
        capsys.readouterr()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sys, "argv", ["ibx", *argv])
            for name in [n for n in os.environ if n.startswith("IBX_")]:
                mp.delenv(name)
            mp.setenv("IBX_CONFIG_DIR", str(tmp_path / "config"))
            with pytest.raises(SystemExit) as exited:
                main()
        outcomes.append((exited.value.code, capsys.readouterr()))
    (login_code, _), (code, pulled) = outcomes
    assert login_code in (0, None)
    assert (code, pulled.err) == (0, ""), pulled
    assert pulled.out == f"opened {KILN_BATCHES} batches, appended {KILN_BATCHES} rows to {out}\n"
