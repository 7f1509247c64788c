"""Shared fixtures for the unit suite: small simulations, generated once per session.

The simulations are tiny (12 weeks, 4 geos, ~5,000 events) so that the whole suite stays
fast; every test that needs landing files or a loaded warehouse reuses them read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.warehouse import connect
from models.ingestion.loader import LoadReport, load_files
from models.ingestion.sources import SOURCES
from models.simulation.config import ExperimentPlan, SimulationConfig
from models.simulation.generator import SimulationResult, simulate

SIM_SEED = 7
OTHER_SEED = 8


def small_config(seed: int = SIM_SEED) -> SimulationConfig:
    """A small advertiser with all six channels and one geo holdout inside the window."""
    return SimulationConfig(
        seed=seed,
        weeks=12,
        geos=4,
        events=5_000,
        experiments=(ExperimentPlan("social", start_week=4, weeks=4, n_treatment_geos=2),),
    )


def _quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="session")
def sim_config() -> SimulationConfig:
    return small_config(SIM_SEED)


@pytest.fixture(scope="session")
def sim(tmp_path_factory, sim_config) -> SimulationResult:
    """The reference simulation (seed 7). Treat its files as read-only."""
    return simulate(sim_config, tmp_path_factory.mktemp("sim_a"), log=_quiet)


@pytest.fixture(scope="session")
def sim_same_seed(tmp_path_factory) -> SimulationResult:
    """A second run with the reference seed, into another folder."""
    return simulate(small_config(SIM_SEED), tmp_path_factory.mktemp("sim_a_again"), log=_quiet)


@pytest.fixture(scope="session")
def sim_other_seed(tmp_path_factory) -> SimulationResult:
    return simulate(small_config(OTHER_SEED), tmp_path_factory.mktemp("sim_b"), log=_quiet)


@dataclass
class LoadedWarehouse:
    path: Path
    first: dict[str, LoadReport]  # source -> report of the first load
    second: dict[str, LoadReport]  # source -> report of loading the same files again
    counts_after_first: dict[str, tuple[int, int, int]]  # source -> (raw, quarantine, manifest)
    counts_after_second: dict[str, tuple[int, int, int]]


def _counts(conn, source_name: str) -> tuple[int, int, int]:
    table = SOURCES[source_name].contract.qualified_table
    raw = conn.execute(f"select count(*) from {table}").fetchone()[0]
    quarantined = conn.execute(
        "select count(*) from quarantine.rejected_rows where source = ?", [source_name]
    ).fetchone()[0]
    manifest = conn.execute(
        "select count(*) from raw.load_manifest where source = ?", [source_name]
    ).fetchone()[0]
    return raw, quarantined, manifest


@pytest.fixture(scope="session")
def loaded_warehouse(tmp_path_factory, sim) -> LoadedWarehouse:
    """Every source of the reference simulation loaded into a DuckDB file, then loaded again."""
    path = tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb"
    landing = sim.landing_dir
    first, second, after_first, after_second = {}, {}, {}, {}
    with connect(path) as conn:
        for name, source in SOURCES.items():
            first[name] = load_files(conn, source, source.files(landing), landing, run_id="run-1")
            after_first[name] = _counts(conn, name)
        for name, source in SOURCES.items():
            second[name] = load_files(conn, source, source.files(landing), landing, run_id="run-2")
            after_second[name] = _counts(conn, name)
    return LoadedWarehouse(path, first, second, after_first, after_second)
