"""A Rego module's parsed syntax tree, as rego-cpp itself parses it.

regopy has no AST API and no ``rego.parse_module`` built-in. What it has is a
debug mode in which rego-cpp writes the tree after every compiler pass to a
directory. :func:`parse_module` adds one module to a fresh interpreter in that
mode and reads the tree of the last *parsing* pass (``*_structure.trieste``:
packages, imports, rules, literals, calls, refs, ``with`` modifiers — before any
rewriting), so the checks in :mod:`policies._rego_check` judge exactly what the
evaluator will run, never the text (a string or a comment that reads
``opa.runtime()`` is a string or a comment).

The file is a trieste S-expression::

    (rego-var |17|4:rego)           kind, |byte offset|byte length, :token text
    (rego-module 6:t.rego|0|130 …)  a length-prefixed origin before the location
    (rego-version 2:v1)             length-prefixed text, no location
    { v = rego-import }             a symbol table (skipped)

Token text is read by its byte length, so strings holding parentheses,
newlines or quotes cannot confuse the reader. Anything unexpected raises
:class:`RegoAstError`, and the caller refuses the module (fail closed).

Runs only in the sandbox child: parsing officer-supplied Rego is evaluating it,
and in a process that has loaded TenSEAL, rego-cpp's debug mode aborts (double
free), while the child loads regopy alone.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import regopy

__all__ = ["AstNode", "RegoAstError", "parse_module", "parse_trieste"]

logger = logging.getLogger(__name__)

_PREFIX = "rego-"
_STRUCTURE_SUFFIX = "_structure.trieste"


class RegoAstError(ValueError):
    """The debug tree could not be read (the module is then refused)."""


@dataclass(frozen=True)
class AstNode:
    """One node: its kind (``exprcall``, ``ref``, ``var``…), where it is, its token text.

    Raises:
        RegoAstError: a node without a kind.
    """

    kind: str
    offset: int | None
    length: int | None
    text: str | None
    children: tuple[AstNode, ...]

    def __post_init__(self) -> None:
        if not self.kind:
            raise RegoAstError("a node without a kind")

    def walk(self) -> Iterator[AstNode]:
        """This node and every node below it, depth first, in source order."""
        yield self
        for child in self.children:
            yield from child.walk()

    def first(self, kind: str) -> AstNode | None:
        """The first node of ``kind`` at or below this one, or None."""
        return next((n for n in self.walk() if n.kind == kind), None)

    def child(self, kind: str) -> AstNode | None:
        """The first direct child of ``kind``, or None."""
        return next((c for c in self.children if c.kind == kind), None)


class _Reader:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.pos = 0

    def fail(self, what: str) -> RegoAstError:
        return RegoAstError(f"unexpected debug tree at byte {self.pos}: {what}")

    def peek(self) -> int:
        if self.pos >= len(self.raw):
            raise self.fail("end of file")
        return self.raw[self.pos]

    def skip_space(self) -> None:
        while self.pos < len(self.raw) and self.raw[self.pos] in b" \t\r\n":
            self.pos += 1

    def number(self) -> int:
        start = self.pos
        while self.pos < len(self.raw) and 48 <= self.raw[self.pos] <= 57:
            self.pos += 1
        if start == self.pos:
            raise self.fail("a number")
        return int(self.raw[start : self.pos])

    def take(self, count: int) -> str:
        if self.pos + count > len(self.raw):
            raise self.fail("text past the end")
        chunk = self.raw[self.pos : self.pos + count]
        self.pos += count
        return chunk.decode("utf-8", errors="replace")

    def symbol_table(self) -> None:
        depth = 0
        while True:
            byte = self.peek()
            self.pos += 1
            if byte == ord("{"):
                depth += 1
            elif byte == ord("}"):
                depth -= 1
                if depth == 0:
                    return

    def node(self) -> AstNode:
        if self.peek() != ord("("):
            raise self.fail("'('")
        self.pos += 1
        start = self.pos
        while self.pos < len(self.raw) and self.raw[self.pos] not in b" \t\r\n()":
            self.pos += 1
        kind = self.raw[start : self.pos].decode("ascii", errors="replace").removeprefix(_PREFIX)
        offset: int | None = None
        length: int | None = None
        text: str | None = None
        if self.peek() == ord(" "):
            self.pos += 1
            if 48 <= self.peek() <= 57:  # length-prefixed text (or the origin)
                size = self.number()
                if self.peek() != ord(":"):
                    raise self.fail("':' after a length")
                self.pos += 1
                text = self.take(size)
            if self.peek() == ord("|"):
                self.pos += 1
                offset = self.number()
                if self.peek() != ord("|"):
                    raise self.fail("'|' between offset and length")
                self.pos += 1
                length = self.number()
                text = None  # what came before was the origin
                if self.peek() == ord(":"):
                    self.pos += 1
                    text = self.take(length)
        children: list[AstNode] = []
        while True:
            self.skip_space()
            byte = self.peek()
            if byte == ord(")"):
                self.pos += 1
                return AstNode(kind, offset, length, text, tuple(children))
            if byte == ord("{"):
                self.symbol_table()
            elif byte == ord("("):
                children.append(self.node())
            else:
                raise self.fail(f"{chr(byte)!r}")


def parse_trieste(raw: bytes) -> AstNode:
    """The tree in a trieste debug file (its pass-name header lines skipped).

    Raises:
        RegoAstError: the file is not a tree this reader understands.
    """
    start = raw.find(b"\n(")
    if start < 0:
        raise RegoAstError("no tree in the debug file")
    reader = _Reader(raw)
    reader.pos = start + 1
    tree = reader.node()
    reader.skip_space()
    if reader.pos != len(raw):
        raise reader.fail("text after the tree")
    return tree


def parse_module(source: str) -> AstNode:
    """The ``module`` node of ``source`` as rego-cpp parses it.

    Raises:
        regopy.RegoError: the module does not parse (the caller locates the error).
        RegoAstError: the parser's tree could not be read.
    """
    with tempfile.TemporaryDirectory(prefix="ibx-rego-ast-") as work:
        interpreter = regopy.Interpreter()
        interpreter.debug_enabled = True
        interpreter.set_debug_path(work)
        interpreter.add_module("module.rego", source)
        passes = sorted((Path(work) / "module0").glob(f"*{_STRUCTURE_SUFFIX}"))
        if not passes:
            raise RegoAstError("rego-cpp wrote no parse tree")
        tree = parse_trieste(passes[-1].read_bytes())
    module = tree.first("module")
    if module is None:
        raise RegoAstError("the parse tree has no module")
    return module
