"""Action proposals and their signed approvals in the warehouse: `decisions.action_proposals`
(one row per proposal hash) and `decisions.approvals` (append-only, with a monotonic `seq`).

Storage only: hashing, signing and checking live in `models.policy` (plain Python). Every call
opens a short-lived connection; when another process holds DuckDB's single write lock, a call
retries for `lock_timeout_s` and then fails with `WarehouseLockedError`, which says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import duckdb

from connectors.warehouse.duckdb import connect, warehouse_path

PROPOSALS_TABLE = "decisions.action_proposals"
APPROVALS_TABLE = "decisions.approvals"
VERDICTS = ("allowed", "needs_approval", "rejected")
DECISIONS = ("approve", "reject")

PROPOSAL_COLUMNS: dict[str, str] = {
    "proposal_id": "varchar not null",
    "proposal_hash": "varchar primary key",
    "proposal_json": "varchar not null",
    "action_type": "varchar not null",
    "platform": "varchar",
    "account_id": "varchar",
    "target_id": "varchar",
    "channel": "varchar",
    "geo": "varchar",
    "current_value": "double",
    "proposed_value": "double",
    "value_json": "varchar",
    "unit": "varchar",
    "change_ratio": "double",
    "expected_effect": "double",
    "effect_low": "double",
    "effect_high": "double",
    "effect_metric": "varchar",
    "proposer": "varchar",
    "canary": "boolean",
    "created_for": "date",
    "proposed_at": "timestamp",
    "source": "varchar",
    "run_id": "varchar",
    "verdict": "varchar not null",
    "reasons": "varchar",
    "checks": "varchar",
    "approvers": "varchar",
    "policy_version": "varchar",
    "policy_sha256": "varchar",
}
# A re-evaluation of the same proposal (same hash) may reach another verdict (the kill switch,
# a new policy); these columns follow it, everything else keeps the first proposal's values.
VERDICT_COLUMNS = ("verdict", "reasons", "checks", "approvers", "policy_version", "policy_sha256")
_JSON_LIST_COLUMNS = ("reasons", "checks", "approvers")

APPROVAL_COLUMNS: dict[str, str] = {
    "approval_id": "varchar primary key",
    "proposal_hash": "varchar not null",
    "decision": "varchar not null",
    "approver": "varchar not null",
    "signed_at": "varchar not null",
    "comment": "varchar not null",
    "signature": "varchar not null",
    "recorded_at": "timestamp not null",
    "seq": "bigint not null unique",
}
_SIGNED_COLUMNS = ("approval_id", "proposal_hash", "decision", "approver", "signed_at", "comment", "signature")  # fmt: skip

_DDL = (
    "create schema if not exists decisions",
    f"create table if not exists {PROPOSALS_TABLE} ("
    + ", ".join(f"{c} {t}" for c, t in PROPOSAL_COLUMNS.items())
    + ")",
    f"create table if not exists {APPROVALS_TABLE} ("
    + ", ".join(f"{c} {t}" for c, t in APPROVAL_COLUMNS.items())
    + ")",
)
_WRITE_LOCK = threading.Lock()  # one writer per process; other processes meet DuckDB's lock


class WarehouseLockedError(RuntimeError):
    """Another process holds the warehouse's write lock (a running job); try again later."""


class ProposalLookupError(LookupError):
    """No proposal, or more than one, matches an id."""


class UnknownProposalError(ProposalLookupError):
    pass


class AmbiguousProposalError(ProposalLookupError):
    pass


def is_lock_error(exc: BaseException) -> bool:
    """Whether a DuckDB error means another process holds the file's lock."""
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def retry_on_lock[T](fn: Callable[[], T], *, path: os.PathLike | str, timeout_s: float = 5.0) -> T:
    """fn(), retried with backoff while another process holds the warehouse's lock."""
    deadline = time.monotonic() + timeout_s
    pause = 0.05
    while True:
        try:
            return fn()
        except duckdb.IOException as exc:
            if not is_lock_error(exc):
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise WarehouseLockedError(
                    f"the warehouse {path} is locked by another process (a running job holds "
                    f"DuckDB's single write lock); gave up after {timeout_s:g}s: try again "
                    "when it finishes"
                ) from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.5)


def _hex_prefix(text: str) -> str:
    value = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{4,64}", value):
        raise UnknownProposalError(
            f"{text!r} is not a proposal id: give the 12-character id, or at least 4 hex "
            "characters of the hash"
        )
    return value


def _json_list(value: Any, column: str) -> str | None:
    if value is None or isinstance(value, str):
        if isinstance(value, str) and not isinstance(json.loads(value), list):
            raise ValueError(f"{column} must be a JSON list")
        return value
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    raise ValueError(f"{column} must be a list or JSON text, got {type(value).__name__}")


def _proposal_values(row: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(row) - set(PROPOSAL_COLUMNS))
    if unknown:
        raise ValueError(f"unknown columns for {PROPOSALS_TABLE}: {unknown}")
    out = {c: row.get(c) for c in PROPOSAL_COLUMNS}
    text, digest = out["proposal_json"], out["proposal_hash"]
    if not isinstance(text, str) or not isinstance(digest, str):
        raise ValueError("a proposal row needs proposal_json and proposal_hash")
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != digest:
        raise ValueError(f"proposal {digest[:12]}: proposal_hash is not sha256(proposal_json)")
    if out["proposal_id"] is None:
        out["proposal_id"] = digest[:12]
    elif out["proposal_id"] != digest[:12]:
        raise ValueError(f"proposal {digest[:12]}: proposal_id must be the hash's first 12 chars")
    if out["verdict"] not in VERDICTS:
        raise ValueError(f"proposal {digest[:12]}: verdict must be one of {list(VERDICTS)}")
    if not out["action_type"]:
        raise ValueError(f"proposal {digest[:12]}: action_type is required")
    for column in _JSON_LIST_COLUMNS:
        out[column] = _json_list(out[column], column)
    return out


def _approval_values(row: Mapping[str, Any]) -> dict[str, Any]:
    missing = [c for c in _SIGNED_COLUMNS if c != "comment" and not row.get(c)]
    if missing:
        raise ValueError(f"an approval row needs {missing}")
    out = {c: row.get(c) for c in _SIGNED_COLUMNS}
    out["comment"] = out["comment"] or ""
    if out["decision"] not in DECISIONS:
        raise ValueError(f"decision must be one of {list(DECISIONS)}, got {out['decision']!r}")
    if not re.fullmatch(r"[0-9a-f]{64}", str(out["signature"])):
        raise ValueError("signature must be a hex HMAC-SHA256")
    return out


class DecisionsStore:
    """decisions.action_proposals and decisions.approvals in the DuckDB warehouse at `path`
    (default: $ADLOOP_WAREHOUSE_PATH)."""

    def __init__(self, path: str | os.PathLike | None = None, *, lock_timeout_s: float = 5.0):
        self.path = warehouse_path(path)
        self.lock_timeout_s = lock_timeout_s

    # -- plumbing ------------------------------------------------------------------------------

    def _retry[T](self, fn: Callable[[], T]) -> T:
        return retry_on_lock(fn, path=self.path, timeout_s=self.lock_timeout_s)

    def _write[T](self, body: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        def attempt() -> T:
            with _WRITE_LOCK, connect(self.path) as conn:
                for statement in _DDL:
                    conn.execute(statement)
                conn.execute("begin transaction")
                try:
                    result = body(conn)
                    conn.execute("commit")
                except BaseException:
                    conn.execute("rollback")
                    raise
                return result

        return self._retry(attempt)

    def _read(self, table: str, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        schema, _, name = table.partition(".")

        def attempt() -> list[dict[str, Any]]:
            try:
                return query(read_only=True)
            except duckdb.ConnectionException as exc:
                # this process already holds a read-write connection (an asset inside
                # `warehouse.connect()`): DuckDB refuses a read-only one beside it
                if "different configuration" not in str(exc):
                    raise
                return query(read_only=False)

        def query(read_only: bool) -> list[dict[str, Any]]:
            with connect(self.path, read_only=read_only) as conn:
                (present,) = conn.execute(
                    "select count(*) from information_schema.tables "
                    "where table_schema = ? and table_name = ?",
                    [schema, name],
                ).fetchone()
                if not present:
                    return []
                cursor = conn.execute(sql, params or [])
                columns = [d[0] for d in cursor.description]
                return [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]

        return self._retry(attempt)

    # -- proposals -----------------------------------------------------------------------------

    def upsert_proposals(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Write proposals by hash; returns how many new rows were written. A known hash never
        makes a second row; only its verdict columns follow a re-evaluation that differs."""
        batch: dict[str, dict[str, Any]] = {}
        for row in rows:
            values = _proposal_values(row)
            batch[values["proposal_hash"]] = values  # the last of a repeated hash wins
        if not batch:
            return 0
        columns = list(PROPOSAL_COLUMNS)

        def body(conn: duckdb.DuckDBPyConnection) -> int:
            existing = {
                r[0]: r[1:]
                for r in conn.execute(
                    f"select proposal_hash, {', '.join(VERDICT_COLUMNS)} from {PROPOSALS_TABLE} "
                    "where list_contains(?, proposal_hash)",
                    [list(batch)],
                ).fetchall()
            }
            new = [v for h, v in batch.items() if h not in existing]
            if new:
                conn.executemany(
                    f"insert into {PROPOSALS_TABLE} ({', '.join(columns)}) "
                    f"values ({', '.join('?' * len(columns))})",
                    [[v[c] for c in columns] for v in new],
                )
            for digest, stored in existing.items():
                fresh = tuple(batch[digest][c] for c in VERDICT_COLUMNS)
                if fresh != tuple(stored):
                    conn.execute(
                        f"update {PROPOSALS_TABLE} set "
                        + ", ".join(f"{c} = ?" for c in VERDICT_COLUMNS)
                        + " where proposal_hash = ?",
                        [*fresh, digest],
                    )
            return len(new)

        return self._write(body)

    def proposals(self, *, verdict: str | None = None) -> list[dict[str, Any]]:
        """Proposal rows, oldest first (created_for, proposed_at, id); optionally one verdict."""
        if verdict is not None and verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {list(VERDICTS)}, got {verdict!r}")
        where = "where verdict = ?" if verdict else ""
        return self._read(
            PROPOSALS_TABLE,
            f"select * from {PROPOSALS_TABLE} {where} "
            "order by created_for nulls first, proposed_at nulls first, proposal_id",
            [verdict] if verdict else [],
        )

    def proposal(self, id_or_hash: str) -> dict[str, Any]:
        """One proposal by its 12-character id, a unique prefix of its hash, or the full hash."""
        prefix = _hex_prefix(id_or_hash)
        rows = self._read(
            PROPOSALS_TABLE,
            f"select * from {PROPOSALS_TABLE} where starts_with(proposal_hash, ?) "
            "order by proposal_hash limit 6",
            [prefix],
        )
        if not rows:
            raise UnknownProposalError(f"no proposal {id_or_hash.strip()!r} in {self.path}")
        if len(rows) > 1:
            ids = ", ".join(r["proposal_id"] for r in rows[:5])
            raise AmbiguousProposalError(
                f"{id_or_hash.strip()!r} matches several proposals ({ids}"
                f"{', ...' if len(rows) > 5 else ''}): give more characters"
            )
        return rows[0]

    # -- approvals -----------------------------------------------------------------------------

    def append_approval(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Append one signed approval of a known proposal; returns it with seq and recorded_at.
        The same approval_id again returns the stored row and writes nothing."""
        values = _approval_values(row)

        def body(conn: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            known = conn.execute(
                f"select count(*) from {PROPOSALS_TABLE} where proposal_hash = ?",
                [values["proposal_hash"]],
            ).fetchone()[0]
            if not known:
                raise UnknownProposalError(
                    f"no proposal with hash {values['proposal_hash'][:12]} in {self.path}"
                )
            cursor = conn.execute(
                f"select * from {APPROVALS_TABLE} where approval_id = ?", [values["approval_id"]]
            )
            stored = cursor.fetchone()
            if stored is not None:
                return dict(zip([d[0] for d in cursor.description], stored, strict=True))
            (last,) = conn.execute(
                f"select coalesce(max(seq), 0) from {APPROVALS_TABLE}"
            ).fetchone()
            out = {
                **values,
                "recorded_at": datetime.now(UTC).replace(tzinfo=None),
                "seq": last + 1,
            }
            conn.execute(
                f"insert into {APPROVALS_TABLE} ({', '.join(APPROVAL_COLUMNS)}) "
                f"values ({', '.join('?' * len(APPROVAL_COLUMNS))})",
                [out[c] for c in APPROVAL_COLUMNS],
            )
            return out

        return self._write(body)

    def approvals(self, proposal_hash: str | None = None) -> list[dict[str, Any]]:
        """Approval rows by seq; those of one proposal hash when given."""
        where = "where proposal_hash = ?" if proposal_hash else ""
        return self._read(
            APPROVALS_TABLE,
            f"select * from {APPROVALS_TABLE} {where} order by seq",
            [proposal_hash] if proposal_hash else [],
        )

    def approvals_after(self, seq: int) -> list[dict[str, Any]]:
        """Approval rows with seq > `seq`, by seq (the approvals sensor's cursor)."""
        return self._read(
            APPROVALS_TABLE,
            f"select * from {APPROVALS_TABLE} where seq > ? order by seq",
            [int(seq)],
        )
