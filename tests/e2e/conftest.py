"""A small simulated market run through the real graph: real DuckDB file, real dbt, real checks."""

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from models.ingestion.sources import event_days
from models.simulation.config import ExperimentPlan, SimulationConfig
from models.simulation.generator import simulate
from orchestration.pipeline import PipelineRun, run_foundation

SMALL_MARKET = SimulationConfig(
    seed=11,
    weeks=12,
    geos=4,
    events=6_000,
    experiments=(ExperimentPlan("social", start_week=7, weeks=3, n_treatment_geos=1),),
)


@dataclass
class GraphRun:
    run: PipelineRun
    warehouse: Path
    landing: Path
    truth: dict


@pytest.fixture
def env_paths(monkeypatch):
    def _set(warehouse: Path, landing: Path) -> None:
        monkeypatch.setenv("ADLOOP_WAREHOUSE_PATH", str(warehouse))
        monkeypatch.setenv("ADLOOP_LANDING_PATH", str(landing))

    return _set


@contextmanager
def environment(values: dict[str, str]):
    """Set environment variables for a session-scoped run (monkeypatch is function-scoped)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_pipeline(landing: Path, first: date | None = None, last: date | None = None) -> PipelineRun:
    if first is None:
        days = event_days(landing)
        first, last = days[0], days[-1]
    return run_foundation(first, last)


@pytest.fixture(scope="session")
def simulated_market(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("market")
    result = simulate(SMALL_MARKET, out, log=lambda _m: None)
    return result.landing_dir, result.truth


@pytest.fixture(scope="session")
def graph_run(simulated_market, tmp_path_factory) -> GraphRun:
    """The whole foundation graph materialised once on the small market."""
    landing, truth = simulated_market
    warehouse = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    with environment(
        {"ADLOOP_WAREHOUSE_PATH": str(warehouse), "ADLOOP_LANDING_PATH": str(landing)}
    ):
        run = run_pipeline(landing)
    return GraphRun(run=run, warehouse=warehouse, landing=landing, truth=truth)
