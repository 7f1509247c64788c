"""Resource wiring: every machine-specific setting comes from the environment."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from assets.dbt import dbt_project
from assets.resources import ARTIFACTS_PATH_ENV, ArtifactStore, LandingZone, Warehouse
from connectors.warehouse import WAREHOUSE_PATH_ENV
from models.ingestion.sources import LANDING_PATH_ENV


def dbt_executable() -> str:
    """The environment's dbt. DbtCliResource refuses to start when dbt is not on PATH, and
    `dagster dev` may start code servers with the resolved interpreter rather than the venv's."""
    for candidate in (
        Path(sys.executable).with_name("dbt"),
        Path(sys.prefix) / "bin" / "dbt",
        Path(__file__).resolve().parents[1] / ".venv" / "bin" / "dbt",
    ):
        if candidate.exists():
            return str(candidate)
    return shutil.which("dbt") or "dbt"


def build_resources() -> dict[str, object]:
    return {
        "warehouse": Warehouse(path=dg.EnvVar(WAREHOUSE_PATH_ENV)),
        "landing": LandingZone(path=dg.EnvVar(LANDING_PATH_ENV)),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()),
        "artifacts": ArtifactStore(path=dg.EnvVar(ARTIFACTS_PATH_ENV)),
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    }
