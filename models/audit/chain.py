"""The audit chain: an append-only, hash-chained log of every proposal, verdict, approval, gate
result, request, response and read-back.

Each entry's `entry_hash` is the SHA-256 of the RFC 8785 canonical JSON of every other field,
`prev_hash` included, so altering, removing or reordering any row breaks the chain at that row
(or, for a rewrite that also recomputes hashes, at the first row after it whose `prev_hash`
no longer matches). Only a rewrite of the whole tail up to the head goes unnoticed by the chain
alone: publish `VerifyResult.head_hash` somewhere else (a ticket, a Dagster materialisation) and
pass it back as `expected_head` to close that gap.

Secrets never enter the log: `append` refuses payloads with secret-looking keys or values;
`redact` masks them first for callers that log HTTP requests with their headers.

Plain Python, no Dagster: storage comes in through the `AuditStore` interface
(`connectors.warehouse.audit_log.DuckDBAuditStore` in the warehouse, `MemoryAuditStore` here).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from models.audit.canonical import canonical_json

GENESIS_HASH = "0" * 64
REDACTED = "[REDACTED]"
KINDS = frozenset(
    {
        "proposal",
        "verdict",
        "approval",
        "rejection",
        "gate",
        "request",
        "response",
        "readback",
        "kill_switch",
        "note",
    }
)
FIELDS = ("seq", "recorded_at", "kind", "subject_id", "actor", "payload", "prev_hash", "entry_hash")


@dataclass(frozen=True)
class AuditEntry:
    seq: int  # 1, 2, 3, ... without gaps
    recorded_at: str  # ISO 8601 UTC with microseconds, e.g. 2026-01-05T09:30:00.000000Z
    kind: str  # one of KINDS
    subject_id: str  # what it is about: a decision id, an action's idempotency key, ...
    actor: str  # who or what wrote it: a user, a sensor, a job
    payload: dict[str, Any]
    prev_hash: str
    entry_hash: str

    def hashed_fields(self) -> dict[str, Any]:
        fields = asdict(self)
        del fields["entry_hash"]
        return fields

    def compute_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.hashed_fields())).hexdigest()

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int  # entries walked before stopping (all of them when ok)
    first_broken_seq: int | None
    reason: str | None
    head_hash: str  # entry_hash of the last good entry (GENESIS_HASH when empty)


class SecretInPayloadError(ValueError):
    """A payload would have put a secret into the audit log. The message names the path only."""


# --- secrets -------------------------------------------------------------------------------

_ALWAYS_SECRET_WORDS = frozenset(
    {"password", "passwd", "passphrase", "secret", "secrets", "authorization", "cookie",
     "credential", "credentials", "apikey", "bearer", "jwt", "privatekey"}
)  # fmt: skip
# "key" is secret after these words (api_key, private_key, ...) but not in idempotency_key
_KEY_MATERIAL_PREFIXES = frozenset(
    {"api", "private", "secret", "signing", "encryption", "access", "hmac", "master", "client",
     "session", "developer", "refresh"}
)  # fmt: skip
# "token" is secret unless it counts or prices tokens (tokens_in, token_count, token_cost)
_TOKEN_ACCOUNTING_WORDS = frozenset(
    {"count", "counts", "usage", "cost", "costs", "limit", "limits", "budget", "in", "out",
     "total", "input", "output", "prompt", "completion"}
)  # fmt: skip
_SECRET_VALUE_PATTERNS = (
    ("a bearer token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")),
    ("an sk- API key", re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("a Google OAuth token", re.compile(r"\bya29\.[A-Za-z0-9_-]{20,}")),
    ("an AWS access key id", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}")),
    ("a JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")),
)


def _words(key: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)  # camelCase -> camel Case
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_secret_key(key: str, extra: Iterable[str] = ()) -> bool:
    """Whether a mapping key names a secret (api_key, Authorization, x-api-key, accessToken...)."""
    if key.lower() in {k.lower() for k in extra}:
        return True
    words = _words(key)
    if any(w in _ALWAYS_SECRET_WORDS for w in words):
        return True
    for i, w in enumerate(words):
        if w == "key" and i > 0 and words[i - 1] in _KEY_MATERIAL_PREFIXES:
            return True
        if w == "token" and not (set(words[:i] + words[i + 1 :]) & _TOKEN_ACCOUNTING_WORDS):
            return True
    return False


def secret_value_kind(value: str) -> str | None:
    """What secret a string looks like it holds ("a bearer token", ...), or None."""
    for name, pattern in _SECRET_VALUE_PATTERNS:
        if pattern.search(value):
            return name
    return None


def _walk(obj: Any, path: str, visit: Callable[[str, str | None, Any], Any]) -> Any:
    """Rebuild `obj`, calling visit(path, key, value) on every leaf and every mapping value."""
    if isinstance(obj, Mapping):
        return {k: visit(f"{path}.{k}", k, _walk(v, f"{path}.{k}", visit)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [visit(f"{path}[{i}]", None, _walk(v, f"{path}[{i}]", visit)) for i, v in enumerate(obj)]  # fmt: skip
    return obj


def redact(payload: Mapping[str, Any], secret_keys: Iterable[str] = ()) -> dict[str, Any]:
    """A copy of `payload` with secrets replaced by REDACTED: the values under secret-looking
    keys (and under `secret_keys`), and strings that look like tokens or keys."""
    extra = tuple(secret_keys)

    def visit(_path: str, key: str | None, value: Any) -> Any:
        if key is not None and is_secret_key(str(key), extra) and value is not None:
            return REDACTED
        if isinstance(value, str) and secret_value_kind(value):
            return REDACTED
        return value

    return _walk(payload, "$", visit)


def assert_no_secrets(payload: Mapping[str, Any], secret_keys: Iterable[str] = ()) -> None:
    """Raise SecretInPayloadError if `payload` holds a secret; the message never shows it.

    A secret-looking key is allowed when its value is None or REDACTED."""
    extra = tuple(secret_keys)

    def visit(path: str, key: str | None, value: Any) -> Any:
        if key is not None and is_secret_key(str(key), extra) and value not in (None, REDACTED):
            raise SecretInPayloadError(
                f"{path}: key {key!r} looks like a secret; pass the payload through redact() first"
            )
        if isinstance(value, str) and (kind := secret_value_kind(value)):
            raise SecretInPayloadError(
                f"{path}: value looks like {kind}; secrets never go into the audit log"
            )
        return value

    _walk(payload, "$", visit)


# --- the chain -------------------------------------------------------------------------------


def format_time(now: datetime) -> str:
    if now.tzinfo is None:
        raise ValueError("recorded_at must be timezone-aware")
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def append(
    prev: AuditEntry | None,
    kind: str,
    subject_id: str,
    actor: str,
    payload: Mapping[str, Any],
    now: datetime,
) -> AuditEntry:
    """The entry that follows `prev` (None for the first). Refuses unknown kinds, empty actors,
    secrets and anything that is not canonical JSON."""
    if kind not in KINDS:
        raise ValueError(f"unknown audit kind {kind!r}; one of {sorted(KINDS)}")
    for name, value in (("subject_id", subject_id), ("actor", actor)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    if not isinstance(payload, Mapping):
        raise TypeError("payload must be a mapping")
    assert_no_secrets(payload)
    # what is stored is what was hashed: a plain-JSON copy the caller cannot mutate afterwards
    stored = json.loads(canonical_json(dict(payload)))
    draft = AuditEntry(
        seq=1 if prev is None else prev.seq + 1,
        recorded_at=format_time(now),
        kind=kind,
        subject_id=subject_id,
        actor=actor,
        payload=stored,
        prev_hash=GENESIS_HASH if prev is None else prev.entry_hash,
        entry_hash="",
    )
    return AuditEntry(**{**draft.to_row(), "entry_hash": draft.compute_hash()})


def verify(entries: Iterable[AuditEntry], expected_head: str | None = None) -> VerifyResult:
    """Walk the chain in the given order (by seq, as stored) and name the first broken row."""
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0

    def broken(seq: int, reason: str) -> VerifyResult:
        return VerifyResult(False, checked, seq, reason, prev_hash)

    for entry in entries:
        if entry.seq != expected_seq:
            what = (
                "rows missing or out of order"
                if entry.seq > expected_seq
                else "rows out of order or repeated"
            )
            return broken(entry.seq, f"expected seq {expected_seq}, found {entry.seq}: {what}")
        if entry.prev_hash != prev_hash:
            return broken(
                entry.seq,
                f"prev_hash does not match the entry_hash of seq {entry.seq - 1}"
                if entry.seq > 1
                else "prev_hash of the first entry is not the genesis hash",
            )
        try:
            actual = entry.compute_hash()
        except (TypeError, ValueError) as exc:
            return broken(entry.seq, f"row cannot be canonicalised: {exc}")
        if actual != entry.entry_hash:
            return broken(entry.seq, "entry_hash does not match the row's contents (row altered)")
        prev_hash, expected_seq, checked = entry.entry_hash, expected_seq + 1, checked + 1
    if expected_head is not None and prev_hash != expected_head:
        return VerifyResult(
            False, checked, expected_seq, "head hash differs from the expected head (tail "
            "rewritten or truncated)", prev_hash,
        )  # fmt: skip
    return VerifyResult(True, checked, None, None, prev_hash)


# --- storage interface and the log -------------------------------------------------------------


class AuditStore(Protocol):
    """Where the chain lives. Rows are plain dicts with FIELDS; a store offers no update/delete."""

    def append_row(
        self, build: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> dict[str, Any]:
        """Atomically: read the last row (None if empty), insert build(last), return it."""
        ...

    def rows(self, since_seq: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Rows with seq > since_seq, by seq ascending."""
        ...

    def last_rows(self, n: int) -> list[dict[str, Any]]:
        """The last n rows, by seq ascending."""
        ...


class MemoryAuditStore:
    """An in-process store for tests and notebooks."""

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append_row(self, build):
        with self._lock:
            row = build(dict(self._rows[-1]) if self._rows else None)
            self._rows.append(dict(row))
            return dict(row)

    def rows(self, since_seq: int = 0, limit: int | None = None):
        out = [dict(r) for r in self._rows if r["seq"] > since_seq]
        return out if limit is None else out[:limit]

    def last_rows(self, n: int):
        return [dict(r) for r in self._rows[-n:]] if n > 0 else []


def entry_from_row(row: Mapping[str, Any]) -> AuditEntry:
    return AuditEntry(**{f: row[f] for f in FIELDS})


class AuditLog:
    """The audit log over a store: append, read, verify. Append-only by API."""

    def __init__(self, store: AuditStore, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self._clock = clock or (lambda: datetime.now(UTC))

    def append(
        self, kind: str, subject_id: str, actor: str, payload: Mapping[str, Any]
    ) -> AuditEntry:
        now = self._clock()

        def build(last: dict[str, Any] | None) -> dict[str, Any]:
            prev = entry_from_row(last) if last is not None else None
            return append(prev, kind, subject_id, actor, payload, now).to_row()

        return entry_from_row(self.store.append_row(build))

    def entries(self, since_seq: int = 0, limit: int | None = None) -> list[AuditEntry]:
        return [entry_from_row(r) for r in self.store.rows(since_seq, limit)]

    def tail(self, n: int = 10) -> list[AuditEntry]:
        return [entry_from_row(r) for r in self.store.last_rows(n)]

    def verify(self, expected_head: str | None = None) -> VerifyResult:
        return verify(self.entries(), expected_head)
