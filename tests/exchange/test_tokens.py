"""Bearer tokens expire and can be rotated; expired, rotated and revoked tokens get 401.

Against a real ``ibx serve`` over TLS and, for the user commands, in both
modes (in-process on the data dir and ``--exchange URL``) with the same output.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from core.clock import parse_rfc3339, utcnow
from exchange.error_table import ExitCode
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.in_process import Done, ibx
from tests.server import ExchangeUrl, running_exchange
from tests.zygote import ibx_argv


def _ibx(*args: str, env: dict[str, str] | None = None) -> Done:
    """``ibx`` through its entry point in this process, ``env`` its only ``IBX_*`` variables."""
    return ibx(*args, env=env)


@dataclass
class Served:
    data: Path
    runtime: Runtime
    base: ExchangeUrl

    def enterprise(self, name: str, **kwargs: object) -> str:
        issued = self.runtime.identities.create(
            name,
            Role.ENTERPRISE,
            industry="lithium-battery",
            **kwargs,  # type: ignore[arg-type]
        )
        return issued.token

    def me(self, token: str) -> httpx.Response:
        with self.base.client(token) as client:
            return client.get("/v1/me")

    def entries(self, kind: str) -> list[dict[str, object]]:
        size = self.runtime.ledger.size()
        return [
            {"actor": e.actor, **e.payload}
            for start in range(0, size, 1000)
            for e in self.runtime.ledger.entries(start, 1000)
            if e.type == kind
        ]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = initialised(tmp_path_factory.mktemp("tokens") / "data")
    runtime = Runtime(Settings(data_dir=data))
    with running_exchange(data) as base:
        yield Served(data, runtime, base)
    runtime.close()


def test_rotation_over_https_returns_a_new_token_once_and_the_old_one_stops_at_once(
    served: Served,
) -> None:
    old = served.enterprise("rotator")
    with served.base.client(old) as client:
        answer = client.post("/v1/me/token")
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    new = body["token"]
    assert new.startswith("ibx_") and new != old and body["name"] == "rotator"
    expires = parse_rfc3339(body["token_expires_at"])
    assert timedelta(days=89) < expires - utcnow() <= timedelta(days=90)
    refused = served.me(old)
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert served.me(new).json()["name"] == "rotator"
    rotations = [e for e in served.entries("identity.token_rotate") if e["name"] == "rotator"]
    assert len(rotations) == 1 and rotations[0]["actor"] == "rotator"
    ledger_text = json.dumps(served.entries("identity.token_rotate"))
    assert old not in ledger_text and new not in ledger_text


def test_an_expired_token_gets_401_remotely_and_exit_4_locally(served: Served) -> None:
    stale = served.enterprise("stale", now=utcnow() - timedelta(days=91))
    answer = served.me(stale)
    assert answer.status_code == 401
    assert "expired" in answer.json()["detail"]
    for where in (served.base.cli_args(), []):
        done = _ibx("--data-dir", str(served.data), "me", *where, env={"IBX_TOKEN": stale})
        assert done.returncode == ExitCode.UNAUTHENTICATED, done.stderr
        assert len(done.stderr.splitlines()) == 1 and stale not in done.stderr


def test_a_token_about_to_expire_still_works_and_says_so(served: Served) -> None:
    token = served.enterprise("nearly", now=utcnow() - timedelta(days=89, hours=12))
    done = _ibx("me", *served.base.cli_args(), env={"IBX_TOKEN": token})
    assert done.returncode == 0, done.stderr
    assert "(today)" in done.stdout or "(in 1 day)" in done.stdout


def test_a_revoked_identitys_token_gets_401(served: Served) -> None:
    token = served.enterprise("leaver")
    assert served.me(token).status_code == 200
    served.runtime.identities.revoke("leaver")
    assert served.me(token).status_code == 401
    with served.base.client(token) as client:
        assert client.post("/v1/me/token").status_code == 401  # nor can it rotate itself back


def test_ibx_me_prints_the_same_locally_and_remotely(served: Served) -> None:
    token = served.enterprise("both-ways")
    env = {"IBX_TOKEN": token}
    local = _ibx("--data-dir", str(served.data), "me", env=env)
    remote = _ibx("me", *served.base.cli_args(), env=env)
    assert local.returncode == remote.returncode == 0, local.stderr + remote.stderr
    assert local.stdout == remote.stdout
    assert "name           both-ways" in local.stdout
    assert "role           enterprise" in local.stdout
    assert "industry       lithium-battery" in local.stdout
    assert "token expires  " in local.stdout and "(in 90 days)" in local.stdout
    as_json = json.loads(_ibx("me", *served.base.cli_args(), "--json", env=env).stdout)
    assert as_json["name"] == "both-ways" and as_json["role"] == "enterprise"


def test_ibx_me_without_a_token_says_how_to_give_one_in_both_modes(served: Served) -> None:
    """No request is sent without a token: the same one line and exit 4, local or remote."""
    env = {k: v for k, v in os.environ.items() if k not in ("IBX_TOKEN", "IBX_PROFILE")}
    local = subprocess.run(
        [*ibx_argv(), "--data-dir", str(served.data), "me"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )
    remote = subprocess.run(
        [*ibx_argv(), "me", *served.base.cli_args()],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )
    assert local.returncode == remote.returncode == 4
    assert local.stderr == remote.stderr
    assert local.stderr.startswith("ibx: authentication required: a bearer token is required")


@pytest.mark.parametrize("remote", [True, False], ids=["remote", "local"])
def test_ibx_me_rotate_token_prints_the_new_token_last(served: Served, remote: bool) -> None:
    old = served.enterprise(f"cli-rotator-{remote}")
    where = served.base.cli_args() if remote else []
    done = _ibx("--data-dir", str(served.data), "me", "rotate-token", *where,
                env={"IBX_TOKEN": old})  # fmt: skip
    assert done.returncode == 0, done.stderr
    new = done.stdout.strip().splitlines()[-1]
    assert new.startswith("ibx_") and new != old
    assert "the old one no longer works" in done.stdout
    assert served.me(old).status_code == 401
    assert served.me(new).status_code == 200


def test_the_sysadmin_rotates_a_lost_token_on_the_server(served: Served) -> None:
    lost = served.enterprise("forgetful")
    done = _ibx("--data-dir", str(served.data), "identity", "rotate-token", "forgetful")
    assert done.returncode == 0, done.stderr
    new = done.stdout.strip().splitlines()[-1]
    assert served.me(lost).status_code == 401
    assert served.me(new).status_code == 200
    rotation = [e for e in served.entries("identity.token_rotate") if e["name"] == "forgetful"]
    assert rotation[-1]["actor"] == "sysadmin"
    missing = _ibx("--data-dir", str(served.data), "identity", "rotate-token", "nobody")
    assert missing.returncode == ExitCode.ERROR and "no active identity" in missing.stderr


def test_rotating_through_a_profile_updates_the_profile(served: Served, tmp_path: Path) -> None:
    old = served.enterprise("profiled")
    token_file = tmp_path / "token"
    token_file.write_text(old)
    token_file.chmod(0o600)
    assert served.base.ca_bundle is not None
    env = {"IBX_CONFIG_DIR": str(tmp_path / "config")}
    login = _ibx("login", "--exchange", served.base.url, "--ca-bundle",
                 str(served.base.ca_bundle), "--token-file", str(token_file), env=env)  # fmt: skip
    assert login.returncode == 0, login.stderr
    rotated = _ibx("--profile", "default", "me", "rotate-token", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert "profile 'default' updated" in rotated.stdout
    profile = tmp_path / "config" / "profiles" / "default.json"
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
    assert json.loads(profile.read_text())["token"] == rotated.stdout.strip().splitlines()[-1]
    again = _ibx("--profile", "default", "me", env=env)
    assert again.returncode == 0, again.stderr
    assert "profiled" in again.stdout
