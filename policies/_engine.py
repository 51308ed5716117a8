"""The compiled form of one policy version and its decision procedure.

Built once per version (Casbin model and lines loaded into a ``FastEnforcer``
indexed by domain, resource kind and action; Rego modules and data compiled
into one regopy bundle) and then asked any number of questions with no
compilation and no I/O.

The combination rule (:func:`combine`): the decision allows only when every
engine gave a definite allow, with no error; anything else denies. So deny
overrides allow, an engine that says nothing denies, and an error denies.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import casbin
import regopy
from casbin.model import FastModel, fast_policy_filter

from core.canonical import JsonValue
from core.clock import parse_rfc3339
from policies._model import Decision, DecisionRequest, Effect, VersionHash
from policies._source import ENTRY_PACKAGE, PolicySource
from policies.errors import PolicyInputError

__all__ = ["CompiledPolicy", "InputSchema", "Verdict", "combine", "prepare_input"]

logger = logging.getLogger(__name__)

logging.getLogger("casbin.enforcer").setLevel(logging.ERROR)
"""Casbin logs every refused request (subject, domain, action) at WARNING; the decision and
its reasons are ibx's to report (on the ledger for writes), not a log line per request.
(A level, not ``disabled``: uvicorn's logging set-up re-enables existing loggers.)"""

CACHE_KEY_ORDER = (1, 2, 3)  # dom, obj (resource kind), act: the same positions in r and p
REGO_QUERY = f"allow := data.{ENTRY_PACKAGE}.allow; deny := data.{ENTRY_PACKAGE}.deny"


@dataclass(frozen=True)
class Verdict:
    """What one engine said: a definite effect, or nothing (undefined), or an error."""

    engine: str
    effect: Effect | None
    reasons: tuple[str, ...] = ()
    error: str | None = None


def combine(verdicts: Sequence[Verdict]) -> tuple[bool, tuple[str, ...]]:
    """Deny-overrides combination with default deny and fail-closed errors.

    Allows only when there is at least one verdict and every verdict is a
    definite allow without error. The reasons list every engine's reasons,
    denials first.
    """
    allow = bool(verdicts) and all(v.effect is Effect.ALLOW and v.error is None for v in verdicts)
    denials: list[str] = []
    grants: list[str] = []
    for v in verdicts:
        if v.error is not None:
            denials.append(f"{v.engine}: error: {v.error}")
        elif v.effect is None:
            denials.append(f"{v.engine}: no decision (undefined), denied by default")
        target = grants if v.effect is Effect.ALLOW and v.error is None else denials
        target.extend(f"{v.engine}: {r}" for r in v.reasons)
        if not v.reasons and v.error is None and v.effect is not None:
            target.append(f"{v.engine}: {v.effect.value}")
    if not verdicts:
        denials.append("no engine decided; denied by default")
    return allow, tuple(denials + grants) if not allow else tuple(grants)


def _names(value: JsonValue | None) -> frozenset[str]:
    if isinstance(value, Mapping):
        return frozenset(str(k) for k in value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return frozenset(str(v) for v in value)
    return frozenset()


@dataclass(frozen=True)
class InputSchema:
    """What a request may say under one version, read from its ``vocab`` data document.

    ``types`` maps each attribute to ``string``, ``integer``, ``boolean``,
    ``time`` or ``one of <vocab key>``; ``required`` lists the attributes each
    action needs (``default_required`` for the others); ``actions`` and
    ``roles`` are the known actions and roles.
    """

    types: Mapping[str, str]
    required: Mapping[str, tuple[str, ...]]
    default_required: tuple[str, ...]
    actions: frozenset[str]
    roles: frozenset[str]
    choices: Mapping[str, frozenset[str]]

    @classmethod
    def from_source(cls, source: PolicySource) -> InputSchema:
        """Read ``vocab.attributes``, ``vocab.required``, ``vocab.actions``, ``vocab.roles``..."""
        vocab = source.vocabulary
        attributes = vocab.get("attributes")
        required = vocab.get("required")
        types = (
            {str(k): str(v) for k, v in attributes.items()}
            if isinstance(attributes, Mapping)
            else {}
        )
        per_action: dict[str, tuple[str, ...]] = {}
        if isinstance(required, Mapping):
            for action, names in required.items():
                per_action[str(action)] = tuple(sorted(_names(names)))
        choices = {
            name: _names(vocab.get(kind.removeprefix("one of ")))
            for name, kind in types.items()
            if kind.startswith("one of ")
        }
        return cls(
            types,
            per_action,
            tuple(sorted(_names(vocab.get("default_required")))),
            _names(vocab.get("actions")),
            _names(vocab.get("roles")),
            choices,
        )


def prepare_input(
    request: DecisionRequest, schema: InputSchema
) -> tuple[dict[str, JsonValue], list[str]]:
    """The Rego input document for ``request``, and why the request is refused (if it is).

    Unknown actions, roles and attributes, missing required attributes, values
    of the wrong type or outside their vocabulary, and subjects named like a
    role are reported, never passed on. Attributes declared as ``time``
    (RFC 3339 strings) become integer UNIX seconds, as is ``now``.
    """
    errors: list[str] = []
    if request.action not in schema.actions:
        errors.append(f"unknown action {request.action}")
    if request.subject.role not in schema.roles:
        errors.append(f"unknown role {request.subject.role}")
    if request.subject.name in schema.roles:
        errors.append(f"subject name {request.subject.name} is a role name")
    context: dict[str, JsonValue] = {}
    for name, value in request.context.items():
        kind = schema.types.get(name)
        if kind is None:
            errors.append(f"unknown attribute {name}")
        elif kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
            errors.append(f"attribute {name} must be an integer")
        elif kind == "boolean" and not isinstance(value, bool):
            errors.append(f"attribute {name} must be true or false")
        elif kind == "time":
            try:
                if not isinstance(value, str):
                    raise ValueError("not a string")
                context[name] = int(parse_rfc3339(value).timestamp())
            except ValueError:
                errors.append(f"attribute {name} must be an RFC 3339 time with an offset")
            continue
        elif kind not in ("integer", "boolean") and not isinstance(value, str):
            errors.append(f"attribute {name} must be a string")
        elif name in schema.choices and value not in schema.choices[name]:
            errors.append(f"unknown {name} {value}")
        context[name] = value
    for name in schema.required.get(request.action, schema.default_required):
        if name not in request.context:
            errors.append(f"missing attribute {name} for {request.action}")
    document: dict[str, JsonValue] = {
        "subject": request.subject.to_dict(),
        "action": request.action,
        "resource": {"id": request.resource, "kind": request.resource_kind},
        "context": context,
        "now": int(request.at.timestamp()),
    }
    return document, errors


class CompiledPolicy:
    """One version, compiled: ask it with :meth:`decide` (thread-safe)."""

    def __init__(
        self,
        version: VersionHash,
        source: PolicySource,
        enforcer: casbin.FastEnforcer,
        builder: regopy.Interpreter,
        bundle: regopy.Bundle,
    ) -> None:
        """Use :meth:`compile`.

        Raises:
            PolicyInputError: the enforcer is disabled (it would allow everything).
        """
        if not enforcer.enabled:
            raise PolicyInputError("a disabled Casbin enforcer would allow everything")
        self.version = version
        self._enforcer = enforcer
        self._policy = enforcer.model.model["p"]["p"].policy
        self._builder = builder
        self._bundle = bundle
        self.schema = InputSchema.from_source(source)
        self._lock = threading.Lock()
        self._local = threading.local()

    @classmethod
    def compile(cls, source: PolicySource, *, adapter: Any = None) -> CompiledPolicy:
        """Compile ``source``; with ``adapter`` the Casbin lines are loaded through it.

        Only call this for sources whose Rego has passed the sandbox checks.

        Raises:
            PolicyInputError: the model, the lines or the Rego do not compile.
        """
        model = FastModel(CACHE_KEY_ORDER)
        try:
            model.load_model_from_text(source.model)
            enforcer = casbin.FastEnforcer(model, adapter, cache_key_order=CACHE_KEY_ORDER)
            if adapter is None:
                p_lines = [list(line.values) for line in source.lines if line.ptype == "p"]
                g_lines = [list(line.values) for line in source.lines if line.ptype == "g"]
                if p_lines:
                    enforcer.add_policies(p_lines)
                if g_lines:
                    enforcer.add_grouping_policies(g_lines)
        except Exception as exc:  # casbin raises bare Exceptions and RuntimeErrors
            raise PolicyInputError(f"Casbin model or lines do not load: {exc}") from exc
        builder = regopy.Interpreter()
        builder.strict_built_in_errors = True
        try:
            builder.add_data_json(json.dumps(dict(source.data)))
            for module in source.modules:
                if not module.is_test:  # tests run only in the sandbox
                    builder.add_module(module.name, module.source)
            bundle = builder.build(REGO_QUERY, [])
        except regopy.RegoError as exc:
            raise PolicyInputError(f"Rego does not compile: {exc}") from exc
        if not bundle.ok():
            raise PolicyInputError("Rego bundle did not build")
        return cls(source.hash, source, enforcer, builder, bundle)

    def _interpreter(self) -> regopy.Interpreter:
        interpreter: regopy.Interpreter | None = getattr(self._local, "rego", None)
        if interpreter is None:
            interpreter = regopy.Interpreter()
            interpreter.strict_built_in_errors = True
            self._local.rego = interpreter
        return interpreter

    def casbin_verdict(self, request: DecisionRequest) -> Verdict:
        """Casbin's RBAC-with-domains answer, with the lines that decided."""
        domain = request.context.get("domain")
        dom = domain if isinstance(domain, str) else ""
        sub, obj, act, role = (
            request.subject.name,
            request.resource_kind,
            request.action,
            request.subject.role,
        )
        try:
            with self._lock, fast_policy_filter(self._policy, dom, obj, act):
                allowed, explain = self._enforcer.enforce_ex(sub, dom, obj, act, role)
                if allowed:
                    roles = {role, *self._enforcer.get_roles_for_user_in_domain(sub, dom)}
                    explain = next(
                        (line for line in self._policy if line[0] in roles and line[4] == "allow"),
                        [],
                    )
        except Exception as exc:  # casbin raises RuntimeError and others
            return Verdict("casbin", None, error=f"{type(exc).__name__}: {exc}")
        if allowed is True:
            line = ", ".join(["p", *explain]) if explain else "an allow line"
            return Verdict("casbin", Effect.ALLOW, (f"allowed by '{line}'",))
        if explain:
            return Verdict("casbin", Effect.DENY, (f"denied by '{', '.join(['p', *explain])}'",))
        return Verdict(
            "casbin",
            Effect.DENY,
            (f"no line lets {role} {sub} {act} {obj} in domain {dom or '(none)'}",),
        )

    def rego_verdict(self, request: DecisionRequest) -> Verdict:
        """Rego's answer: a definite ``allow`` and the ``deny`` messages."""
        document, refusals = prepare_input(request, self.schema)
        if refusals:
            return Verdict("input", Effect.DENY, tuple(refusals))
        try:
            interpreter = self._interpreter()
            interpreter.set_input(regopy.Input(document))
            output = interpreter.query_bundle(self._bundle)
            if not output.ok():
                return Verdict("rego", None, error="evaluation failed (built-in error)")
            if len(output) == 0 or not output[0].bindings:
                return Verdict("rego", None, error="allow is undefined")
            bindings = output[0].bindings
        except Exception as exc:  # regopy raises RegoError; its output parser JSONDecodeError
            return Verdict("rego", None, error=f"{type(exc).__name__}: {exc}")
        allow, deny = bindings.get("allow"), bindings.get("deny")
        if not isinstance(deny, list) or not all(isinstance(d, str) for d in deny):
            return Verdict("rego", None, error="deny is not a set of messages")
        if deny:
            return Verdict("rego", Effect.DENY, tuple(deny))
        if allow is True:
            return Verdict("rego", Effect.ALLOW, ("attribute rules allow",))
        if allow is False:
            return Verdict("rego", Effect.DENY, ("allow is false",))
        return Verdict("rego", None, error=f"allow is not a boolean: {allow!r}")

    def decide(self, request: DecisionRequest) -> Decision:
        """Casbin AND Rego, deny overrides, fail closed. Never raises."""
        verdicts = (self.casbin_verdict(request), self.rego_verdict(request))
        allow, reasons = combine(verdicts)
        return Decision(allow, reasons, self.version)
