"""Resource types the assets ask for. Their configuration (paths from the environment) is
wired in orchestration/resources.py; the types live here so imports only point downwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from connectors.warehouse import connect, ensure_schemas
from models.ingestion.sources import LANDING_PATH_ENV


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file; dbt's profiles.yml reads the same environment variable."""

    path: str

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with connect(self.path, read_only=read_only) as conn:
            if not read_only:
                ensure_schemas(conn)
            yield conn


class LandingZone(dg.ConfigurableResource):
    """The folder where sources deliver files (the simulator writes here by default)."""

    path: str

    @property
    def root(self) -> Path:
        root = Path(self.path)
        if not root.is_dir():
            raise FileNotFoundError(
                f"Landing folder {root} does not exist: run `adloop simulate` or point "
                f"{LANDING_PATH_ENV} at your sources' delivery folder"
            )
        return root


ARTIFACTS_PATH_ENV = "ADLOOP_ARTIFACTS_PATH"


class ArtifactStore(dg.ConfigurableResource):
    """The folder for files assets write beside the warehouse: fitted models, plots, reports."""

    path: str

    def dir(self, *parts: str) -> Path:
        folder = Path(self.path, *parts)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
