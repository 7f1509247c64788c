"""The sandbox's state in SQLite: targets (budgets and their status), the mutation log and the
stored answers to idempotency keys. WAL mode, one transaction per write, so a write that was
committed survives the process dying right after."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DB_NAME = "sandbox.sqlite3"

PLATFORMS = ("google_ads", "meta")
STATUSES = ("ENABLED", "PAUSED")
# Smallest budget step, in micros, for the Google Ads currencies that have no cents.
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "HUF", "CLP", "COP", "ISK", "TWD", "VND"})

SCHEMA = """
create table if not exists targets (
    platform text not null,
    account_id text not null,
    target_id text not null,
    channel text not null,
    geo text not null,
    currency text not null,
    name text not null,
    amount integer not null,
    status text not null,
    primary key (platform, target_id)
);
create table if not exists mutations (
    id integer primary key autoincrement,
    at text not null,
    platform text not null,
    account_id text not null,
    target_id text not null,
    field text not null,
    old_value text,
    new_value text not null,
    idempotency_key text,
    request_id text not null
);
create table if not exists idempotency (
    platform text not null,
    key text not null,
    fingerprint text not null,
    status integer not null,
    body text not null,
    at text not null,
    primary key (platform, key)
);
"""

TARGET_FIELDS = (
    "platform",
    "account_id",
    "target_id",
    "channel",
    "geo",
    "currency",
    "name",
    "amount",
    "status",
)


def min_budget_step_micros(currency: str) -> int:
    """Google Ads budgets move in the currency's smallest billable unit: 10,000 micros (one
    cent) for USD or EUR, a whole unit for currencies without cents."""
    return 1_000_000 if currency.upper() in ZERO_DECIMAL_CURRENCIES else 10_000


def _narrowed(query: str, args: list[Any], **equal: Any) -> tuple[str, list[Any]]:
    """`query` (ending in a where clause) and its `args`, with `and column = ?` for each
    column in `equal` whose value is given (not None or empty)."""
    for column, value in equal.items():
        if value:
            query += f" and {column} = ?"
            args.append(value)
    return query, args


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Change:
    """One field of one target set to a new value."""

    target_id: str
    field: str  # amount | status
    new_value: int | str


@dataclass(frozen=True)
class StoredAnswer:
    fingerprint: str
    status: int
    body: dict[str, Any]


def validate_target(raw: Any) -> dict[str, Any]:
    """One seed entry, checked and normalised; raises ValueError with the reason."""
    if not isinstance(raw, dict):
        raise ValueError(f"a target must be an object, not {type(raw).__name__}")
    unknown = sorted(set(raw) - set(TARGET_FIELDS))
    if unknown:
        raise ValueError(f"unknown target fields {unknown}; known: {list(TARGET_FIELDS)}")
    target = {
        "platform": str(raw.get("platform", "")),
        "account_id": str(raw.get("account_id", "")).removeprefix("act_").replace("-", ""),
        "target_id": str(raw.get("target_id", "")),
        "channel": str(raw.get("channel", "")),
        "geo": str(raw.get("geo", "")),
        "currency": str(raw.get("currency", "USD")).upper(),
        "name": str(raw.get("name", "")),
        "amount": raw.get("amount"),
        "status": str(raw.get("status", "ENABLED")).upper(),
    }
    if target["platform"] not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS}, not {target['platform']!r}")
    for name in ("account_id", "target_id"):
        if not target[name].isdigit():
            raise ValueError(f"{name} must be digits, not {target[name]!r}")
    for name in ("channel", "geo"):
        if not target[name].strip():
            raise ValueError(f"{name} must not be empty")
    if len(target["currency"]) != 3 or not target["currency"].isalpha():
        raise ValueError(f"currency must be an ISO 4217 code, not {target['currency']!r}")
    if target["status"] not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {target['status']!r}")
    amount = target["amount"]
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValueError(f"amount must be a positive integer, not {amount!r}")
    if target["platform"] == "google_ads":
        step = min_budget_step_micros(target["currency"])
        if amount % step:
            raise ValueError(
                f"a Google Ads amount is in micros and must be a multiple of {step} for "
                f"{target['currency']}, not {amount}"
            )
    if not target["name"]:
        target["name"] = f"{target['channel']} {target['geo']}"
    return target


class Store:
    """One SQLite connection shared by the server's threads behind one lock.

    Callers that must check and then write atomically (the idempotency check, validation and
    the write itself) hold `lock` across the whole sequence; it is re-entrant."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.state_dir / DB_NAME
        self.lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("pragma journal_mode=wal")
        # NORMAL in WAL mode: a committed transaction survives the process dying (os._exit,
        # SIGKILL); only a power cut could lose the last ones, which the sandbox need not model.
        self._db.execute("pragma synchronous=normal")
        self._db.execute("pragma busy_timeout=5000")
        with self._transaction():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)

    def close(self) -> None:
        with self.lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self._db.execute("begin immediate")
            try:
                yield self._db
            except BaseException:
                self._db.execute("rollback")
                raise
            self._db.execute("commit")

    # --- targets -----------------------------------------------------------------------

    def seed(self, targets: Iterable[dict[str, Any]]) -> int:
        """Upsert targets (already validated). Seeding is set-up, not a mutation: it is not
        logged."""
        rows = [tuple(t[name] for name in TARGET_FIELDS) for t in targets]
        with self._transaction() as db:
            db.executemany(
                f"insert into targets ({', '.join(TARGET_FIELDS)}) values "
                f"({', '.join('?' for _ in TARGET_FIELDS)}) "
                "on conflict (platform, target_id) do update set "
                + ", ".join(
                    f"{name} = excluded.{name}"
                    for name in TARGET_FIELDS
                    if name not in ("platform", "target_id")
                ),
                rows,
            )
        return len(rows)

    def get(self, platform: str, target_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self._db.execute(
                "select * from targets where platform = ? and target_id = ?",
                (platform, target_id),
            ).fetchone()
        return dict(row) if row else None

    def targets(
        self, platform: str | None = None, account_id: str | None = None
    ) -> list[dict[str, Any]]:
        query, args = _narrowed(
            "select * from targets where 1 = 1", [], platform=platform, account_id=account_id
        )
        with self.lock:
            rows = self._db.execute(query + " order by platform, account_id, target_id", args)
            return [{name: row[name] for name in TARGET_FIELDS} for row in rows]

    def has_account(self, platform: str, account_id: str) -> bool:
        with self.lock:
            row = self._db.execute(
                "select 1 from targets where platform = ? and account_id = ? limit 1",
                (platform, account_id),
            ).fetchone()
        return row is not None

    # --- writes ------------------------------------------------------------------------

    def apply(
        self,
        platform: str,
        changes: list[Change],
        *,
        request_id: str,
        idempotency_key: str | None,
        answer: StoredAnswer | None = None,
    ) -> None:
        """Apply `changes`, log each one, and store the answer to the idempotency key, all in
        one transaction: after a crash either all of it is there or none."""
        at = now_iso()
        with self._transaction() as db:
            for change in changes:
                column = {"amount": "amount", "status": "status"}[change.field]
                row = db.execute(
                    f"select account_id, {column} as value from targets "
                    "where platform = ? and target_id = ?",
                    (platform, change.target_id),
                ).fetchone()
                if row is None:
                    raise KeyError(f"{platform}:{change.target_id}")
                db.execute(
                    f"update targets set {column} = ? where platform = ? and target_id = ?",
                    (change.new_value, platform, change.target_id),
                )
                db.execute(
                    "insert into mutations (at, platform, account_id, target_id, field, "
                    "old_value, new_value, idempotency_key, request_id) "
                    "values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        at,
                        platform,
                        row["account_id"],
                        change.target_id,
                        change.field,
                        str(row["value"]),
                        str(change.new_value),
                        idempotency_key,
                        request_id,
                    ),
                )
            if answer is not None and idempotency_key is not None:
                # The first answer wins: with the key switch off a repeat is applied again,
                # but what a key maps to stays the first answer.
                db.execute(
                    "insert or ignore into idempotency (platform, key, fingerprint, status, "
                    "body, at) values (?, ?, ?, ?, ?, ?)",
                    (
                        platform,
                        idempotency_key,
                        answer.fingerprint,
                        answer.status,
                        json.dumps(answer.body),
                        at,
                    ),
                )

    def stored_answer(self, platform: str, key: str) -> StoredAnswer | None:
        with self.lock:
            row = self._db.execute(
                "select fingerprint, status, body from idempotency where platform = ? and key = ?",
                (platform, key),
            ).fetchone()
        if row is None:
            return None
        return StoredAnswer(row["fingerprint"], row["status"], json.loads(row["body"]))

    def mutations(
        self,
        *,
        platform: str | None = None,
        target_id: str | None = None,
        since_id: int = 0,
    ) -> list[dict[str, Any]]:
        query, args = _narrowed(
            "select * from mutations where id > ?",
            [since_id],
            platform=platform,
            target_id=target_id,
        )
        with self.lock:
            return [dict(row) for row in self._db.execute(query + " order by id", args)]

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {
                table: self._db.execute(f"select count(*) from {table}").fetchone()[0]
                for table in ("targets", "mutations", "idempotency")
            }

    def reset(self) -> None:
        """Forget everything: targets, the mutation log and the stored answers."""
        with self._transaction() as db:
            for table in ("targets", "mutations", "idempotency"):
                db.execute(f"delete from {table}")
