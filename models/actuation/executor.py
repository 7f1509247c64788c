"""The actuator: gates, then validate-only, then the write, then a read-back, for each action,
with a ledger that makes every step safe to repeat.

Exactly once, on any platform (the real APIs have no idempotency keys for these calls):
1. The ledger records `write_sent` with the value read before, durably, *before* the write.
2. A write whose outcome is unknown (timeout, dropped connection, crash of either side) is
   never blindly repeated: the platform is read first. At the target: applied. Still at the
   value before: the write never landed, send it again. Anything else: conflict, stop.
3. On a rerun, actions `applied`/`noop` are skipped, and `write_sent` resumes at step 2.
The `Idempotency-Key` header (the proposal hash) is a second line of defence where the server
honours it (the sandbox does), never the only one.

Throttling and transient errors are retried with backoff that honours the server's hint
(`connectors.ad_platforms.retry`); other errors fail the action and leave it re-runnable. The
kill switch is read before every single call, so flipping it stops a run before its next call.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from connectors.ad_platforms.base import (
    AdPlatform,
    AdPlatformError,
    BudgetTarget,
    CallRecord,
    OutcomeUnknown,
    PermanentError,
)
from connectors.ad_platforms.retry import RetryPolicy, call_with_retries
from models.actuation.gates import Gate, GateResult
from models.actuation.ledger import FINAL_STATES, Ledger, LedgerEntry
from models.policy.proposal import ActionProposal

AMOUNT = "amount"
STATUS = "status"
MAX_UNKNOWN_OUTCOMES = 3  # unknown outcomes of one action in one run before it is left for later


class KillSwitchEngaged(Exception):
    """The kill switch was on before a call: the run stops here, nothing more is sent."""


class AuditSink(Protocol):
    def append(self, kind: str, subject_id: str, actor: str, payload: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True)
class Action:
    """One change to one platform object, derived from one proposal."""

    proposal: ActionProposal
    target: BudgetTarget
    field: str  # amount | status
    value: int | str  # platform units (amount) or ENABLED/PAUSED (status)
    usd_per_day: float = 0.0  # the amount in USD, for caps and reports
    canary_group: str = ""

    def __post_init__(self) -> None:
        if self.field not in (AMOUNT, STATUS):
            raise ValueError(f"field must be {AMOUNT!r} or {STATUS!r}, got {self.field!r}")

    @property
    def action_id(self) -> str:
        """The idempotency key: a pure function of the proposal hash and what it changes."""
        digest = hashlib.sha256(
            f"{self.proposal.proposal_hash}|{self.target.key}|{self.field}".encode()
        ).hexdigest()
        return f"adloop-{digest[:40]}"


@dataclass(frozen=True)
class ActionResult:
    action_id: str
    proposal_hash: str
    target_key: str
    outcome: (
        str  # applied | noop | already_applied | blocked | failed | conflict | deferred | stopped
    )
    detail: str
    gates: tuple[GateResult, ...] = ()
    calls: int = 0


@dataclass
class RunSummary:
    results: list[ActionResult] = field(default_factory=list)
    stopped_by_kill_switch: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(r.outcome for r in self.results))


def _call_payload(call: CallRecord | None) -> dict[str, Any] | None:
    if call is None:
        return None
    return {
        "method": call.method, "url": call.url, "request": call.request, "status": call.status,
        "response": call.response, "latency_s": round(call.latency_s, 4),
    }  # fmt: skip


class Actuator:
    def __init__(
        self,
        platforms: Mapping[str, AdPlatform],
        ledger: Ledger,
        *,
        audit: AuditSink | None = None,
        kill_switch: Callable[[], str | None] = lambda: None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] = lambda _msg: None,
        actor: str = "adloop-actuator",
    ) -> None:
        self.platforms = platforms
        self.ledger = ledger
        self.audit = audit
        self.kill_switch = kill_switch
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.log = log
        self.actor = actor
        self.calls = 0  # every HTTP call this actuator made

    # --- plumbing ------------------------------------------------------------------------------

    def _audit(self, kind: str, action: Action, payload: Mapping[str, Any]) -> None:
        if self.audit is not None:
            self.audit.append(
                kind, action.proposal.proposal_hash, self.actor,
                {"action_id": action.action_id, "target": action.target.key, **payload},
            )  # fmt: skip

    def _check_kill(self) -> None:
        reason = self.kill_switch()
        if reason:
            raise KillSwitchEngaged(reason)

    def _platform(self, action: Action) -> AdPlatform:
        try:
            return self.platforms[action.target.platform]
        except KeyError:
            raise PermanentError(f"no connector for platform {action.target.platform!r}") from None

    def _with_retries(self, fn: Callable[[], Any]) -> Any:
        def attempt() -> Any:
            self._check_kill()  # before every call, retries included
            self.calls += 1
            return fn()

        return call_with_retries(
            attempt, self.retry, sleep=self.sleep,
            on_retry=lambda n, exc, wait: self.log(f"retry {n} in {wait:.2f}s: {exc}"),
        )  # fmt: skip

    def _read(self, action: Action) -> int | str:
        platform = self._platform(action)
        reading = self._with_retries(lambda: platform.read_budget(action.target))
        return reading.amount if action.field == AMOUNT else reading.status

    def _send(self, action: Action, *, validate_only: bool) -> CallRecord:
        platform = self._platform(action)
        if action.field == AMOUNT:

            def call() -> CallRecord:
                return platform.update_budget(
                    action.target, int(action.value), validate_only=validate_only,
                    idempotency_key=action.action_id,
                )  # fmt: skip
        else:

            def call() -> CallRecord:
                return platform.set_status(
                    action.target, str(action.value), validate_only=validate_only,
                    idempotency_key=action.action_id,
                )  # fmt: skip

        kind = "validate_only" if validate_only else "write"
        self._audit("request", action, {"step": kind, "field": action.field, "value": action.value})
        try:
            record = self._with_retries(call)
        except AdPlatformError as exc:
            self._audit("response", action, {
                "step": kind, "error": type(exc).__name__, "message": str(exc),
                "call": _call_payload(exc.call),
            })  # fmt: skip
            raise
        self._audit("response", action, {"step": kind, "call": _call_payload(record)})
        return record

    def _put(self, entry: LedgerEntry) -> LedgerEntry:
        self.ledger.put(entry)
        return entry

    # --- one action ----------------------------------------------------------------------------

    def _apply(self, action: Action, entry: LedgerEntry | None) -> ActionResult:
        target_text = str(action.value)
        base = entry or LedgerEntry(
            action_id=action.action_id, proposal_hash=action.proposal.proposal_hash,
            target_key=action.target.key, field=action.field, target_value=target_text,
            state="blocked",
        )  # fmt: skip
        calls_before = self.calls

        def result(outcome: str, detail: str) -> ActionResult:
            return ActionResult(
                action.action_id, action.proposal.proposal_hash, action.target.key, outcome,
                detail, calls=self.calls - calls_before,
            )  # fmt: skip

        if entry is not None and entry.state == "write_sent":
            before = entry.before_value
            now = str(self._read(action))
            self._audit("readback", action, {"step": "resume", "value": now, "before": before})
            if now == target_text:
                self._put(
                    base.moved("applied", detail="confirmed by read-back after an unknown outcome")
                )
                return result("applied", "an earlier write had landed: confirmed, not re-sent")
            if now != before:
                self._put(
                    base.moved(
                        "conflict",
                        detail=f"platform holds {now}, neither {before} nor {target_text}",
                    )
                )
                return result(
                    "conflict",
                    f"platform holds {now}, neither the value before ({before}) nor the target",
                )
        else:
            now = str(self._read(action))
            before = now
            self._audit("readback", action, {"step": "before", "value": now})
            if now == target_text:
                self._put(base.moved("noop", before_value=before, detail="already at the target"))
                return result("noop", "the platform already holds the target value")
            self._send(action, validate_only=True)
            base = self._put(
                base.moved("validated", before_value=before, detail="validate_only passed")
            )

        unknown = 0
        while True:
            base = self._put(
                base.moved("write_sent", before_value=before, attempts=base.attempts + 1)
            )
            try:
                self._send(action, validate_only=False)
                break
            except OutcomeUnknown as exc:
                unknown += 1
                now = str(self._read(action))
                self._audit("readback", action, {"step": "after_unknown_outcome", "value": now})
                if now == target_text:
                    self._put(
                        base.moved(
                            "applied",
                            detail=f"write outcome unknown ({exc}); read-back confirms it landed",
                        )
                    )
                    return result("applied", "write outcome unknown; read-back confirmed it landed")
                if now != before:
                    self._put(base.moved("conflict", detail=f"platform holds {now}"))
                    return result("conflict", f"platform holds {now}, neither before nor target")
                if unknown >= MAX_UNKNOWN_OUTCOMES:
                    return result(
                        "failed", f"{unknown} unknown outcomes in a row; left for a rerun"
                    )
            except AdPlatformError as exc:
                # Nothing was applied (throttling or transient errors that ran out of retries,
                # or a refusal): the action stays re-runnable.
                self._put(base.moved("failed", detail=f"{type(exc).__name__}: {exc}"))
                return result("failed", f"{type(exc).__name__}: {exc}")

        now = str(self._read(action))
        self._audit("readback", action, {"step": "after_write", "value": now})
        if now != target_text:
            self._put(base.moved("conflict", detail=f"read-back {now} after writing {target_text}"))
            return result("conflict", f"read-back {now} does not match the written {target_text}")
        self._put(base.moved("applied", detail="written and confirmed by read-back"))
        return result("applied", "validated, written and confirmed by read-back")

    # --- a run ---------------------------------------------------------------------------------

    def run(self, actions: Iterable[Action], gates: Sequence[Gate] = ()) -> RunSummary:
        """Apply each action in order. Stops at once (before the next call) when the kill
        switch is engaged; everything not yet sent stays as it was, ready for a rerun."""
        summary = RunSummary()
        for action in actions:
            entry = self.ledger.get(action.action_id)
            if entry is not None and entry.state in FINAL_STATES:
                outcome = "already_applied" if entry.state in ("applied", "noop") else entry.state
                summary.results.append(ActionResult(
                    action.action_id, action.proposal.proposal_hash, action.target.key,
                    outcome, f"ledger says {entry.state}: {entry.detail}",
                ))  # fmt: skip
                continue
            results = tuple(gate(action) for gate in gates)
            failed = [g for g in results if not g.passed]
            self._audit("gate", action, {
                "passed": not failed, "gates": [g._asdict() for g in results],
            })  # fmt: skip
            if failed:
                detail = "; ".join(f"{g.gate}: {g.detail}" for g in failed)
                if entry is None or entry.state != "write_sent":
                    self._put((entry or LedgerEntry(
                        action_id=action.action_id, proposal_hash=action.proposal.proposal_hash,
                        target_key=action.target.key, field=action.field,
                        target_value=str(action.value), state="blocked",
                    )).moved("blocked", detail=detail))  # fmt: skip
                summary.results.append(ActionResult(
                    action.action_id, action.proposal.proposal_hash, action.target.key,
                    "blocked", detail, results,
                ))  # fmt: skip
                continue
            try:
                res = self._apply(action, entry)
            except KillSwitchEngaged as exc:
                summary.stopped_by_kill_switch = str(exc)
                self._audit(
                    "kill_switch", action, {"stopped_before_call": True, "reason": str(exc)}
                )
                self.log(f"kill switch engaged ({exc}): stopped before the next call")
                summary.results.append(ActionResult(
                    action.action_id, action.proposal.proposal_hash, action.target.key,
                    "stopped", f"kill switch: {exc}", results,
                ))  # fmt: skip
                break
            except AdPlatformError as exc:  # a read that ran out of retries
                res = ActionResult(action.action_id, action.proposal.proposal_hash,
                                   action.target.key, "failed", f"{type(exc).__name__}: {exc}")  # fmt: skip
            summary.results.append(
                ActionResult(
                    res.action_id,
                    res.proposal_hash,
                    res.target_key,
                    res.outcome,
                    res.detail,
                    results,
                    res.calls,
                )
            )
            self.log(f"{action.target.key} {action.field}={action.value}: {res.outcome}")
        return summary
