"""The actuation ledger's table, `decisions.actuation_ledger`, and a run-long warehouse session.

An actuation run writes a ledger row before every step that could change a platform and an
audit entry for every request, response and read-back: thousands of small writes. Opening the
DuckDB file for each would cost more than the HTTP calls, so a run holds one connection for
its duration (`ActuationSession`) and every write commits on its own (durable when `put`
returns). The kill switch is a file (`connectors.kill_switch`), so it never waits on this lock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields

import duckdb

from connectors.warehouse.audit_log import DuckDBAuditStore
from connectors.warehouse.duckdb import connect, warehouse_path
from models.actuation.ledger import LedgerEntry

TABLE = "decisions.actuation_ledger"
_COLUMNS = tuple(f.name for f in fields(LedgerEntry))
_DDL = f"""
create table if not exists {TABLE} (
    action_id varchar primary key,
    proposal_hash varchar not null,
    target_key varchar not null,
    field varchar not null,
    target_value varchar not null,
    state varchar not null,
    before_value varchar,
    attempts integer not null,
    detail varchar not null,
    updated_at varchar not null
)
"""


def ensure_ledger(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("create schema if not exists decisions")
    conn.execute(_DDL)


class DuckDBLedger:
    """`decisions.actuation_ledger` over an open connection; one row per action."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        ensure_ledger(conn)

    def get(self, action_id: str) -> LedgerEntry | None:
        row = self.conn.execute(
            f"select {', '.join(_COLUMNS)} from {TABLE} where action_id = ?", [action_id]
        ).fetchone()
        return None if row is None else LedgerEntry(**dict(zip(_COLUMNS, row, strict=True)))

    def put(self, entry: LedgerEntry) -> None:
        row = entry.to_row()
        self.conn.execute(
            f"insert or replace into {TABLE} ({', '.join(_COLUMNS)}) "
            f"values ({', '.join('?' * len(_COLUMNS))})",
            [row[c] for c in _COLUMNS],
        )

    def all(self) -> list[LedgerEntry]:
        rows = self.conn.execute(
            f"select {', '.join(_COLUMNS)} from {TABLE} order by action_id"
        ).fetchall()
        return [LedgerEntry(**dict(zip(_COLUMNS, r, strict=True))) for r in rows]


class ActuationSession:
    """One connection for a run: the ledger and an audit store that share it."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, path) -> None:
        self.conn = conn
        self.ledger = DuckDBLedger(conn)
        self.audit_store = DuckDBAuditStore(path, conn=conn)


@contextmanager
def actuation_session(path: str | os.PathLike | None = None) -> Iterator[ActuationSession]:
    p = warehouse_path(path)
    with connect(p) as conn:
        yield ActuationSession(conn, p)


def read_ledger(path: str | os.PathLike | None = None) -> list[LedgerEntry]:
    """Every ledger row (empty when nothing was ever actuated in this warehouse)."""
    with connect(path) as conn:
        return DuckDBLedger(conn).all()
