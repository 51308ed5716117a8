"""What officer-supplied Rego may use, decided on the parsed module (never on its text).

Three rules, applied to the tree rego-cpp parses (:mod:`policies._rego_ast`):

1. **Built-ins by allowlist.** Every call is either a built-in on
   :data:`ALLOWED_BUILTINS` (pure, deterministic functions of their arguments:
   no environment, no clock, no randomness, no network, no key material) or a
   function the policy defines itself. A built-in name that is not on the list
   is refused wherever it appears — called, used as a ``with`` target or value,
   or shadowed by a rule or an import of the same name (which of the two
   rego-cpp would run is then its business, not ours). So
   ``opa.runtime`` (the process environment), ``time.now_ns`` (a decision must
   depend on the request's time, not the wall clock), ``rand.intn``,
   ``uuid.rfc4122``, ``io.jwt.*`` and ``crypto.x509.*`` are refused, and so is
   every built-in a later regopy adds until someone puts it on the list. (The
   check does not ask regopy whether a name is a built-in: its
   ``is_builtin("io.jwt")`` aborts the process. It knows OPA's namespaces.)
2. **``with`` only in ``test_`` rules of ``_test`` packages** (rego-cpp crashes
   on some ``with input as`` evaluations; see docs/policies.md).
3. **``test_`` rules only in ``_test`` packages**, and the package the AST
   declares is the one the text declares (test packages never reach decisions,
   so the two must agree).

Strings and comments are not code: ``"opa.runtime()"`` in a message, or
``# with input as`` in a comment, is accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from policies._rego_ast import AstNode
from policies._source import RegoModule, location_of

__all__ = [
    "ALLOWED_BUILTINS",
    "BUILTIN_NAMESPACES",
    "Finding",
    "ModuleFacts",
    "check_module",
    "check_trees",
    "module_facts",
    "test_rules",
]

logger = logging.getLogger(__name__)

ALLOWED_BUILTINS: frozenset[str] = frozenset(
    {
        # numbers and aggregates
        "abs", "ceil", "floor", "round", "numbers.range", "numbers.range_step",
        "count", "sum", "product", "max", "min", "sort", "to_number",
        "bits.and", "bits.or", "bits.xor", "bits.negate", "bits.lsh", "bits.rsh",
        # arrays, sets, objects
        "array.concat", "array.slice", "array.reverse", "intersection", "union",
        "object.get", "object.keys", "object.remove", "object.filter", "object.union",
        "object.union_n", "object.subset", "json.filter", "json.remove", "json.patch",
        # strings
        "concat", "contains", "endswith", "format_int", "indexof", "indexof_n", "lower",
        "replace", "split", "sprintf", "startswith", "strings.replace_n", "strings.reverse",
        "strings.any_prefix_match", "strings.any_suffix_match", "strings.count", "substring",
        "trim", "trim_left", "trim_prefix", "trim_right", "trim_space", "trim_suffix", "upper",
        # regular expressions and globs
        "regex.match", "regex.is_valid", "regex.split", "regex.find_n", "regex.replace",
        "regex.find_all_string_submatch_n", "regex.template_match", "regex.globs_match",
        "glob.match", "glob.quote_meta",
        # types
        "is_number", "is_string", "is_boolean", "is_array", "is_set", "is_object", "is_null",
        "type_name",
        # encodings
        "base64.encode", "base64.decode", "base64.is_valid", "base64url.encode",
        "base64url.decode", "base64url.encode_no_pad", "hex.encode", "hex.decode",
        "json.marshal", "json.marshal_with_options", "json.unmarshal", "json.is_valid",
        "urlquery.encode", "urlquery.decode", "urlquery.encode_object", "urlquery.decode_object",
        "yaml.marshal", "yaml.unmarshal", "yaml.is_valid",
        # time, as a function of its arguments (never the wall clock)
        "time.parse_rfc3339_ns", "time.parse_ns", "time.parse_duration_ns", "time.date",
        "time.clock", "time.weekday", "time.add_date", "time.diff", "time.format",
        # units, versions, graphs, digests
        "units.parse", "units.parse_bytes", "semver.compare", "semver.is_valid",
        "graph.reachable", "graph.reachable_paths", "walk",
        "crypto.sha256", "crypto.sha1", "crypto.md5", "crypto.hmac.sha256", "crypto.hmac.equal",
    }
)  # fmt: skip
"""Built-ins officer Rego may call: pure functions of their arguments."""

BUILTIN_NAMESPACES: frozenset[str] = frozenset(
    {
        "array", "base64", "base64url", "bits", "crypto", "glob", "graph", "graphql", "hex",
        "http", "internal", "io", "json", "net", "numbers", "object", "opa", "providers",
        "rand", "regex", "rego", "semver", "strings", "time", "units", "urlquery", "uuid",
        "yaml",
    }
)  # fmt: skip
"""First segments of OPA's dotted built-ins. A call, rule, import or ``with`` ref
under one of them must be on the allowlist: a policy cannot shadow ``opa.runtime``
with its own rule, nor name an import ``opa`` to make the call look like its own."""

REFUSED_BUILTINS: frozenset[str] = frozenset(
    {"trace", "print", "any", "all", "re_match", "set_diff", "cast_array", "cast_set",
     "cast_string", "cast_boolean", "cast_null", "cast_object"}
)  # fmt: skip
"""OPA built-ins without a namespace that are not on the allowlist (output, deprecated)."""


@dataclass(frozen=True)
class Finding:
    """One refused construct, located in its module.

    Raises:
        ValueError: a line or column below 1.
    """

    message: str
    line: int
    column: int
    name: str = ""
    """The refused built-in or function, when there is one."""

    def __post_init__(self) -> None:
        if self.line < 1 or self.column < 1:
            raise ValueError("a finding is located at line and column >= 1")


@dataclass(frozen=True)
class ModuleFacts:
    """What the other modules need to know about one: its package and its functions."""

    package: str
    functions: frozenset[str]
    """Full names (``data.<package>.<name>``) of the functions it defines."""


def dotted(ref: AstNode) -> str | None:
    """``a.b.c`` for a ref of plain segments (``a["b"]`` counts as ``a.b``), else None."""
    head = ref.child("refhead")
    if head is None or len(head.children) != 1 or head.children[0].kind != "var":
        return None
    parts = [head.children[0].text or ""]
    for arg in (ref.child("refargseq") or AstNode("refargseq", None, None, None, ())).children:
        if arg.kind == "refargdot" and arg.children and arg.children[0].kind == "var":
            parts.append(arg.children[0].text or "")
            continue
        string = arg.first("STRING") if arg.kind == "refargbrack" else None
        if string is None or string.text is None or len(string.text) < 2:
            return None
        parts.append(string.text[1:-1])
    return ".".join(parts) if all(parts) else None


def _rules(module: AstNode) -> Iterator[tuple[str | None, AstNode]]:
    policy = module.child("policy")
    for rule in policy.children if policy is not None else ():
        ref = rule.first("ruleref")
        inner = ref.first("ref") if ref is not None else None
        yield (dotted(inner) if inner is not None else None), rule


def test_rules(module: AstNode) -> list[str]:
    """Names of the module's ``test_`` rules, in order, each once."""
    names = (name for name, _rule in _rules(module) if name and name.startswith("test_"))
    return list(dict.fromkeys(names))


def _package(module: AstNode) -> str | None:
    package = module.child("package")
    ref = package.first("ref") if package is not None else None
    return dotted(ref) if ref is not None else None


def module_facts(module: AstNode) -> ModuleFacts:
    """The package a parsed module declares and the functions it defines."""
    package = _package(module) or ""
    functions = {
        f"data.{package}.{name}"
        for name, rule in _rules(module)
        if name is not None and rule.first("ruleheadfunc") is not None
    }
    return ModuleFacts(package, frozenset(functions))


def check_trees(
    modules: Sequence[RegoModule], trees: Mapping[str, AstNode]
) -> tuple[RegoModule, Finding] | None:
    """The first refused construct of a version, given every module's parsed tree.

    ``trees`` maps module names to :func:`policies._rego_ast.parse_module` results.
    """
    functions = frozenset().union(*(module_facts(tree).functions for tree in trees.values()))
    for module in modules:
        findings = check_module(module, trees[module.name], functions=functions)
        if findings:
            return module, findings[0]
    return None


def check_module(module: RegoModule, tree: AstNode, *, functions: frozenset[str]) -> list[Finding]:
    """Every construct of ``module`` that the sandbox rules refuse (empty: accepted).

    ``functions`` are the full names (``data.<package>.<name>``) of every
    function the version defines.
    """
    findings: list[Finding] = []

    def at(node: AstNode, message: str, name: str = "") -> None:
        line, column = location_of(module.source, node.offset or 0)
        findings.append(Finding(message, line, column, name))

    package = _package(tree)
    if package != module.package:
        at(tree, f"the module's package {package!r} is not the one its text declares")
        return findings
    aliases: Mapping[str, str] = _aliases(tree)
    for alias, path in aliases.items():
        if alias in BUILTIN_NAMESPACES and path != "rego.v1":
            at(tree, f"an import may not be named {alias}, like a built-in namespace", alias)
    for name, rule in _rules(tree):
        if name is not None and _builtin_like(name):
            at(rule, f"a rule may not be named {name}, like a built-in", name)
        is_test_rule = bool(name) and str(name).startswith("test_")
        if is_test_rule and not module.is_test:
            at(rule, "test_ rules belong in a package whose name ends in _test")
        for node in rule.walk():
            if node.kind == "with":
                if not (is_test_rule and module.is_test):
                    where = name or "a rule"
                    at(node, f"'with' is allowed only in test_ rules (found in {where})")
                for ref in (n for n in node.walk() if n.kind == "ref"):
                    _check_with_ref(ref, at)
            elif node.kind == "exprcall":
                _check_call(node, at, package or "", aliases, functions)
    return findings


def _builtin_like(name: str) -> bool:
    """A name that is, or is inside, a built-in namespace, and not on the allowlist."""
    if name in ALLOWED_BUILTINS:
        return False
    return name in REFUSED_BUILTINS or name.partition(".")[0] in BUILTIN_NAMESPACES


def _aliases(module: AstNode) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (module.child("importseq") or AstNode("importseq", None, None, None, ())).children:
        ref = item.child("ref")
        alias = item.child("var")
        path = dotted(ref) if ref is not None else None
        if path is not None and alias is not None and alias.text:
            out[alias.text] = path
    return out


def _check_with_ref(ref: AstNode, at: Callable[[AstNode, str, str], None]) -> None:
    # a `with` target or value may name a function (a built-in replaced, or used as
    # the replacement): the only place a built-in appears without being called
    name = dotted(ref)
    if name is not None and _builtin_like(name):
        at(ref, f"built-in {name} is not on the allowlist", name)


def _check_call(
    call: AstNode,
    at: Callable[[AstNode, str, str], None],
    package: str,
    aliases: Mapping[str, str],
    functions: frozenset[str],
) -> None:
    callee = call.child("ref")
    name = dotted(callee) if callee is not None else None
    if name is None:
        at(call, "a call through a computed name is refused", "")
        return
    if name in ALLOWED_BUILTINS:
        return
    if _builtin_like(name):
        at(call, f"built-in {name} is not on the allowlist", name)
        return
    head, _, rest = name.partition(".")
    if head == "data":
        full = name
    elif head in aliases:
        full = ".".join(p for p in (aliases[head], rest) if p)
    else:
        full = f"data.{package}.{name}"
    if full not in functions:
        at(call, f"function {name} is neither an allowed built-in nor defined in the policy", name)
