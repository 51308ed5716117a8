"""Security review: who may replace an enterprise's consent key."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from exchange.cli import app
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings

runner = CliRunner()


def _ibx(data: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--data-dir", str(data), *args])
    return result.exit_code, f"{result.output} {result.exception!r}"


def test_a_bearer_token_alone_cannot_rotate_the_consent_key(tmp_path: Path) -> None:
    """Whoever holds only the enterprise's token (not its key file) must not be able to
    register a key of their own and then sign consents as the enterprise."""
    data = tmp_path / "data"
    runtime = Runtime.initialise(Settings(data_dir=data))
    token = runtime.identities.create("ent-a", Role.ENTERPRISE).token
    runtime.close()
    own, new, other = tmp_path / "own.key", tmp_path / "new.key", tmp_path / "other.key"
    for path in (own, new, other):
        assert _ibx(data, "consent", "keygen", "--out", str(path))[0] == 0
    assert _ibx(data, "consent", "register-key", "--key", str(own), "--token", token)[0] == 0

    code, output = _ibx(
        data, "consent", "register-key", "--key", str(new), "--rotate", "--token", token
    )
    assert code == 1
    assert "--old-key" in output
    code, output = _ibx(
        data, "consent", "register-key", "--key", str(new), "--rotate",
        "--old-key", str(other), "--token", token,
    )  # fmt: skip
    assert code == 1
    assert "registered key" in output

    runtime = Runtime(Settings(data_dir=data))
    try:
        registered = runtime.identities.get("ent-a").public_key
    finally:
        runtime.close()
    code, output = _ibx(
        data, "consent", "register-key", "--key", str(new), "--rotate",
        "--old-key", str(own), "--token", token,
    )  # fmt: skip
    assert code == 0, output
    assert registered is not None
    runtime = Runtime(Settings(data_dir=data))
    try:
        assert runtime.identities.get("ent-a").public_key != registered
    finally:
        runtime.close()


def test_only_the_owner_and_auditors_read_who_used_the_data(tmp_path: Path) -> None:
    """Separation of duties: usage is audit detail. The security officer, the sysadmin
    and another enterprise are refused; the owner and an auditor are not."""
    data = tmp_path / "data"
    runtime = Runtime.initialise(Settings(data_dir=data))
    tokens = {
        name: runtime.identities.create(name, role).token
        for name, role in [
            ("ent-a", Role.ENTERPRISE),
            ("ent-b", Role.ENTERPRISE),
            ("officer", Role.SECURITY_OFFICER),
            ("ops", Role.SYSADMIN),
            ("audit", Role.AUDITOR),
        ]
    }
    runtime.close()
    for name in ("officer", "ops", "ent-b"):
        code, output = _ibx(
            data, "consent", "usage", "--enterprise", "ent-a", "--token", tokens[name]
        )
        assert code == 1, (name, output)
        assert "may not see" in output
    for name in ("ent-a", "audit"):
        code, output = _ibx(
            data, "consent", "usage", "--enterprise", "ent-a", "--token", tokens[name]
        )
        assert code == 0, (name, output)
    code, output = _ibx(data, "consent", "list", "--token", tokens["officer"])
    assert code == 0, output
