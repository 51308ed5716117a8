"""Security review: who may replace an enterprise's consent key."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from exchange.cli import app
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.identities import bootstrap, register

runner = CliRunner()


def _ibx(data: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--data-dir", str(data), *args])
    return result.exit_code, f"{result.output} {result.exception!r}"


def test_a_bearer_token_alone_cannot_rotate_the_consent_key(tmp_path: Path) -> None:
    """Whoever holds only the enterprise's token (not its key file) must not be able to
    register a key of their own and then sign consents as the enterprise."""
    data = tmp_path / "data"
    runtime = Runtime.initialise(Settings(data_dir=data))
    token = runtime.identities.create("ent-a", Role.ENTERPRISE, industry="lithium-battery").token
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
    and another enterprise are refused (the pack decides: 403 naming the rule, or the
    own scope of another enterprise); the owner and an auditor are not. Consent
    receipts in full are the auditor's too: the security officer reads none."""
    data = tmp_path / "data"
    runtime = Runtime.initialise(Settings(data_dir=data))
    bootstrap(runtime)
    tokens = {
        name: register(runtime, name, role, industry).token
        for name, role, industry in [
            ("ent-a", Role.ENTERPRISE, "lithium-battery"),
            ("ent-b", Role.ENTERPRISE, "lithium-battery"),
            ("officer", Role.SECURITY_OFFICER, None),
            ("ops", Role.SYSADMIN, None),
            ("audit", Role.AUDITOR, None),
        ]
    }
    runtime.close()
    for name, why in [
        ("officer", "separation of duties: security_officer may not usage_read_all"),
        ("ops", "separation of duties: sysadmin may not usage_read_all"),
        ("ent-b", "ent-b may see only its own consents, not those of ent-a"),
    ]:
        result = runner.invoke(
            app,
            ["--data-dir", str(data), "consent", "usage", "--enterprise", "ent-a",
             "--token", tokens[name]],
        )  # fmt: skip
        assert isinstance(result.exception, RemoteRefusalError), (name, result.output)
        assert result.exception.status == 403, name
        assert why in str(result.exception), (name, str(result.exception))
    for name in ("ent-a", "audit"):
        code, output = _ibx(
            data, "consent", "usage", "--enterprise", "ent-a", "--token", tokens[name]
        )
        assert code == 0, (name, output)
    result = runner.invoke(
        app, ["--data-dir", str(data), "consent", "list", "--token", tokens["officer"]]
    )
    assert isinstance(result.exception, RemoteRefusalError), result.output
    assert result.exception.status == 403
    assert "security_officer" in str(result.exception)
