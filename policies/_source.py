"""A policy version's content: Casbin model and lines, Rego modules, data, sample requests.

The content is read from a directory::

    model.conf      Casbin model (RBAC with domains; see the baseline pack)
    policy.csv      Casbin lines: ``p, role, domain, kind, action, allow|deny``
                    and ``g, subject, role, domain``; ``#`` starts a comment
    *.rego          Rego v1 modules; the decision entrypoint is package ``ibx.authz``
    data.json       data documents (an object; the pack keeps its vocabulary in ``vocab``)
    requests.json   sample requests with expected decisions (a list)

and identified by the SHA-256 of its RFC 8785 canonical form. Checks here are
static (no Rego is evaluated in this process); compilation and tests run in
the sandbox subprocess (:mod:`policies._sandbox`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.canonical import JsonValue, canonical_sha256, parse_json_object
from core.errors import CanonicalJsonError
from policies._model import SampleRequest, VersionHash
from policies.errors import CasbinLineError, PolicyInputError, RegoSourceError

__all__ = ["BASELINE_PACK", "CasbinLine", "PolicySource", "RegoModule"]

logger = logging.getLogger(__name__)

BASELINE_PACK = Path(__file__).parent / "pack"
"""The baseline policy pack shipped with ibx."""

ENTRY_PACKAGE = "ibx.authz"
REQUEST_TOKENS = ("sub", "dom", "obj", "act", "role")
POLICY_TOKENS = ("sub", "dom", "obj", "act", "eft")
DUTY_ROLES = ("sysadmin", "security_officer", "auditor")
MAX_FILE_BYTES = 4 * 1024 * 1024

_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/*-]{0,199}$")
_PACKAGE = re.compile(r"^package\s+([A-Za-z_][A-Za-z0-9_.]*)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class CasbinLine:
    """One Casbin policy line: ``ptype`` (``p`` or ``g``) and its values."""

    ptype: str
    values: tuple[str, ...]
    number: int = field(default=0, compare=False)
    """Line number in ``policy.csv`` (for error messages; not part of the content)."""

    def to_list(self) -> list[str]:
        """``[ptype, *values]``."""
        return [self.ptype, *self.values]

    def __str__(self) -> str:
        return ", ".join(self.to_list())


@dataclass(frozen=True)
class RegoModule:
    """A Rego module: its file name and its source text."""

    name: str
    source: str

    @property
    def package(self) -> str | None:
        """The module's package path, or None when it declares none."""
        match = _PACKAGE.search(self.source)
        return match.group(1) if match else None

    @property
    def is_test(self) -> bool:
        """A test module: its package ends in ``_test``; never part of a decision."""
        return (self.package or "").endswith("_test")


@dataclass(frozen=True)
class PolicySource:
    """Everything a version consists of; immutable and content-addressed."""

    model: str
    lines: tuple[CasbinLine, ...]
    modules: tuple[RegoModule, ...]
    data: Mapping[str, JsonValue]
    requests: tuple[SampleRequest, ...]

    @classmethod
    def from_dir(cls, path: Path) -> PolicySource:
        """Read and statically check a policy directory.

        Raises:
            PolicyInputError: a file is missing, too large, or not valid.
            CasbinLineError: a line is malformed or names an unknown role, action or domain.
            RegoSourceError: a module without a package.
        """
        if not path.is_dir():
            raise PolicyInputError(f"{path} is not a directory")
        model = _read(path / "model.conf")
        policy_text = _read(path / "policy.csv")
        modules = tuple(
            RegoModule(p.name, _read(p)) for p in sorted(path.glob("*.rego"), key=lambda p: p.name)
        )
        try:
            data = parse_json_object(_read(path / "data.json"), what="data.json")
        except CanonicalJsonError as exc:
            raise PolicyInputError(str(exc)) from exc
        requests_path = path / "requests.json"
        requests: tuple[SampleRequest, ...] = ()
        if requests_path.exists():
            requests = _parse_requests(_read(requests_path))
        lines = _parse_lines(policy_text)
        source = cls(model, lines, modules, data, requests)
        source.check()
        return source

    @property
    def hash(self) -> VersionHash:
        """SHA-256 (hex) of the canonical form: the version's identity."""
        return VersionHash(canonical_sha256(self.to_dict()).hex())

    @property
    def vocabulary(self) -> Mapping[str, JsonValue]:
        """The ``vocab`` data document (roles, actions, domains...), or empty."""
        vocab = self.data.get("vocab")
        return vocab if isinstance(vocab, Mapping) else {}

    def summary(self) -> dict[str, int]:
        """Counts for listings and ledger events."""
        return {
            "p_lines": sum(1 for line in self.lines if line.ptype == "p"),
            "g_lines": sum(1 for line in self.lines if line.ptype == "g"),
            "modules": len(self.modules),
            "requests": len(self.requests),
        }

    def to_dict(self) -> dict[str, JsonValue]:
        """The canonical form (hashed, stored, sent to the sandbox)."""
        return {
            "model": self.model,
            "lines": [line.to_list() for line in self.lines],
            "modules": {m.name: m.source for m in self.modules},
            "data": dict(self.data),
            "requests": [r.to_dict() for r in self.requests],
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, JsonValue]) -> PolicySource:
        """Inverse of :meth:`to_dict` (no checks beyond types).

        Raises:
            PolicyInputError: the value is not a policy source.
        """
        try:
            model = value["model"]
            lines = value["lines"]
            modules = value["modules"]
            data = value["data"]
            requests = value["requests"]
            assert isinstance(model, str)
            assert isinstance(lines, Sequence)
            assert isinstance(modules, Mapping)
            assert isinstance(data, Mapping)
            assert isinstance(requests, Sequence)
            parsed_lines = []
            for line in lines:
                assert isinstance(line, Sequence) and not isinstance(line, str)
                items = [str(v) for v in line]
                parsed_lines.append(CasbinLine(items[0], tuple(items[1:])))
            parsed_modules = tuple(RegoModule(str(k), str(v)) for k, v in modules.items())
            parsed_requests = []
            for r in requests:
                assert isinstance(r, Mapping)
                parsed_requests.append(SampleRequest.from_dict(r))
        except (KeyError, AssertionError, ValueError, IndexError) as exc:
            raise PolicyInputError(f"stored policy source is malformed: {exc!r}") from exc
        return cls(model, tuple(parsed_lines), parsed_modules, data, tuple(parsed_requests))

    def check(self) -> None:
        """Static checks: model shape, every line against the vocabulary, a package per module.

        The Rego itself (syntax, allowed built-ins, ``with`` and ``test_`` rules) is
        checked on its parsed tree in the sandbox (:func:`policies.check_in_sandbox`).

        Raises:
            PolicyInputError: the model does not have the decision point's shape.
            CasbinLineError: a line is malformed or names an unknown role, action or domain.
            RegoSourceError: a module without a package.
        """
        _check_model(self.model)
        vocab = self.vocabulary
        roles = _names(vocab.get("roles"))
        actions = _names(vocab.get("actions"))
        domains = _names(vocab.get("domains"))
        owners = vocab.get("duty_owner")
        if not roles or not actions or not domains:
            raise PolicyInputError(
                "data.json must define vocab.roles, vocab.actions and vocab.domains"
            )
        duty_actions: dict[str, set[str]] = {}
        if isinstance(owners, Mapping):
            for action, owner in owners.items():
                duty_actions.setdefault(str(owner), set()).add(str(action))
            if set(duty_actions) != _names(vocab.get("duty_roles")):
                raise PolicyInputError(
                    "data.json: vocab.duty_roles must list exactly the roles of vocab.duty_owner"
                )
        for index, line in enumerate(self.lines, start=1):
            number = line.number or index
            _check_line(number, line, roles=roles, actions=actions, domains=domains)
            if line.ptype == "p" and line.values[4] == "allow":
                role, action = line.values[0], line.values[3]
                for duty, owned in duty_actions.items():
                    if role in DUTY_ROLES and duty != role and action in owned:
                        raise CasbinLineError(
                            f"separation of duties: {role} may not be granted {action} "
                            f"(a {duty} duty)",
                            file="policy.csv",
                            line=number,
                        )
        if not self.modules:
            raise PolicyInputError("a policy version needs at least one .rego module")
        packages = set()
        for module in self.modules:
            _check_module(module)
            packages.add(module.package)
        if ENTRY_PACKAGE not in packages:
            raise PolicyInputError(f"no module declares the entry package {ENTRY_PACKAGE}")


def _read(path: Path) -> str:
    if not path.is_file():
        raise PolicyInputError(f"{path.name} is missing from the policy directory")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise PolicyInputError(f"{path.name} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyInputError(f"{path.name} is not UTF-8: {exc}") from exc


def _names(value: JsonValue | None) -> set[str]:
    if isinstance(value, Mapping):
        return {str(k) for k in value}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return {str(v) for v in value}
    return set()


def _parse_requests(text: str) -> tuple[SampleRequest, ...]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyInputError(f"requests.json: not JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(value, list):
        raise PolicyInputError("requests.json must be a list of sample requests")
    out = []
    names = set()
    for item in value:
        if not isinstance(item, dict):
            raise PolicyInputError("requests.json: every sample request must be an object")
        try:
            sample = SampleRequest.from_dict(item)
        except ValueError as exc:
            raise PolicyInputError(f"requests.json: {exc}") from exc
        if sample.name in names:
            raise PolicyInputError(f"requests.json: duplicate sample request {sample.name!r}")
        names.add(sample.name)
        out.append(sample)
    return tuple(out)


def parse_requests_file(path: Path) -> tuple[SampleRequest, ...]:
    """Sample requests from a JSON file (``ibx policy diff --requests``).

    Raises:
        PolicyInputError: missing, not JSON, or not a list of sample requests.
    """
    return _parse_requests(_read(path))


def _parse_lines(text: str) -> tuple[CasbinLine, ...]:
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        tokens = [t.strip() for t in stripped.split(",")]
        if any(not t for t in tokens):
            raise CasbinLineError("empty field", file="policy.csv", line=number)
        lines.append(CasbinLine(tokens[0], tuple(tokens[1:]), number))
    return tuple(lines)


def _check_model(text: str) -> None:
    from casbin.model import Model  # noqa: PLC0415 -- Casbin loads when a model is checked

    model = Model()
    try:
        model.load_model_from_text(text)
    except Exception as exc:  # configparser and casbin raise many types
        raise PolicyInputError(f"model.conf does not load: {exc}") from exc
    try:
        r_tokens = tuple(t.removeprefix("r_") for t in model["r"]["r"].tokens)
        p_tokens = tuple(t.removeprefix("p_") for t in model["p"]["p"].tokens)
        has_g = "g" in model.model and "g" in model.model["g"]
        matcher = model["m"]["m"].value
    except KeyError as exc:
        raise PolicyInputError(f"model.conf lacks section {exc}") from exc
    if r_tokens != REQUEST_TOKENS or p_tokens != POLICY_TOKENS or not has_g:
        raise PolicyInputError(
            "model.conf must define r = sub, dom, obj, act, role; p = sub, dom, obj, act, eft; "
            "g = _, _, _ (the decision point indexes lines by dom, obj and act)"
        )
    for needed in ("r_dom == p_dom", "r_obj == p_obj", "r_act == p_act"):
        if needed not in matcher:
            raise PolicyInputError(f"model.conf matcher must require {needed.replace('_', '.')}")
    effect = model["e"]["e"].value.replace(" ", "")
    if "!some(where(p_eft==deny))" not in effect:
        raise PolicyInputError("model.conf policy effect must let deny override allow")


def _check_line(
    number: int, line: CasbinLine, *, roles: set[str], actions: set[str], domains: set[str]
) -> None:
    def fail(message: str) -> CasbinLineError:
        return CasbinLineError(f"{message} in '{line}'", file="policy.csv", line=number)

    for value in line.values:
        if not _VALUE.fullmatch(value):
            raise fail(f"invalid value {value!r}")
    if line.ptype == "p":
        if len(line.values) != 5:
            raise fail("a p line needs: role, domain, resource kind, action, allow|deny")
        role, domain, _kind, action, effect = line.values
        if role not in roles:
            raise fail(f"unknown role {role!r}")
        if domain not in domains:
            raise fail(f"unknown domain {domain!r}")
        if action not in actions:
            raise fail(f"unknown action {action!r}")
        if effect not in ("allow", "deny"):
            raise fail(f"effect must be allow or deny, not {effect!r}")
    elif line.ptype == "g":
        if len(line.values) != 3:
            raise fail("a g line needs: subject, role, domain")
        _subject, role, domain = line.values
        if role not in roles:
            raise fail(f"unknown role {role!r}")
        if domain not in domains:
            raise fail(f"unknown domain {domain!r}")
    else:
        raise fail(f"unknown line type {line.ptype!r} (expected p or g)")


def _check_module(module: RegoModule) -> None:
    # Only what text can tell for sure. What a module may call, and where `with` and
    # test_ rules may stand, is decided on its parsed tree in the sandbox
    # (policies._rego_check): text cannot tell code from strings and comments.
    if not module.package:
        raise RegoSourceError("module declares no package", file=module.name, line=1, column=1)


def location_of(source: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a UTF-8 byte offset in ``source`` (as rego-cpp reports)."""
    raw = source.encode("utf-8")
    before = raw[: max(0, min(offset, len(raw)))].decode("utf-8", errors="replace")
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    return line, column
