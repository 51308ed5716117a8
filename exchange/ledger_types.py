"""The registry of every ledger entry type: type → the pydantic model of its payload.

Each package that writes ledger entries declares their payloads as models in
its own ``entries`` module (``docs/audit.md``, "Typed entries") and exports
them as ``ENTRY_TYPES``; this module, in the composition root, gathers them
into :data:`ENTRY_TYPES` and hands them to ``audit`` (which may import none of
those packages). :func:`parse_entry` parses a payload strictly, as JSON (no
number from a string, no integer from a boolean, no unknown member).

The JSON Schema (2020-12) of each type is published under
``docs/schemas/ledger/<type>.json`` with a ``README.md`` table::

    python -m exchange.ledger_types --write docs/schemas/ledger
    python -m exchange.ledger_types --check docs/schemas/ledger   # exit 1 on drift
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from pydantic import BaseModel, ValidationError

import consent
import edge_tls
import mpc
import policies
from core.canonical import JsonValue
from core.errors import IbxError
from exchange import entries as exchange_entries
from exchange import identity_entries, witness_entries
from exchange.pipeline import entries as pipeline_entries

__all__ = [
    "ENTRY_PARSERS",
    "ENTRY_TYPES",
    "JSON_SCHEMA_DIALECT",
    "WRITERS",
    "EntryParser",
    "EntryPayloadError",
    "LedgerTypeError",
    "UnknownEntryTypeError",
    "check_schemas",
    "entry_schema",
    "parse_entry",
    "registry",
    "write_schemas",
]

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
_README: Final = "README.md"

_SOURCES: Final[tuple[tuple[str, Sequence[type[BaseModel]]], ...]] = (
    ("consent", consent.ENTRY_TYPES),
    ("policies", policies.ENTRY_TYPES),
    ("mpc", mpc.ENTRY_TYPES),
    ("edge_tls", edge_tls.ENTRY_TYPES),
    ("exchange", identity_entries.ENTRY_TYPES),
    ("exchange", exchange_entries.ENTRY_TYPES),
    ("exchange", witness_entries.ENTRY_TYPES),
    ("exchange.pipeline", pipeline_entries.ENTRY_TYPES),
)
"""Every package's declared entry models, with the package that writes them."""


class LedgerTypeError(IbxError, ValueError):
    """An entry that no registered model accepts (a ``ValueError``, as pydantic's errors are).

    Tree::

        LedgerTypeError
        ├── UnknownEntryTypeError   no package declares the entry type
        └── EntryPayloadError       the payload does not parse through its model
    """

    title = "ledger entry of no declared shape"

    def __init__(self, message: str, *, entry_type: str) -> None:
        super().__init__(message)
        self.entry_type = entry_type


class UnknownEntryTypeError(LedgerTypeError):
    """No package declares this entry type."""


class EntryPayloadError(LedgerTypeError):
    """The payload does not parse through its type's model (``problems``: what and where)."""

    def __init__(self, message: str, *, entry_type: str, problems: tuple[str, ...]) -> None:
        super().__init__(message, entry_type=entry_type)
        self.problems = problems


def registry(
    sources: Iterable[tuple[str, Sequence[type[BaseModel]]]],
) -> Mapping[str, type[BaseModel]]:
    """Entry type → model, from ``(package, models)`` pairs.

    Raises:
        ValueError: a model without a ``TYPE``, or two models for one type.
    """
    out: dict[str, type[BaseModel]] = {}
    for package, models in sources:
        for model in models:
            entry_type = getattr(model, "TYPE", None)
            if not isinstance(entry_type, str) or not entry_type:
                raise ValueError(f"{package}: {model.__qualname__} declares no TYPE")
            if entry_type in out:
                raise ValueError(
                    f"entry type {entry_type!r} is declared twice: by "
                    f"{out[entry_type].__module__}.{out[entry_type].__qualname__} and "
                    f"{model.__module__}.{model.__qualname__}"
                )
            out[entry_type] = model
    return MappingProxyType(dict(sorted(out.items())))


ENTRY_TYPES: Final[Mapping[str, type[BaseModel]]] = registry(_SOURCES)
"""Every ledger entry type → the model of its payload (sorted by type)."""

_PACKAGE_OF: Final = {model: package for package, models in _SOURCES for model in models}
WRITERS: Final[Mapping[str, str]] = MappingProxyType(
    {entry_type: _PACKAGE_OF[model] for entry_type, model in ENTRY_TYPES.items()}
)
"""Entry type → the package that writes it."""


def parse_entry(entry_type: str, payload: Mapping[str, JsonValue]) -> BaseModel:
    """``payload`` parsed through the model of ``entry_type``, strictly, as JSON.

    Raises:
        UnknownEntryTypeError: no package declares ``entry_type``.
        EntryPayloadError: the payload does not parse (missing, unknown or
            ill-typed members; a value its model refuses).
    """
    model = ENTRY_TYPES.get(entry_type)
    if model is None:
        raise UnknownEntryTypeError(
            f"entry type {entry_type!r} is declared by no package", entry_type=entry_type
        )
    return _parse_payload(entry_type, model, payload)


def _parse_payload(
    entry_type: str, model: type[BaseModel], payload: Mapping[str, JsonValue]
) -> BaseModel:
    try:
        text = json.dumps(dict(payload), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EntryPayloadError(
            f"the {entry_type} payload is not JSON: {exc}",
            entry_type=entry_type,
            problems=(str(exc),),
        ) from exc
    try:
        return model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise _payload_error(entry_type, exc) from exc


class EntryParser:
    """The parser of one entry type's payload, as ``audit``'s verifier takes it.

    Called with a decoded payload it is :func:`parse_entry`;
    :meth:`parse_json` parses the payload's JSON text as it stands (the bytes
    sliced from a stored leaf), strictly, without decoding and re-encoding it
    first: the same strict JSON parse, one step shorter.
    """

    __slots__ = ("_model", "_validator", "entry_type")

    def __init__(self, entry_type: str, model: type[BaseModel]) -> None:
        self.entry_type = entry_type
        self._model = model
        self._validator = model.__pydantic_validator__

    def __call__(self, payload: Mapping[str, JsonValue]) -> BaseModel:
        """:func:`parse_entry` of this type.

        Raises:
            EntryPayloadError: the payload does not parse.
        """
        return _parse_payload(self.entry_type, self._model, payload)

    def parse_json(self, text: str | bytes) -> BaseModel:
        """The payload's JSON text parsed strictly through this type's model.

        Raises:
            EntryPayloadError: not JSON, or the payload does not parse.
        """
        try:
            typed: BaseModel = self._validator.validate_json(text, strict=True)
        except ValidationError as exc:
            raise _payload_error(self.entry_type, exc) from exc
        return typed

    def __repr__(self) -> str:
        return f"parse_entry[{self.entry_type}]"


def _payload_error(entry_type: str, exc: ValidationError) -> EntryPayloadError:
    problems = tuple(
        f"{'.'.join(str(p) for p in error['loc']) or '(payload)'}: {error['msg']}"
        for error in exc.errors()
    )
    return EntryPayloadError(
        f"the {entry_type} payload does not parse: {'; '.join(problems)}",
        entry_type=entry_type,
        problems=problems,
    )


ENTRY_PARSERS: Final[Mapping[str, EntryParser]] = MappingProxyType(
    {entry_type: EntryParser(entry_type, model) for entry_type, model in ENTRY_TYPES.items()}
)
"""Entry type → :func:`parse_entry` for it (what ``audit``'s verifier takes; each
raises :class:`EntryPayloadError`, a ``ValueError``, and parses JSON text too:
:meth:`EntryParser.parse_json`)."""


# -- published schemas -----------------------------------------------------------------


def entry_schema(entry_type: str) -> dict[str, Any]:
    """The JSON Schema (2020-12) of ``entry_type``'s payload; ``$id`` and ``title`` the type.

    Raises:
        UnknownEntryTypeError: no package declares ``entry_type``.
    """
    model = ENTRY_TYPES.get(entry_type)
    if model is None:
        raise UnknownEntryTypeError(
            f"entry type {entry_type!r} is declared by no package", entry_type=entry_type
        )
    schema: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": entry_type,
        **model.model_json_schema(),
    }
    schema["title"] = entry_type
    return schema


def _schema_text(entry_type: str) -> str:
    return json.dumps(entry_schema(entry_type), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _summary(model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip().split("\n\n")[0]
    line = " ".join(doc.split())
    _, _, what = line.partition(": ")
    return (what or line).replace("|", "\\|")


def _readme_text() -> str:
    lines = [
        "# Ledger entry types",
        "",
        "The JSON Schema (2020-12) of every ledger entry's payload, one file per entry",
        "type (`<type>.json`), generated from the models each writing package declares",
        'in its `entries` module (`docs/audit.md`, "Typed entries"). Regenerate with',
        "`python -m exchange.ledger_types --write docs/schemas/ledger`; a test fails when",
        "these files drift from the models. `ibx audit verify` parses every entry through",
        "its model: an unknown type or a payload that does not parse is a finding.",
        "",
        "| type | writer | what it records |",
        "|---|---|---|",
    ]
    for entry_type, model in ENTRY_TYPES.items():
        lines.append(
            f"| [`{entry_type}`]({entry_type}.json) | `{WRITERS[entry_type]}` | {_summary(model)} |"
        )
    return "\n".join(lines) + "\n"


def _expected_files() -> dict[str, str]:
    files = {f"{entry_type}.json": _schema_text(entry_type) for entry_type in ENTRY_TYPES}
    files[_README] = _readme_text()
    return files


def write_schemas(directory: Path) -> list[str]:
    """Write every schema and the README table into ``directory``; remove stale schemas.

    Returns the names of the files written or removed.

    Raises:
        OSError: the directory cannot be written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    expected = _expected_files()
    changed: list[str] = []
    for name, text in expected.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    for path in sorted(directory.glob("*.json")):
        if path.name not in expected:
            path.unlink()
            changed.append(path.name)
    return changed


def check_schemas(directory: Path) -> list[str]:
    """What differs between ``directory`` and the models: one line per file (empty: none).

    Raises:
        OSError: the directory cannot be read.
    """
    expected = _expected_files()
    drift: list[str] = []
    for name, text in expected.items():
        path = directory / name
        if not path.exists():
            drift.append(f"{name}: missing")
        elif path.read_text(encoding="utf-8") != text:
            drift.append(f"{name}: differs from the models")
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            if path.name not in expected:
                drift.append(f"{path.name}: no package declares this type")
    return drift


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m exchange.ledger_types (--write | --check) DIR``; exit 1 on drift, 2 on usage."""
    parser = argparse.ArgumentParser(
        prog="python -m exchange.ledger_types",
        description="Publish or check the JSON Schemas of the ledger entry types.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="DIR", type=Path, help="write the schemas into DIR")
    mode.add_argument("--check", metavar="DIR", type=Path, help="exit 1 if DIR has drifted")
    args = parser.parse_args(argv)
    if args.write is not None:
        changed = write_schemas(args.write)
        print(f"{len(ENTRY_TYPES)} entry types; {len(changed)} file(s) written or removed")
        return 0
    drift = check_schemas(args.check)
    for line in drift:
        print(f"drift: {args.check / line}", file=sys.stderr)
    if drift:
        print(
            "the published ledger schemas differ from the models; run "
            f"python -m exchange.ledger_types --write {args.check}",
            file=sys.stderr,
        )
        return 1
    print(f"ok: {len(ENTRY_TYPES)} entry type schemas match the models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
