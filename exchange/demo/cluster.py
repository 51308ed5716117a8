"""The demo's lithium-battery industry cluster: five fictional plants and their months.

Every name here is invented (no real enterprise, supplier or place is meant);
the figures are synthetic but plausible for cell plants of 1-3 GWh a month:
output in GWh and in millions of cells, electricity used, the energy
intensity that follows (kWh of electricity per kWh of cells made), the yield
of the formation line, and each month's main material supplier. They are
drawn from a fixed seed, so every run tells the same story.

One plant (:data:`EDGE_PLANT`) has no spreadsheet for the figures: the
meter on its formation line (an edge terminal) uploads them, and its agent
reads them from the sealed edge readings.
"""

from __future__ import annotations

import csv
import random
import sqlite3
import statistics
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CORE_DATASET",
    "EDGE_DEVICE",
    "EDGE_PLANT",
    "FIGURES",
    "INDUSTRY",
    "MONTHS",
    "PLANTS",
    "Month",
    "PlantProfile",
    "annual_intensity",
    "columns_of",
    "months_of",
    "shared_suppliers",
    "write_csv",
    "write_sqlite",
]

INDUSTRY = "lithium-battery"
MONTHS = tuple(f"2025-{m:02d}" for m in range(1, 13))
FIGURES = ("output_gwh", "cells_million", "energy_mwh", "kwh_per_kwh", "yield_pct")
"""The numeric fields every plant registers (the edge plant's meter measures these too)."""

_SUPPLIERS = (
    "衡岳正极 Hengyue Cathode",
    "北川锂盐 Beichuan Lithium Salts",
    "石墨湾负极 Shimowan Anode",
    "云纱隔膜 Yunsha Separator",
    "清泉电解液 Qingquan Electrolyte",
    "金箔铜业 Jinbo Copper Foil",
    "南岭钴镍 Nanling Cobalt-Nickel",
    "白沙粘结剂 Baisha Binder",
)
"""Fictional material suppliers; plants share some of them (what the PSI match counts)."""


@dataclass(frozen=True)
class PlantProfile:
    """A fictional plant: its identity name, its names for the story, and its scale."""

    name: str
    chinese: str
    english: str
    capacity_gwh: float
    intensity: float
    yield_pct: float
    suppliers: tuple[int, ...]
    sqlite: bool = False

    @property
    def title(self) -> str:
        """``青川锂能 (Qingchuan Lineng)``."""
        return f"{self.chinese} ({self.english})"

    @property
    def dataset(self) -> str:
        """The id of the plant's monthly dataset."""
        return f"{self.name}.monthly"

    def fields(self, *, edge: bool) -> tuple[str, ...]:
        """The fields the plant registers (a meter knows no suppliers)."""
        return FIGURES if edge else (*FIGURES, "supplier")


PLANTS: tuple[PlantProfile, ...] = (
    PlantProfile("qingchuan-lineng", "青川锂能", "Qingchuan Lineng", 2.4, 31.0, 94.1, (0, 2, 3, 4)),
    PlantProfile("lanjiang-cells", "澜江电芯", "Lanjiang Cells", 1.6, 36.5, 92.3, (0, 2, 5, 7),
                 sqlite=True),
    PlantProfile("xinghe-storage", "星禾储能", "Xinghe Storage", 1.1, 41.8, 90.6, (1, 2, 3, 6)),
    PlantProfile("yunling-power", "云岭动力", "Yunling Power", 2.9, 28.4, 95.0, (0, 2, 3, 5),
                 sqlite=True),
    PlantProfile("shimen-battery", "石门电池", "Shimen Battery", 1.8, 34.2, 93.4, (0, 1, 2, 4)),
)  # fmt: skip
"""The cluster. Each plant's figures are its own; only computed results leave it."""

EDGE_PLANT = PLANTS[2]
"""The plant whose formation-line meter uploads its monthly figures."""
EDGE_DEVICE = "formation-meter-1"
CORE_DATASET = f"{PLANTS[0].name}.recipes"
"""A plant's electrolyte recipes: core data (核心数据), registered but never consented."""


@dataclass(frozen=True)
class Month:
    """One plant's figures for one month."""

    month: str
    output_gwh: float
    cells_million: float
    energy_mwh: float
    yield_pct: float
    supplier: str

    @property
    def kwh_per_kwh(self) -> float:
        """Electricity per unit of cell capacity made: MWh / (GWh x 1000)."""
        return round(self.energy_mwh / (self.output_gwh * 1000), 3)

    def row(self, columns: Sequence[str]) -> tuple[object, ...]:
        """The month's values of ``columns`` (``month``, a figure or ``supplier``)."""
        return tuple(getattr(self, c) for c in columns)


def months_of(plant: PlantProfile) -> tuple[Month, ...]:
    """The plant's twelve months, the same on every run (a seed per plant)."""
    draw = random.Random(plant.name)  # noqa: S311 - synthetic figures, not a secret
    out = []
    for i, month in enumerate(MONTHS):
        season = 1.0 + 0.06 * (1 if i in (2, 3, 8, 9, 10) else -1 if i in (0, 1) else 0)
        output = round(plant.capacity_gwh * season * draw.uniform(0.93, 1.04), 3)
        intensity = plant.intensity * draw.uniform(0.95, 1.06) * (1.04 if i in (0, 11) else 1.0)
        supplier = _SUPPLIERS[plant.suppliers[i % len(plant.suppliers)]]
        out.append(
            Month(
                month=month,
                output_gwh=output,
                cells_million=round(output * 1e6 / 0.185 / 1e6, 2),  # ~185 Wh a cell
                energy_mwh=round(output * 1000 * intensity, 1),
                yield_pct=round(min(99.0, plant.yield_pct + draw.uniform(-1.2, 1.0)), 2),
                supplier=supplier,
            )
        )
    return tuple(out)


def annual_intensity(plant: PlantProfile) -> float:
    """The mean of the plant's monthly energy intensity (what its agent contributes)."""
    return statistics.fmean(m.kwh_per_kwh for m in months_of(plant))


def columns_of(*, edge: bool) -> tuple[str, ...]:
    """The columns of a plant's file (or of its meter's readings)."""
    return ("month", *FIGURES) if edge else ("month", *FIGURES, "supplier")


def _rows(plant: PlantProfile, columns: Sequence[str]) -> list[tuple[object, ...]]:
    rows = []
    for m in months_of(plant):
        values = {c: getattr(m, c) for c in columns}
        rows.append(tuple(values[c] for c in columns))
    return rows


def write_csv(plant: PlantProfile, path: Path, *, edge: bool = False) -> Path:
    """Write the plant's months as CSV with a header row; returns ``path``."""
    columns = columns_of(edge=edge)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(_rows(plant, columns))
    return path


def write_sqlite(plant: PlantProfile, path: Path) -> Path:
    """Write the plant's months into table ``monthly`` of an SQLite file; returns ``path``."""
    columns = columns_of(edge=False)
    with closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE monthly (month TEXT, output_gwh REAL, cells_million REAL, "
            "energy_mwh REAL, kwh_per_kwh REAL, yield_pct REAL, supplier TEXT)"
        )
        db.executemany("INSERT INTO monthly VALUES (?, ?, ?, ?, ?, ?, ?)", _rows(plant, columns))
        db.commit()
    return path


def shared_suppliers(plants: Sequence[PlantProfile]) -> set[str]:
    """The suppliers every one of ``plants`` buys from (what PSI counts, never names)."""
    sets = [{m.supplier for m in months_of(p)} for p in plants]
    return set.intersection(*sets) if sets else set()
