"""The audit log's table in the warehouse: `audit.log`, append-only, one row per chain entry.

This is storage only; hashing and verification live in `models.audit` (plain Python), which
takes this store through its `AuditStore` interface:

    AuditLog(DuckDBAuditStore(path)).append("proposal", decision_id, "budget_optimizer", {...})

Every call opens a short-lived connection (DuckDB has one writer, and dbt needs the lock).
An append reads the tail and inserts the next row inside one transaction, under a process-wide
lock, so appends from threads of one process are serialised; `seq` is the primary key, so two
writers that raced anyway could never both write the same position (one fails, none forks
the chain). Another process holding the file makes `connect` fail rather than wait.
`recorded_at` is kept as the exact ISO string that was hashed, and `payload` as JSON text that
reads back to exactly the hashed values. There is no update or delete.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import duckdb

from connectors.warehouse.duckdb import connect, warehouse_path

TABLE = "audit.log"
_COLUMNS = ("seq", "recorded_at", "kind", "subject_id", "actor", "payload", "prev_hash", "entry_hash")  # fmt: skip
_DDL = f"""
create table if not exists {TABLE} (
    seq bigint primary key,
    recorded_at varchar not null,
    kind varchar not null,
    subject_id varchar not null,
    actor varchar not null,
    payload json not null,
    prev_hash varchar not null,
    entry_hash varchar not null unique
)
"""
_SELECT = f"select {', '.join(_COLUMNS)} from {TABLE}"
_APPEND_LOCK = threading.Lock()


class AuditTableMissingError(RuntimeError):
    """The warehouse has no audit.log table yet (nothing was ever audited there)."""


def _to_row(record: tuple) -> dict[str, Any]:
    row = dict(zip(_COLUMNS, record, strict=True))
    row["payload"] = json.loads(row["payload"])
    return row


class DuckDBAuditStore:
    """`audit.log` in the DuckDB warehouse at `path` (default: $ADLOOP_WAREHOUSE_PATH)."""

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        conn: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        self.path = warehouse_path(path)
        self._shared = conn  # a connection a run already holds (see connectors.warehouse.actuation)

    @contextmanager
    def _connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._shared is not None:
            yield self._shared
        else:
            with connect(self.path, read_only=read_only) as conn:
                yield conn

    def exists(self) -> bool:
        if self._shared is None and not self.path.exists():
            return False
        with self._connect(read_only=True) as conn:
            return bool(
                conn.execute(
                    "select count(*) from information_schema.tables "
                    "where table_schema = 'audit' and table_name = 'log'"
                ).fetchone()[0]
            )

    def append_row(
        self, build: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> dict[str, Any]:
        """In one transaction: read the last row, insert build(last_row), return what was built."""
        with _APPEND_LOCK, self._connect() as conn:
            conn.execute("create schema if not exists audit")
            conn.execute(_DDL)
            conn.execute("begin transaction")
            try:
                last = conn.execute(f"{_SELECT} order by seq desc limit 1").fetchone()
                row = build(_to_row(last) if last is not None else None)
                values = [row[c] for c in _COLUMNS]
                values[_COLUMNS.index("payload")] = _payload_text(row["payload"])
                conn.execute(
                    f"insert into {TABLE} ({', '.join(_COLUMNS)}) values ({', '.join('?' * len(_COLUMNS))})",
                    values,
                )
                conn.execute("commit")
            except BaseException:
                conn.execute("rollback")
                raise
        return row

    def rows(self, since_seq: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        self._require()
        sql = f"{_SELECT} where seq > ? order by seq"
        params: list[Any] = [since_seq]
        if limit is not None:
            sql += " limit ?"
            params.append(limit)
        with self._connect(read_only=True) as conn:
            return [_to_row(r) for r in conn.execute(sql, params).fetchall()]

    def last_rows(self, n: int) -> list[dict[str, Any]]:
        self._require()
        with self._connect(read_only=True) as conn:
            records = conn.execute(f"{_SELECT} order by seq desc limit ?", [max(n, 0)]).fetchall()
        return [_to_row(r) for r in reversed(records)]

    def _require(self) -> None:
        if not self.exists():
            raise AuditTableMissingError(
                f"no {TABLE} table in {self.path}: nothing has been audited in this warehouse yet"
            )


def _payload_text(payload: dict[str, Any]) -> str:
    # compact, key-sorted JSON; verification re-canonicalises what it reads (RFC 8785), and
    # json round-trips floats exactly, so this text need not be the canonical bytes themselves
    return json.dumps(
        payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    )
