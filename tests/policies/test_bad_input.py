"""Bad policy input is refused at propose time, located; bad requests are denied with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policies import (
    CasbinLineError,
    PolicyInputError,
    PolicySource,
    RegoSourceError,
    check_in_sandbox,
)


def _append(path: Path, text: str) -> int:
    """Append ``text`` and return the 1-based line number where it starts."""
    before = path.read_text()
    path.write_text(before + text)
    return before.count("\n") + 1


def test_the_pack_passes_the_sandbox_check(pack_source: PolicySource) -> None:
    check_in_sandbox(pack_source)


def test_rego_syntax_error_has_file_line_and_column(pack_copy: Path) -> None:
    line = _append(pack_copy / "authz.rego", "broken if {\n\tinput.a ==\n}\n")
    source = PolicySource.from_dir(pack_copy)  # static checks pass: it is a syntax error
    with pytest.raises(RegoSourceError) as caught:
        check_in_sandbox(source)
    error = caught.value
    assert error.file == "authz.rego"
    assert error.line == line + 1
    assert error.column == 10
    assert str(error).startswith(f"authz.rego:{line + 1}:10: ")


def test_unknown_function_is_located(pack_copy: Path) -> None:
    line = _append(pack_copy / "authz.rego", "\nodd := no_such_function(1)\n")
    with pytest.raises(RegoSourceError, match="no_such_function") as caught:
        check_in_sandbox(PolicySource.from_dir(pack_copy))
    assert (caught.value.file, caught.value.line, caught.value.column) == (
        "authz.rego",
        line + 1,
        8,
    )


def test_with_outside_test_rules_is_refused(pack_copy: Path) -> None:
    line = _append(
        pack_copy / "authz.rego", 'sneaky if {\n\tallow with input as {"action": "x"}\n}\n'
    )
    source = PolicySource.from_dir(pack_copy)  # decided on the parsed module, in the sandbox
    with pytest.raises(RegoSourceError, match="'with' is allowed only in test_ rules") as caught:
        check_in_sandbox(source)
    assert (caught.value.line, caught.value.column) == (line + 1, 8)


def test_with_inside_strings_and_comments_is_fine(pack_copy: Path) -> None:
    _append(pack_copy / "authz.rego", '# with input as x\nnote := "with input as y"\n')
    check_in_sandbox(PolicySource.from_dir(pack_copy))


def test_module_without_package(pack_copy: Path) -> None:
    (pack_copy / "loose.rego").write_text("x := 1\n")
    with pytest.raises(RegoSourceError, match=r"loose\.rego:1:1: module declares no package"):
        PolicySource.from_dir(pack_copy)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("p, root, lithium-battery, dataset, compute, allow", "unknown role 'root'"),
        ("p, subbrain, lithium-battery, dataset, launch_missiles, allow", "unknown action"),
        ("p, subbrain, atlantis, dataset, compute, allow", "unknown domain 'atlantis'"),
        ("p, subbrain, lithium-battery, dataset, compute, maybe", "effect must be allow or deny"),
        ("p, subbrain, lithium-battery, dataset", "a p line needs"),
        ("g, li-brain, overlord, lithium-battery", "unknown role 'overlord'"),
        ("g, li-brain, subbrain", "a g line needs"),
        ("x, a, b, c", "unknown line type"),
        ("p, subbrain, lithium-battery, , compute, allow", "empty field"),
        ("p, subbrain, lithium-battery, data set, compute, allow", "invalid value"),
        ("p, sysadmin, platform, policy, policy_approve, allow", "separation of duties"),
        ("p, auditor, platform, identity, identity_manage, allow", "separation of duties"),
        ("p, security_officer, platform, ledger, audit_trace, allow", "separation of duties"),
    ],
    ids=lambda v: v if " " not in v else None,
)
def test_bad_casbin_lines_are_refused_with_their_line(
    pack_copy: Path, line: str, message: str
) -> None:
    number = _append(pack_copy / "policy.csv", line + "\n")
    with pytest.raises(CasbinLineError, match=message) as caught:
        PolicySource.from_dir(pack_copy)
    assert caught.value.line == number
    assert str(caught.value).startswith(f"policy.csv:{number}: ")


def test_deny_lines_for_other_duties_are_fine(pack_copy: Path) -> None:
    _append(pack_copy / "policy.csv", "p, auditor, platform, policy, policy_approve, deny\n")
    PolicySource.from_dir(pack_copy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: (d / "model.conf").unlink(), "model.conf is missing"),
        (lambda d: (d / "data.json").write_text("[1]"), "expected a JSON object"),
        (lambda d: (d / "data.json").write_text('{"a": 1, "a": 2}'), "duplicate key"),
        (lambda d: (d / "data.json").write_text("{}"), "must define vocab.roles"),
        (lambda d: (d / "requests.json").write_text("{}"), "must be a list"),
        (lambda d: (d / "requests.json").write_text('[{"name": "x"}]'), "'expect' must be"),
        (lambda d: (d / "authz.rego").unlink(), "entry package ibx.authz"),
        (
            lambda d: (d / "model.conf").write_text(
                (d / "model.conf")
                .read_text()
                .replace("r = sub, dom, obj, act, role", "r = sub, obj, act")
            ),
            "model.conf must define",
        ),
        (
            lambda d: (d / "model.conf").write_text(
                (d / "model.conf").read_text().replace(" && !some(where (p.eft == deny))", "")
            ),
            "deny override allow",
        ),
        (lambda d: (d / "model.conf").write_text("[nonsense"), "model.conf"),
    ],
    ids=[
        "no model",
        "data not object",
        "duplicate data key",
        "no vocabulary",
        "requests not list",
        "request without expect",
        "no entry package",
        "wrong request shape",
        "allow overrides deny",
        "model not ini",
    ],
)
def test_bad_policy_directories(pack_copy: Path, edit: object, message: str) -> None:
    assert callable(edit)
    edit(pack_copy)
    with pytest.raises(PolicyInputError, match=message):
        PolicySource.from_dir(pack_copy)


def test_content_hash_is_canonical(pack_source: PolicySource, pack_copy: Path) -> None:
    data = json.loads((pack_copy / "data.json").read_text())
    (pack_copy / "data.json").write_text(json.dumps(data, indent=None, sort_keys=True))
    assert PolicySource.from_dir(pack_copy).hash == pack_source.hash
    roundtrip = PolicySource.from_dict(json.loads(json.dumps(pack_source.to_dict())))
    assert roundtrip == pack_source and roundtrip.hash == pack_source.hash
    (pack_copy / "policy.csv").write_text((pack_copy / "policy.csv").read_text() + "# comment\n")
    assert PolicySource.from_dir(pack_copy).hash == pack_source.hash
    _append(pack_copy / "policy.csv", "g, li-brain, auditor, lithium-battery\n")
    assert PolicySource.from_dir(pack_copy).hash != pack_source.hash


def test_test_rules_outside_test_packages_are_refused(pack_copy: Path) -> None:
    line = _append(pack_copy / "authz.rego", "\ntest_inline if allow\n")
    with pytest.raises(RegoSourceError, match="package whose name ends in _test") as caught:
        check_in_sandbox(PolicySource.from_dir(pack_copy))
    assert caught.value.line == line + 1
