"""Shared test set-up: a dbt manifest (built, never committed), a PII key for dbt, and a
DuckDB file held locked by another process."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture
def hold_duckdb_lock():
    """`with hold_duckdb_lock(path):` runs its block while another process holds the DuckDB
    file at `path` open for writing, so this process cannot open it."""

    @contextlib.contextmanager
    def hold(path):
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import duckdb, time\n"
             f"c = duckdb.connect({str(path)!r})\n"
             "print('ready', flush=True)\n"
             "time.sleep(20)\n"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert holder.stdout.readline().strip() == "ready"
            yield
        finally:
            holder.kill()
            holder.wait()

    return hold
