"""The warehouse edge: DuckDB by default; the path comes from one environment variable."""

from connectors.warehouse.duckdb import (
    SCHEMAS,
    WAREHOUSE_PATH_ENV,
    connect,
    ensure_schemas,
    replace_table,
    tables_exist,
    warehouse_path,
)

__all__ = [
    "SCHEMAS",
    "WAREHOUSE_PATH_ENV",
    "connect",
    "ensure_schemas",
    "replace_table",
    "tables_exist",
    "warehouse_path",
]
