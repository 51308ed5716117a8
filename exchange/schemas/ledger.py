"""``/v1/ledger`` at the HTTP edge: proofs out (entries are served as their stored bytes)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ENTRY_PAGE_SCHEMA", "ConsistencyProofPublic", "InclusionProofPublic"]


class InclusionProofPublic(BaseModel):
    """RFC 9162 inclusion proof of the entry at ``index`` in the tree of ``tree_size``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "index": 3,
                    "tree_size": 5,
                    "hashes": [
                        "a4ayc/80/OGda4BO/1o/V0etpOqiLx1JwB5S3beHW0s=",
                        "1HNeOiZeFu7gP1lxi5tdAwGcB9i2xR+Q2jpmbuwTqzU=",
                        "TgdAhWK+24tgzgXB3s/jrRa3IjCWfeAfZAt+Rym0n84=",
                    ],
                }
            ]
        }
    )

    index: int = Field(ge=0)
    tree_size: int = Field(ge=1)
    hashes: list[str] = Field(description="base64 SHA-256 node hashes, leaf level first")


class ConsistencyProofPublic(BaseModel):
    """RFC 9162 consistency proof from tree size ``first`` to ``second``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "first": 2,
                    "second": 5,
                    "hashes": [
                        "SyJ3d9TdH8Ycb4hPSGQdArTRIdP9Moywi1Ux/Kzav4o=",
                        "TgdAhWK+24tgzgXB3s/jrRa3IjCWfeAfZAt+Rym0n84=",
                    ],
                }
            ]
        }
    )

    first: int = Field(ge=1)
    second: int = Field(ge=1)
    hashes: list[str] = Field(description="base64 SHA-256 node hashes (RFC 9162 §2.1.4)")


ENTRY_PAGE_SCHEMA: dict[str, object] = {
    "type": "object",
    "required": ["entries", "next", "scope"],
    "properties": {
        "entries": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["entry", "index"],
                "properties": {
                    "entry": {
                        "type": "object",
                        "description": "the stored RFC 8785 leaf input, byte for byte: its "
                        "leaf hash is SHA-256(0x00 || entry)",
                        "required": ["actor", "index", "payload", "time", "type"],
                        "properties": {
                            "actor": {"type": "string"},
                            "index": {"type": "integer", "minimum": 0},
                            "payload": {"type": "object"},
                            "time": {"type": "string", "format": "date-time"},
                            "type": {"type": "string"},
                        },
                    },
                    "index": {"type": "integer", "minimum": 0},
                },
            },
        },
        "next": {
            "type": ["integer", "null"],
            "minimum": 1,
            "description": "the start of the next page; null when this page reaches the end",
        },
        "scope": {
            "type": "string",
            "enum": ["all", "own"],
            "description": "own: only the entries of the range that concern the caller",
        },
    },
}
"""The JSON Schema of a page of ``GET /v1/ledger/entries`` (written by hand: the route
writes the stored bytes, not a model)."""
