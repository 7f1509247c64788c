"""Metadata helpers shared by the asset modules: row counts and markdown previews."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import duckdb


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        text = "" if v is None else (f"{v:,.2f}" if isinstance(v, float) else str(v))
        return text.replace("|", "\\|").replace("\n", " ")[:80]

    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(cell(v) for v in row) + " |\n" for row in rows)


def preview(
    conn: duckdb.DuckDBPyConnection, sql: str, params: list | None = None
) -> dg.MetadataValue:
    rel = conn.execute(sql, params or [])
    columns = [d[0] for d in rel.description]
    return dg.MetadataValue.md(markdown_table(columns, rel.fetchall()))
