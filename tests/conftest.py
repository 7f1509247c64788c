"""Shared test set-up: a dbt manifest (built, never committed) and a PII key for dbt."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("ADLOOP_PII_HASH_KEY", "adloop-test-key-not-secret")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


def pytest_configure(config):
    manifest = REPO / "dbt_project" / "target" / "manifest.json"
    if not manifest.exists():
        # The definitions need the manifest at import; `make test` prepares it, this covers a bare `pytest`.
        env = {
            **os.environ,
            "ADLOOP_WAREHOUSE_PATH": os.environ.get("ADLOOP_WAREHOUSE_PATH", "unused.duckdb"),
        }
        dbt = Path(sys.executable).with_name("dbt")
        subprocess.run(
            [str(dbt), "parse", "--quiet", "--profiles-dir", "."],
            cwd=REPO / "dbt_project",
            env=env,
            check=True,
        )
