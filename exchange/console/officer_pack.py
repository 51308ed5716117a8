"""A policy pack as the officer's pages edit and compare it.

The pack's wire form is the API's (``GET /v1/policies/{ref}/source``, ``POST
/v1/policies``): ``model``, ``lines``, ``modules``, ``data``, ``requests``.
Its version hash is the SHA-256 of that object's RFC 8785 form, computed here
only so the proposal's statement names it; the exchange computes it again and
refuses a duty on any other hash. ``policy.csv`` text is read as ``ibx policy
propose`` reads it (``#`` comments and blank lines skipped, fields split on
commas); every other check is the exchange's.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from core.canonical import canonical_sha256
from core.errors import CanonicalJsonError

__all__ = [
    "PACK_FIELDS",
    "DiffLine",
    "PackError",
    "csv_text",
    "pack_from_form",
    "pack_hash",
    "side_by_side",
]

PACK_FIELDS: Final = ("model", "lines", "modules", "data", "requests")


class PackError(ValueError):
    """The form does not make a pack (the message names the field)."""


def csv_text(lines: Sequence[Sequence[str]]) -> str:
    """Casbin lines as ``policy.csv`` text, one line each."""
    return "".join(", ".join(line) + "\n" for line in lines)


def _lines(text: str) -> list[list[str]]:
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        tokens = [token.strip() for token in stripped.split(",")]
        if any(not token for token in tokens):
            raise PackError(f"policy.csv line {number}: an empty field")
        lines.append(tokens)
    return lines


def _json(text: str, what: str, kind: type) -> Any:
    try:
        value = json.loads(text or ("{}" if kind is dict else "[]"))
    except ValueError as exc:
        raise PackError(f"{what}: not JSON ({exc})") from exc
    if not isinstance(value, kind):
        raise PackError(f"{what}: must be a JSON {'object' if kind is dict else 'list'}")
    return value


def pack_from_form(
    *,
    model: str,
    casbin: str,
    modules: Sequence[tuple[str, str]],
    data: str,
    requests: str,
) -> dict[str, Any]:
    """The pack the propose form describes (modules without a name and text are left out).

    Raises:
        PackError: a field cannot be read.
    """
    named: dict[str, str] = {}
    for raw_name, raw_source in modules:
        name, source = raw_name.strip(), raw_source.replace("\r\n", "\n")
        if not name and not source.strip():
            continue
        if not name.endswith(".rego") or "/" in name or not source.strip():
            raise PackError(f"Rego module {name or '(unnamed)'}: a NAME.rego and its text")
        if name in named:
            raise PackError(f"Rego module {name}: named twice")
        named[name] = source
    return {
        "model": model.replace("\r\n", "\n"),
        "lines": _lines(casbin),
        "modules": named,
        "data": _json(data, "data.json", dict),
        "requests": _json(requests, "requests.json", list),
    }


def pack_hash(pack: Mapping[str, Any]) -> str:
    """The version hash the exchange will give ``pack``.

    Raises:
        PackError: the pack holds a value canonical JSON cannot encode.
    """
    try:
        return canonical_sha256({key: pack[key] for key in PACK_FIELDS}).hex()
    except CanonicalJsonError as exc:
        raise PackError(str(exc)) from exc


@dataclass(frozen=True)
class DiffLine:
    """One row of a side-by-side diff: each side's line number and text (None: no line)."""

    kind: str
    """``same``, ``del`` (left only), ``add`` (right only), ``change``, or ``skip``: a run of
    unchanged lines left out (``left_no``/``right_no`` its first lines, ``left`` its length)."""
    left_no: int | None
    left: str | None
    right_no: int | None
    right: str | None


def side_by_side(
    left: Sequence[str], right: Sequence[str], *, context: int | None = None
) -> list[DiffLine]:
    """Rows pairing ``left`` and ``right`` line by line, changed lines marked; with
    ``context``, unchanged runs longer than that many lines around a change are folded
    into one ``skip`` row."""
    rows = _pair(left, right)
    return rows if context is None else _fold(rows, context)


def _fold(rows: list[DiffLine], context: int) -> list[DiffLine]:
    near = [False] * len(rows)
    for index, row in enumerate(rows):
        if row.kind != "same":
            for k in range(max(0, index - context), min(len(rows), index + context + 1)):
                near[k] = True
    folded: list[DiffLine] = []
    index = 0
    while index < len(rows):
        if near[index] or rows[index].kind != "same":
            folded.append(rows[index])
            index += 1
            continue
        end = index
        while end < len(rows) and not near[end]:
            end += 1
        first = rows[index]
        folded.append(DiffLine("skip", first.left_no, str(end - index), first.right_no, None))
        index = end
    return folded


def _pair(left: Sequence[str], right: Sequence[str]) -> list[DiffLine]:
    rows: list[DiffLine] = []
    matcher = difflib.SequenceMatcher(a=list(left), b=list(right), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows += [
                DiffLine("same", i + 1, left[i], j + 1, right[j])
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            ]
            continue
        span = max(i2 - i1, j2 - j1)
        for k in range(span):
            i, j = i1 + k, j1 + k
            has_left, has_right = i < i2, j < j2
            kind = "change" if has_left and has_right else ("del" if has_left else "add")
            rows.append(
                DiffLine(
                    kind,
                    i + 1 if has_left else None,
                    left[i] if has_left else None,
                    j + 1 if has_right else None,
                    right[j] if has_right else None,
                )
            )
    return rows
