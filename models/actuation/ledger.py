"""The actuation ledger: where each action stands, written before every step that could change
a platform, so a crash at any point leaves enough behind for a rerun to finish the action
without applying it twice.

States:
- `validated`: the platform accepted the request in validate-only mode; nothing changed.
- `write_sent`: the write is about to go, or went, out; `before` holds the value read before it.
  On a rerun the actuator reads the platform first: at the target → applied (no second write);
  still at `before` → the write never landed, send it again; anything else → conflict.
- `applied`: written and confirmed by a read-back. Final.
- `noop`: the platform already held the target before any write of ours. Final.
- `blocked`: a gate stopped it (the reasons say which); re-evaluated on the next run.
- `failed`: an error that is not the platform's fault to retry (or retries ran out); re-runnable.
- `conflict`: the platform holds neither the value before nor the target: someone else changed
  it. Needs a person; never retried automatically.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

STATES = ("validated", "write_sent", "applied", "noop", "blocked", "failed", "conflict")
FINAL_STATES = frozenset({"applied", "noop", "conflict"})


@dataclass(frozen=True)
class LedgerEntry:
    action_id: str  # the idempotency key: derived from the proposal hash
    proposal_hash: str
    target_key: str
    field: str  # amount | status
    target_value: str  # what the action sets (an integer amount or a status), as text
    state: str
    before_value: str | None = None
    attempts: int = 0  # writes sent
    detail: str = ""
    updated_at: str = ""

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown ledger state {self.state!r}; one of {STATES}")

    def moved(self, state: str, **changes: Any) -> LedgerEntry:
        return replace(
            self, state=state, updated_at=datetime.now(UTC).isoformat(timespec="microseconds"),
            **changes,
        )  # fmt: skip

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


class Ledger(Protocol):
    def get(self, action_id: str) -> LedgerEntry | None: ...

    def put(self, entry: LedgerEntry) -> None:
        """Durable before it returns: the actuator relies on it surviving a crash right after."""
        ...


class MemoryLedger:
    """A ledger in a dict (tests and notebooks)."""

    def __init__(self) -> None:
        self.entries: dict[str, LedgerEntry] = {}

    def get(self, action_id: str) -> LedgerEntry | None:
        return self.entries.get(action_id)

    def put(self, entry: LedgerEntry) -> None:
        self.entries[entry.action_id] = entry
