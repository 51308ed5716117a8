"""Security review (issue 9 §3): officer Rego is judged on its parsed tree, by an allowlist.

The refusal used to work on text: a ``#`` inside a string hid the rest of the
line, a template string hid a call, an indented rule head let ``with`` into a
helper rule, and ``time.now_ns``/``rand.intn`` were never refused at all; a
multi-line raw string holding the word ``with`` was falsely refused. Every
case here goes through the real sandbox child (rego-cpp's own parser).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import (
    ALLOWED_BUILTINS,
    PolicySource,
    RegoSourceError,
    UnsafeRegoError,
    check_in_sandbox,
    run_tests_in_sandbox,
)

REFUSED = {
    # the old lexical check let these through
    "hash-in-string-hides-call": (
        'deny contains msg if { tag := "#"; msg := sprintf("%v", [opa.runtime().env]) }\n',
        "opa.runtime",
    ),
    "template-string": ('leak := $"{opa.runtime()}"\n', "opa.runtime"),
    "wall-clock": ("late if time.now_ns() > 0\n", "time.now_ns"),
    "randomness": ('pick := rand.intn("seed", 10)\n', "rand.intn"),
    "jwt": ('claims := io.jwt.decode("a.b.c")\n', "io.jwt.decode"),
    # the old check caught these; they stay caught
    "spaced": ("leak := opa . runtime()\n", "opa.runtime"),
    "split-over-lines": ("leak := opa.\n\truntime()\n", "opa.runtime"),
    "bracket": ('leak := opa["runtime"]()\n', "opa.runtime"),
    "in-a-reason": (
        'deny contains msg if {\n\tmsg := sprintf("%v", [opa.runtime().env])\n}\n',
        "opa.runtime",
    ),
    "output-argument": ("leak if {\n\topa.runtime(x)\n\tx\n}\n", "opa.runtime"),
    "shadowed-by-a-rule": ("opa.runtime(x) := x\nleak := opa.runtime(1)\n", "opa.runtime"),
    "rule-named-like-a-builtin": ("time.now_ns := 1\n", "time.now_ns"),
    "unknown-function": ("odd := no_such_function(1)\n", "no_such_function"),
    # regopy's own is_builtin("io.jwt") aborts the process: the check never asks it
    "namespace-prefix": ("odd := io.jwt(1)\n", "io.jwt"),
}


def _add(pack_dir: Path, rego: str, *, imports: str = "") -> None:
    authz = pack_dir / "authz.rego"
    text = authz.read_text()
    if imports:
        text = text.replace("import data.vocab\n", f"import data.vocab\n{imports}\n")
    authz.write_text(text + "\n" + rego)


@pytest.mark.parametrize(("rego", "name"), list(REFUSED.values()), ids=list(REFUSED))
def test_unsafe_builtins_are_refused_on_the_parsed_module(
    pack_copy: Path, rego: str, name: str
) -> None:
    _add(pack_copy, rego)
    with pytest.raises(UnsafeRegoError) as caught:
        check_in_sandbox(PolicySource.from_dir(pack_copy))
    assert (caught.value.file, caught.value.construct) == ("authz.rego", name)
    assert caught.value.line > 80  # located in the appended text, not at the top


def test_an_import_alias_named_like_a_builtin_cannot_reach_it(pack_copy: Path) -> None:
    _add(pack_copy, "leak := opa.runtime()\n", imports="import data.vocab as opa")
    with pytest.raises(UnsafeRegoError, match="an import may not be named opa") as caught:
        check_in_sandbox(PolicySource.from_dir(pack_copy))
    assert caught.value.construct == "opa"


def test_a_builtin_as_a_with_value_in_a_test_rule_is_refused(pack_copy: Path) -> None:
    (pack_copy / "mock_test.rego").write_text(
        "package ibx.mock_test\n\nimport rego.v1\n\n"
        "test_leak if {\n\tdata.ibx.authz.allow with data.vocab.f as opa.runtime\n}\n"
    )
    with pytest.raises(UnsafeRegoError, match=r"opa\.runtime is not on the allowlist") as caught:
        check_in_sandbox(PolicySource.from_dir(pack_copy))
    assert (caught.value.file, caught.value.line) == ("mock_test.rego", 6)


WITH_OUTSIDE_TESTS = {
    "policy-rule": ('sneaky if {\n\tallow with input as {"action": "x"}\n}\n', "authz.rego"),
    "mocking-a-builtin": ("sneaky if {\n\tallow with time.now_ns as 1\n}\n", "authz.rego"),
}


@pytest.mark.parametrize(
    ("rego", "file"), list(WITH_OUTSIDE_TESTS.values()), ids=list(WITH_OUTSIDE_TESTS)
)
def test_with_outside_test_rules_is_refused(pack_copy: Path, rego: str, file: str) -> None:
    _add(pack_copy, rego)
    with pytest.raises(UnsafeRegoError, match="'with' is allowed only in test_ rules"):
        check_in_sandbox(PolicySource.from_dir(pack_copy))


def test_with_in_an_indented_helper_of_a_test_package_is_refused(pack_copy: Path) -> None:
    """The old check tracked rule heads at column 0 only; an indented head kept `test_`."""
    (pack_copy / "helper_test.rego").write_text(
        "package ibx.helper_test\n\nimport rego.v1\n\n"
        "test_a if { true }\n"
        '  helper if {\n\tdata.ibx.authz.allow with input as {"action": "x"}\n}\n'
    )
    with pytest.raises(UnsafeRegoError, match=r"found in helper") as caught:
        check_in_sandbox(PolicySource.from_dir(pack_copy))
    assert (caught.value.file, caught.value.line) == ("helper_test.rego", 7)


def test_test_rules_outside_test_packages_are_refused_on_the_tree(pack_copy: Path) -> None:
    _add(pack_copy, "  test_hidden if { true }\n")  # indented: invisible to a column-0 scan
    with pytest.raises(UnsafeRegoError, match="test_ rules belong in a package"):
        check_in_sandbox(PolicySource.from_dir(pack_copy))


def test_words_in_strings_and_comments_are_fine(pack_copy: Path) -> None:
    """Strings and comments are not code: the old check refused the raw string."""
    _add(
        pack_copy,
        "# opa.runtime() with input as {}\n"
        'note := "opa.runtime() with input as x; time.now_ns()"\n'
        "raw_note := `with\nopa.runtime()\nwith input as`\n"
        'deny contains "never: opa.runtime" if { input.action == "with" }\n',
    )
    check_in_sandbox(PolicySource.from_dir(pack_copy))


def test_own_functions_and_allowed_builtins_are_fine(pack_copy: Path) -> None:
    _add(
        pack_copy,
        'suffixed(x) := concat("", [x, "-ok"])\n'
        'label := suffixed(lower("A"))\n'
        'stamp := time.parse_rfc3339_ns("2026-11-25T08:00:00Z")\n'
        'shared := data.ibx.authz.suffixed("b")\n',
    )
    check_in_sandbox(PolicySource.from_dir(pack_copy))


def test_with_in_test_rules_of_test_packages_is_fine(pack_copy: Path) -> None:
    (pack_copy / "with_test.rego").write_text(
        "package ibx.with_test\n\nimport rego.v1\n\n"
        "test_vocab if { data.vocab.min_cohort == 9 with data.vocab.min_cohort as 9 }\n"
    )
    check_in_sandbox(PolicySource.from_dir(pack_copy))


def test_a_syntax_error_is_still_located(pack_copy: Path) -> None:
    _add(pack_copy, "broken if {\n\tinput.a ==\n}\n")
    with pytest.raises(RegoSourceError) as caught:
        check_in_sandbox(PolicySource.from_dir(pack_copy))
    assert not isinstance(caught.value, UnsafeRegoError)
    assert caught.value.file == "authz.rego"


def test_every_allowed_builtin_is_a_regopy_builtin() -> None:
    """The list names real functions; a typo would hide a gap."""
    import regopy

    interpreter = regopy.Interpreter()
    assert {name for name in ALLOWED_BUILTINS if not interpreter.is_builtin(name)} == set()
    refused = ("opa.runtime", "time.now_ns", "rand.intn", "uuid.rfc4122", "io.jwt.decode")
    assert not set(refused) & ALLOWED_BUILTINS


def test_a_version_is_checked_again_when_tested(pack_copy: Path) -> None:
    """A version stored before today's allowlist does not pass its test (nothing of it runs)."""
    _add(pack_copy, "leak := opa.runtime()\n")
    report = run_tests_in_sandbox(PolicySource.from_dir(pack_copy))
    assert not report.passed
    assert [(r.name, r.passed) for r in report.results] == [("allowlist", False)]
    assert "built-in opa.runtime is not on the allowlist" in report.results[0].message
