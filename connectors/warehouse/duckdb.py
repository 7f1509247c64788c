"""DuckDB warehouse: one file, one writer at a time, the same path for Dagster and dbt."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

WAREHOUSE_PATH_ENV = "ADLOOP_WAREHOUSE_PATH"
MEMORY_LIMIT_ENV = "ADLOOP_DUCKDB_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "1GB"  # DuckDB would take 80% of RAM; with a limit it spills to disk
SCHEMAS = (
    "raw",
    "quarantine",
    "staging",
    "intermediate",
    "marts",
    "features",
    "measurement",
    "decisions",
    "audit",
)


def warehouse_path(path: str | os.PathLike | None = None) -> Path:
    """The DuckDB file: an explicit path, else $ADLOOP_WAREHOUSE_PATH; a clear error otherwise."""
    value = path if path is not None else os.environ.get(WAREHOUSE_PATH_ENV)
    if not value:
        raise RuntimeError(
            f"No warehouse path: set {WAREHOUSE_PATH_ENV} to a DuckDB file (e.g. data/warehouse.duckdb)"
        )
    return Path(value)


@contextmanager
def connect(
    path: str | os.PathLike | None = None, *, read_only: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived connection; DuckDB's file lock is released as soon as it closes.

    dbt runs in a subprocess and needs that lock, so nothing here keeps a connection open.
    """
    p = warehouse_path(path)
    if not read_only:
        p.parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(
        str(p),
        read_only=read_only,
        config={"memory_limit": os.environ.get(MEMORY_LIMIT_ENV, DEFAULT_MEMORY_LIMIT)},
    )
    try:
        conn.execute("set TimeZone = 'UTC'")
        yield conn
    finally:
        conn.close()


def tables_exist(conn: duckdb.DuckDBPyConnection, *tables: str) -> bool:
    """Whether every schema-qualified table exists (checked first: DuckDB would otherwise try
    a missing table's name as a Python variable in the caller)."""
    found = {
        f"{s}.{t}"
        for s, t in conn.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall()
    }
    return all(t in found for t in tables)


def ensure_schemas(conn: duckdb.DuckDBPyConnection) -> None:
    for schema in SCHEMAS:
        conn.execute(f"create schema if not exists {schema}")


def replace_table(conn: duckdb.DuckDBPyConnection, table: str, frame) -> int:
    """Make `schema.table` hold exactly `frame` (a pandas DataFrame), atomically: an asset that
    owns a table rewrites it whole, so a rerun on the same inputs leaves the same table."""
    schema, _, name = table.partition(".")
    if not name:
        raise ValueError(f"table must be schema-qualified, got {table!r}")
    conn.execute("begin")
    try:
        conn.execute(f"create schema if not exists {schema}")
        conn.register("_adloop_frame", frame)
        conn.execute(f"create or replace table {schema}.{name} as select * from _adloop_frame")
        conn.unregister("_adloop_frame")
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise
    return len(frame)
