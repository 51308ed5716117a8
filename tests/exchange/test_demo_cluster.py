"""The demo cluster: the same plausible months every run, in files the agent's sources read."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.agent.sources import CsvSource, FieldReader, SqlSource
from exchange.demo.cluster import (
    EDGE_PLANT,
    FIGURES,
    PLANTS,
    PlantProfile,
    annual_intensity,
    months_of,
    shared_suppliers,
    write_csv,
    write_sqlite,
)


@pytest.mark.parametrize("plant", PLANTS, ids=[p.name for p in PLANTS])
def test_twelve_plausible_months_the_same_every_run(plant: PlantProfile) -> None:
    months = months_of(plant)
    assert months == months_of(plant)
    assert [m.month for m in months] == [f"2025-{i:02d}" for i in range(1, 13)]
    for m in months:
        assert 0.5 < m.output_gwh < 4  # a plant of 1-3 GWh a month
        assert 20 < m.kwh_per_kwh < 50  # kWh of electricity per kWh of cells
        assert 85 < m.yield_pct <= 99
        assert abs(m.energy_mwh / (m.output_gwh * 1000) - m.kwh_per_kwh) < 0.001


def test_plants_differ_and_share_two_suppliers() -> None:
    intensities = [annual_intensity(p) for p in PLANTS]
    assert len({round(i, 1) for i in intensities}) == len(PLANTS)  # every rank is distinct
    listing = [p for p in PLANTS if p is not EDGE_PLANT]
    assert len(shared_suppliers(listing)) == 2
    assert "supplier" not in EDGE_PLANT.fields(edge=True)  # a meter knows no suppliers


def test_the_files_read_back_through_the_agents_sources(tmp_path: Path) -> None:
    plant = PLANTS[0]
    expected = tuple(m.kwh_per_kwh for m in months_of(plant))
    csv_file = write_csv(plant, tmp_path / "monthly.csv")
    db = write_sqlite(plant, tmp_path / "monthly.db")
    for source in (CsvSource(csv_file), SqlSource(f"sqlite:///{db}", "monthly")):
        reader = FieldReader(source)
        assert reader.numbers("kwh_per_kwh") == pytest.approx(expected)
        assert len(reader.texts("supplier")) == 12
    meter = FieldReader(CsvSource(write_csv(EDGE_PLANT, tmp_path / "readings.csv", edge=True)))
    assert len(meter.rows(FIGURES)) == 12
