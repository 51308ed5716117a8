"""The typed ledger entries: the registry, the published JSON Schemas, the round trips.

* The schemas in ``docs/schemas/ledger/`` are exactly what the models generate
  (a drift test), and ``python -m exchange.ledger_types --check`` says so.
* For every registered type, Hypothesis builds payloads from the type's own
  JSON Schema: each validates against the schema, parses through the model,
  and model → JSON → RFC 8785 bytes → parse gives the same model.
* Payloads that break the schema are refused (unknown member, wrong type,
  bool for an integer, a number as a string), and an unknown type is refused.
* A real deployment's ledger (identities, officers' duties, policy, datasets,
  consents, an HE job released, a refusal, a revocation, the edge CA, a
  device's enrolment, renewal, upload and revocation, an alert): every entry
  parses through the registry, and its model states the payload exactly.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import jsonschema  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey

from consent.entries import GrantEntry, RevokeEntry
from core.alerts import Alert, Severity
from core.canonical import JsonValue, canonical_bytes
from core.clock import format_rfc3339, utcnow
from core.duty import DUTY_ACTIONS, Duty
from core.keys import Ed25519Signer
from edge_tls import RevocationReason, seal_batch
from exchange import ledger_types
from exchange.entries import AlertEntry
from exchange.ledger_types import (
    ENTRY_PARSERS,
    ENTRY_TYPES,
    EntryPayloadError,
    UnknownEntryTypeError,
    parse_entry,
)
from exchange.pipeline.entries import JobStateName
from exchange.pipeline.jobs import JobState
from mpc.entries import KeyDecryptEntry
from tests.consent.test_entries import receipts, revocations
from tests.consent.test_entries import requests as consent_requests

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "docs" / "schemas" / "ledger"
TYPES = sorted(ENTRY_TYPES)

_SAFE_INT = 2**53 - 1
_SIGNER = Ed25519Signer.generate("officer-h")


# -- strategies from the JSON Schema -------------------------------------------------------


def _json_floats() -> st.SearchStrategy[float]:
    """Finite floats RFC 8785 can write unambiguously (no integral float beyond 2**53)."""
    return st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda f: not (f.is_integer() and abs(f) > _SAFE_INT)
    )


_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_ANY_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-_SAFE_INT, _SAFE_INT) | _json_floats() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def _signed_duty(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed signed duty (its signature is real; whose key is the verifier's concern)."""
    duty = Duty(
        origin=draw(st.sampled_from(["test.ibx.localhost/ledger", "ibx.example/ledger"])),
        actor=draw(st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True)),
        action=draw(st.sampled_from(sorted(DUTY_ACTIONS))),
        subject=draw(st.from_regex(r"[a-z0-9][a-z0-9.:-]{0,31}", fullmatch=True)),
        details=draw(st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), _TEXT)),
        signed_at=draw(
            st.datetimes(
                min_value=datetime(2020, 1, 1),
                max_value=datetime(2040, 1, 1),
                timezones=st.just(UTC),
            )
        ).replace(microsecond=0),
    )
    return dict(duty.sign(_SIGNER).to_dict())


_PATTERNS: Mapping[str, st.SearchStrategy[str]] = {
    "^[0-9a-f]{64}$": st.binary(min_size=32, max_size=32).map(bytes.hex),
    "^job_[0-9a-f]{32}$": st.binary(min_size=16, max_size=16).map(lambda b: "job_" + b.hex()),
    "^cst_[0-9a-f]{32}$": st.binary(min_size=16, max_size=16).map(lambda b: "cst_" + b.hex()),
}
"""Common patterns drawn directly (``from_regex`` is slow on them)."""

_RFC3339 = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.just(UTC),
).map(format_rfc3339)

_OVERRIDES: Mapping[str, st.SearchStrategy[Any]] = {
    "duty": _signed_duty(),
    "checked_at": _RFC3339,
    "created_at": _RFC3339,
    "request": consent_requests.map(lambda r: r.to_dict()),
}
"""Properties whose schema is looser than their model (a signed duty, a time checked by
a parser, a consent request): built for real. ``request`` of ``pipeline.decision`` is an
object schema of its own and is generated from it."""

_BUILT: Mapping[str, st.SearchStrategy[dict[str, Any]]] = {
    "consent.grant": receipts().map(lambda s: GrantEntry.of(s).model_dump(mode="json")),
    "consent.revoke": revocations().map(lambda s: RevokeEntry.of(s).model_dump(mode="json")),
}
"""Types whose payload carries a signed document: built from the document (the
strategies of tests/consent/test_entries.py)."""


class _Strategies:
    """Hypothesis strategies for the values one JSON Schema (with its ``$defs``) allows."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self._defs: Mapping[str, Any] = root.get("$defs", {})

    def of(self, schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
        if "$ref" in schema:
            name = schema["$ref"].removeprefix("#/$defs/")
            return st.deferred(lambda: self.of(self._defs[name]))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return st.one_of([self.of(option) for option in schema[key]])
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return self.of(schema["allOf"][0])
        if "const" in schema:
            return st.just(schema["const"])
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        kind = schema.get("type")
        if kind is None:
            return _ANY_JSON
        if isinstance(kind, list):
            return st.one_of([self.of({**schema, "type": k}) for k in kind])
        built: st.SearchStrategy[Any] = getattr(self, f"_{kind}")(schema)
        return built

    @staticmethod
    def _null(_schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
        return st.none()

    @staticmethod
    def _boolean(_schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
        return st.booleans()

    @staticmethod
    def _string(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if schema.get("format") == "date-time":
            return st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
        if schema.get("pattern") in _PATTERNS:
            return _PATTERNS[schema["pattern"]]
        if "pattern" in schema:
            text = st.from_regex(schema["pattern"], fullmatch=True)
            return text.filter(lambda s: low <= len(s) <= (high or len(s)))
        return st.text(
            st.characters(codec="utf-8"),
            min_size=low,
            max_size=min(high if high is not None else 20, low + 20),
        )

    @staticmethod
    def _integer(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
        low = schema.get("minimum", -_SAFE_INT)
        high = schema.get("maximum", _SAFE_INT)
        if "exclusiveMinimum" in schema:
            low = math.floor(schema["exclusiveMinimum"]) + 1
        if "exclusiveMaximum" in schema:
            high = math.ceil(schema["exclusiveMaximum"]) - 1
        return st.integers(low, high)

    @staticmethod
    def _number(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
        floats = st.floats(
            min_value=schema.get("minimum", schema.get("exclusiveMinimum")),
            max_value=schema.get("maximum", schema.get("exclusiveMaximum")),
            exclude_min="exclusiveMinimum" in schema,
            exclude_max="exclusiveMaximum" in schema,
            allow_nan=False,
            allow_infinity=False,
        )
        return floats.filter(lambda f: not (f.is_integer() and abs(f) > _SAFE_INT))

    def _array(self, schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
        if "prefixItems" in schema:
            return st.tuples(*(self.of(s) for s in schema["prefixItems"])).map(list)
        return st.lists(
            self.of(schema.get("items", {})),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 3), schema.get("minItems", 0) + 3),
            unique=bool(schema.get("uniqueItems")),
        )

    def _object(self, schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
        properties: Mapping[str, Any] = schema.get("properties", {})
        if not properties:
            extra = schema.get("additionalProperties", {})
            values = _ANY_JSON if extra is True else self.of(extra)
            return st.dictionaries(_TEXT, values, max_size=3)
        required = set(schema.get("required", ()))
        members = {
            name: _OVERRIDES[name] if name in _OVERRIDES and "$ref" not in sub else self.of(sub)
            for name, sub in properties.items()
        }
        optional = sorted(set(members) - required)

        @st.composite
        def build(draw: st.DrawFn) -> dict[str, Any]:
            out = {name: draw(members[name]) for name in members if name in required}
            for name in optional:
                if draw(st.booleans()):
                    out[name] = draw(members[name])
            return out

        return build()


def _certificate_issue(payload: dict[str, Any]) -> dict[str, Any]:
    """A device certificate names its device, a server certificate its hosts."""
    device = {"enterprise": "acme", "device": "meter-1", "spiffe_id": "spiffe://t/acme/meter-1"}
    if payload["kind"] == "device":
        payload.pop("hosts", None)
        return {**device, **payload}
    for name in (*device, "superseded"):
        payload.pop(name, None)
    return {"hosts": ["edge.test"], **payload}


def _consent_job(payload: dict[str, Any]) -> dict[str, Any]:
    """A stopped job states its reason, a released one none."""
    stopped = payload["status"] == "stopped"
    return {**payload, "reason": (payload["reason"] or "revoked") if stopped else None}


_CONSISTENT: Mapping[str, Any] = {
    "edge.certificate.issue": _certificate_issue,
    "consent.job": _consent_job,
}
"""Types whose members depend on each other: a generated payload made consistent."""


def payloads(entry_type: str) -> st.SearchStrategy[dict[str, Any]]:
    """Payloads the published schema of ``entry_type`` allows and its model accepts."""
    schema = ledger_types.entry_schema(entry_type)
    model = ENTRY_TYPES[entry_type]

    def accepted(payload: dict[str, Any]) -> bool:
        try:
            model.model_validate(payload)
        except ValueError:
            return False  # a rule across members the schema cannot state
        return True

    if entry_type in _BUILT:
        return _BUILT[entry_type]
    strategy: st.SearchStrategy[dict[str, Any]] = _Strategies(schema).of(schema)
    if entry_type in _CONSISTENT:
        strategy = strategy.map(_CONSISTENT[entry_type])
    return strategy.filter(accepted)


# -- the published schemas -----------------------------------------------------------------


def test_published_schemas_match_the_models() -> None:
    drift = ledger_types.check_schemas(PUBLISHED)
    assert drift == [], (
        "run: python -m exchange.ledger_types --write docs/schemas/ledger\n" + "\n".join(drift)
    )


def test_check_exits_non_zero_on_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_types.main(["--write", str(tmp_path)]) == 0
    assert ledger_types.main(["--check", str(tmp_path)]) == 0
    first = tmp_path / f"{TYPES[0]}.json"
    first.write_text(first.read_text().replace('"additionalProperties": false', '"x": 1'))
    (tmp_path / "made.up.json").write_text("{}\n")
    (tmp_path / f"{TYPES[-1]}.json").unlink()
    drift = ledger_types.check_schemas(tmp_path)
    assert sorted(drift) == sorted(
        [
            f"{TYPES[0]}.json: differs from the models",
            f"{TYPES[-1]}.json: missing",
            "made.up.json: no package declares this type",
        ]
    )
    assert ledger_types.main(["--check", str(tmp_path)]) == 1
    assert "--write" in capsys.readouterr().err
    assert ledger_types.main(["--write", str(tmp_path)]) == 0
    assert ledger_types.check_schemas(tmp_path) == []


def test_every_schema_is_a_2020_12_schema_named_for_its_type() -> None:
    readme = (PUBLISHED / "README.md").read_text(encoding="utf-8")
    for entry_type in TYPES:
        schema = json.loads((PUBLISHED / f"{entry_type}.json").read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"] == schema["title"] == entry_type
        assert schema["$schema"] == ledger_types.JSON_SCHEMA_DIALECT
        assert schema["additionalProperties"] is False, f"{entry_type} accepts unknown members"
        assert f"[`{entry_type}`]({entry_type}.json)" in readme


def test_every_model_follows_the_convention() -> None:
    for entry_type, model in ENTRY_TYPES.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+", entry_type)
        assert entry_type == model.TYPE  # type: ignore[attr-defined]
        assert model.model_config.get("extra") == "forbid", entry_type
        assert model.model_config.get("frozen") is True, entry_type
        assert entry_type in ledger_types.WRITERS


def test_job_states_are_the_entry_vocabulary() -> None:
    assert set(get_args(JobStateName)) == {s.value for s in JobState}


# -- round trips -----------------------------------------------------------------------------


def _round_trip(entry_type: str, payload: dict[str, Any]) -> None:
    model = ENTRY_TYPES[entry_type]
    validator = jsonschema.Draft202012Validator(ledger_types.entry_schema(entry_type))
    validator.validate(payload)  # what the model accepts the published schema allows
    parsed = parse_entry(entry_type, payload)
    assert isinstance(parsed, model)
    dumped = parsed.model_dump(mode="json", by_alias=True)
    validator.validate(dumped)
    again = parse_entry(entry_type, json.loads(canonical_bytes(dumped)))
    assert again == parsed
    assert canonical_bytes(again.model_dump(mode="json", by_alias=True)) == canonical_bytes(dumped)
    # exactly the payload: what was stated, no more, no less
    stated = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert canonical_bytes(stated) == canonical_bytes(payload)


def _refused(entry_type: str, payload: dict[str, Any], member: str) -> None:
    """An unknown member, a required member missing or of the wrong type: each refused."""
    with pytest.raises(EntryPayloadError):
        parse_entry(entry_type, {**payload, "zz_unexpected": 1})
    schema = ledger_types.entry_schema(entry_type)
    assert member in schema.get("required", ()), f"{entry_type} states no required member"
    with pytest.raises(EntryPayloadError):
        parse_entry(entry_type, {k: v for k, v in payload.items() if k != member})
    if schema["properties"][member] == {"$ref": "#/$defs/JsonValue"}:
        return  # any JSON value is of the right type
    # an object where there was none, a string where there was an object: both wrong
    wrong: Any = "not this" if isinstance(payload[member], dict) else {"not": "this"}
    with pytest.raises(EntryPayloadError) as caught:
        parse_entry(entry_type, {**payload, member: wrong})
    assert caught.value.problems


@pytest.mark.parametrize("entry_type", TYPES)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_round_trip(entry_type: str, data: st.DataObject) -> None:
    """schema-valid payload → model → JSON → RFC 8785 → model, equal; and what breaks the
    schema is refused."""
    payload = data.draw(payloads(entry_type), label="payload")
    _round_trip(entry_type, payload)
    required = sorted(ledger_types.entry_schema(entry_type).get("required", ()))
    _refused(entry_type, payload, data.draw(st.sampled_from(required), label="member"))


def test_parsing_is_strict() -> None:
    good: dict[str, JsonValue] = {
        "job_id": "job_" + "a" * 32,
        "key_fingerprint": "b" * 64,
        "cohort_sha256": "c" * 64,
        "contributors": 3,
    }
    parsed = parse_entry("mpc.key.decrypt", good)
    assert isinstance(parsed, KeyDecryptEntry) and parsed.contributors == 3
    for wrong in (True, "3", [3]):  # (3.0 is the number 3: RFC 8785 writes it so)
        with pytest.raises(EntryPayloadError, match="contributors"):
            parse_entry("mpc.key.decrypt", {**good, "contributors": wrong})
    with pytest.raises(UnknownEntryTypeError) as unknown:
        parse_entry("mpc.key.steal", good)
    assert unknown.value.entry_type == "mpc.key.steal"
    assert isinstance(unknown.value, ValueError)  # what audit's verifier catches
    with pytest.raises(EntryPayloadError):
        ENTRY_PARSERS["mpc.key.decrypt"]({**good, "key_fingerprint": "B" * 64})


def test_the_alert_entry_mirrors_core_alerts() -> None:
    alert = Alert(
        "row.mismatch",
        Severity.CRITICAL,
        "consent-1",
        "the row says active, the ledger says revoked",
        evidence=(3, 9),
        details={"row": "active", "ledger": "revoked", "uses": [1, 2.5, None]},
    )
    entry = parse_entry("audit.alert", alert.to_payload())
    assert isinstance(entry, AlertEntry) and entry == AlertEntry.of(alert)
    assert entry.alert() == alert


def test_the_decision_record_is_its_entry() -> None:
    """``DecisionRecord.to_payload`` is the typed entry, and ``from_payload`` refuses what
    the entry refuses (a bool for an integer) and what only the record knows (the hash)."""
    from exchange.pipeline.statements import DecisionRecord, StatementError

    payload = _decision_payload()
    record = DecisionRecord.from_payload(payload)
    assert record.to_payload() == payload
    assert parse_entry("pipeline.decision", payload) == record.to_entry()
    with pytest.raises(StatementError, match="min_cohort"):
        DecisionRecord.from_payload({**payload, "min_cohort": True})
    with pytest.raises(StatementError, match="request_sha256"):
        DecisionRecord.from_payload({**payload, "request_sha256": "0" * 64})


def _decision_payload() -> dict[str, Any]:
    from consent import Operation, Purpose
    from exchange.pipeline.request import ComputeRequest, EngineName, Parameters

    request = ComputeRequest(
        purpose=Purpose.BENCHMARKING,
        operation=Operation.MEAN,
        fields=("energy_kwh",),
        datasets=("a.energy", "b.energy"),
        parameters=Parameters(length=2, epsilon=0.5),
    )
    key = base64.b64encode(_SIGNER.public_key.raw).decode()
    return {
        "job_id": "job_" + "1" * 32,
        "requester": "sb-lb",
        "request": request.to_dict(),
        "request_sha256": request.digest(),
        "engine": EngineName.HE.value,
        "policy_version": "f" * 64,
        "participants": [
            {
                "enterprise": name,
                "dataset": f"{name}.energy",
                "consent_id": f"consent-{name}",
                "receipt_sha256": "e" * 64,
                "min_cohort": 2,
                "public_key": key,
            }
            for name in ("a", "b")
        ],
        "left_out": [{"owner": "c", "reason": "no consent"}],
        "min_cohort": 2,
        "decided_at": "2026-12-02T08:00:00.000000Z",
        "deadline": "2026-12-02T08:02:00.000000Z",
    }


# -- a real deployment's ledger ----------------------------------------------------------------


@pytest.fixture(scope="module")
def real_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    """A deployment that did a bit of everything, through the real services; its entries."""
    from tests.edge_tls.conftest import csr_for, make_pki, new_key
    from tests.exchange.pipeline.conftest import LB, World

    work = tmp_path_factory.mktemp("typed")
    pki = make_pki(work)
    runtime = pki.runtime
    try:
        world = World(runtime, work)
        from exchange.identities import Role

        world.tokens["sb-lb"] = runtime.identities.create("sb-lb", Role.SUBBRAIN, industry=LB).token
        names = ("e1", "e2", "e3")
        for name in names:
            world.enterprise(name)
            world.consent(name)
        created = world.submit(datasets=[f"{n}.energy" for n in names], parameters={"length": 2})
        job_id = created["job_id"]
        assert world.wait_state(job_id, ["collecting"])["state"] == "collecting"
        for name, values in zip(names, ([1.0, 2.0], [3.0, 4.0], [5.5, 6.0]), strict=True):
            [task] = world.tasks(name)
            world.post_answer(name, job_id, world.he_body(name, task, values))
        assert world.wait_state(job_id, ["released", "failed"])["state"] == "released"
        refused = world.submit(datasets=[f"{n}.energy" for n in names])
        assert world.wait_state(refused["job_id"], ["collecting"])["state"] == "collecting"
        world.post_answer(
            "e1", refused["job_id"], world.refusal_body("e1", refused["job_id"]), "refusals"
        )
        world.revoke("e2")

        edge = runtime.edge_pki
        now = utcnow()
        from edge_tls import DeviceId

        token = edge.create_token(
            DeviceId(pki.enterprise, "meter-1"), actor=pki.enterprise, now=now
        )
        issued = edge.enroll(
            "meter-1",
            token.token,
            csr_for(new_key(), "meter-1").public_bytes(Encoding.DER),
            now=now,
        )
        peer = edge.authenticate(issued.certificate.public_bytes(Encoding.DER), now=utcnow())
        renewed = edge.reenroll(
            peer, csr_for(new_key(), "meter-1").public_bytes(Encoding.DER), now=utcnow()
        )
        peer = edge.authenticate(renewed.certificate.public_bytes(Encoding.DER), now=utcnow())
        sealing = bytes(PrivateKey.generate().public_key)
        runtime.edge_readings.store(peer, seal_batch(b'{"kwh": 1}', sealing), now=utcnow())
        edge.revoke(renewed.serial, RevocationReason.KEY_COMPROMISE, actor="officer", now=utcnow())
        edge.issue_server_certificate(("edge.test.localhost",), now=utcnow())
        runtime.ledger.record(
            Alert("row.mismatch", Severity.WARNING, "e2", "a test alert", (1,)).event("exchange")
        )
        yield runtime.ledger.entries(0, runtime.ledger.size())
    finally:
        runtime.close()


def test_every_entry_of_a_real_run_parses(real_ledger: list[Any]) -> None:
    problems = []
    seen = set()
    for entry in real_ledger:
        seen.add(entry.type)
        try:
            parsed = parse_entry(entry.type, entry.payload)
        except (UnknownEntryTypeError, EntryPayloadError) as exc:
            problems.append(f"#{entry.index} {exc}")
            continue
        stated = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
        if canonical_bytes(stated) != canonical_bytes(entry.payload):
            problems.append(f"#{entry.index} {entry.type}: the model does not restate the payload")
    assert problems == []
    expected = {
        "authz.decision",
        "consent.grant",
        "consent.revoke",
        "dataset.register",
        "edge.ca.init",
        "edge.certificate.issue",
        "edge.certificate.renew",
        "edge.certificate.revoke",
        "edge.readings.upload",
        "edge.token.create",
        "identity.create",
        "mpc.key.decrypt",
        "mpc.key.generate",
        "pipeline.contribution",
        "pipeline.decision",
        "pipeline.job",
        "pipeline.refusal",
        "pipeline.result",
        "audit.alert",
    }
    assert expected <= seen, sorted(expected - seen)


def test_an_operator_note_cannot_take_a_typed_entrys_name() -> None:
    """``ibx ledger append`` refuses every family a package writes: an operator cannot append a
    well-shaped ``pipeline.result`` or ``audit.alert`` of their own."""
    from exchange.cli.ledger import RESERVED_TYPES

    assert all(name.startswith(RESERVED_TYPES) for name in ENTRY_TYPES)
