"""Resource wiring: every machine-specific setting comes from the environment."""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from assets.dbt import dbt_project
from assets.resources import LANDING_PATH_ENV, LandingZone, Warehouse
from connectors.warehouse import WAREHOUSE_PATH_ENV


def dbt_executable() -> str:
    """The venv's dbt: DbtCliResource refuses to start when dbt is not on PATH."""
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def build_resources() -> dict[str, object]:
    return {
        "warehouse": Warehouse(path=dg.EnvVar(WAREHOUSE_PATH_ENV)),
        "landing": LandingZone(path=dg.EnvVar(LANDING_PATH_ENV)),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()),
    }
