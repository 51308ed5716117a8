"""HTTP models of the catalog routes: registering a dataset and reading its metadata.

Metadata only: a dataset's values never reach the exchange. The domain rules
(id and field syntax, one registration per id) stay in :mod:`consent`; these
models bound sizes and document the shapes.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from consent import Classification, Dataset
from core.clock import format_rfc3339

__all__ = ["DatasetCreate", "DatasetPublic"]


class DatasetCreate(BaseModel):
    """An enterprise registers one of its datasets (the caller is its owner)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "dataset_id": "cathode-co.energy",
                    "fields": ["energy_kwh", "output_units"],
                    "classification": "important",
                    "description": "monthly energy use per production line",
                }
            ]
        },
    )

    dataset_id: str = Field(
        ...,
        min_length=1,
        max_length=128,
        description="1-128 letters, digits or . _ @ -, starting with a letter or digit",
    )
    fields: list[str] = Field(
        ..., min_length=1, max_length=256, description="field names (identifiers), each once"
    )
    classification: Classification = Field(
        Classification.GENERAL, description="general, important or core data"
    )
    description: str | None = Field(None, max_length=2000, description="free text")


class DatasetPublic(BaseModel):
    """A catalog entry: who owns a dataset, its fields and classification."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "dataset_id": "cathode-co.energy",
                    "owner": "cathode-co",
                    "fields": ["energy_kwh", "output_units"],
                    "classification": "important",
                    "description": None,
                    "created_at": "2026-11-25T08:00:00.000000Z",
                }
            ]
        },
    )

    dataset_id: str
    owner: str
    """The enterprise that registered it."""
    fields: list[str]
    classification: Classification
    description: str | None
    created_at: str
    """RFC 3339, UTC, with microseconds."""

    @classmethod
    def of(cls, dataset: Dataset) -> DatasetPublic:
        """The public form of a catalog entry."""
        return cls(
            dataset_id=dataset.dataset_id,
            owner=dataset.owner,
            fields=list(dataset.fields),
            classification=dataset.classification,
            description=dataset.description,
            created_at=format_rfc3339(dataset.created_at),
        )
