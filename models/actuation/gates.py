"""Gates: each one can stop an action before any call reaches an ad platform, and says why.

A gate is any callable `gate(action) -> GateResult`. The actuator runs every gate on every
action (it does not stop at the first failure, so the audit log shows all reasons) and sends
nothing for an action unless all passed. The standard gates are built here from plain data;
the Dagster asset feeds them what it read from the warehouse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from models.actuation.executor import Action


class GateResult(NamedTuple):
    gate: str
    passed: bool
    detail: str


Gate = Callable[["Action"], GateResult]


def upstream_checks_gate(failed_checks: Iterable[str]) -> Gate:
    """Every upstream blocking asset check passed (data quality, moderation, OPE, MMM gates)."""
    failed = sorted(set(failed_checks))

    def gate(_action: Action) -> GateResult:
        if failed:
            return GateResult(
                "upstream_checks", False, f"{len(failed)} blocking check(s) failed: {failed[:5]}"
            )
        return GateResult("upstream_checks", True, "every upstream blocking check passed")

    return gate


def verdict_gate(verdicts: Mapping[str, str], approval_states: Mapping[str, str]) -> Gate:
    """The policy verdict allows the action, or it needs approval and has a valid one.

    `verdicts`: proposal hash -> allowed | needs_approval | rejected (as stored with the proposal).
    `approval_states`: proposal hash -> approved | pending | rejected | ... (from the approvals).
    """

    def gate(action: Action) -> GateResult:
        h = action.proposal.proposal_hash
        verdict = verdicts.get(h)
        if verdict is None:
            return GateResult("policy", False, "no policy verdict recorded for this proposal")
        if verdict == "allowed":
            return GateResult("policy", True, "allowed by policy")
        if verdict == "rejected":
            return GateResult("policy", False, "rejected by policy")
        state = approval_states.get(h, "pending")
        if state == "approved":
            return GateResult("policy", True, "needs approval and has a valid approval")
        return GateResult("policy", False, f"needs approval; approval is {state}")

    return gate


def kill_switch_gate(engaged: Callable[[], str | None]) -> Gate:
    """`engaged()` returns the reason when the switch is on, else None."""

    def gate(_action: Action) -> GateResult:
        reason = engaged()
        if reason:
            return GateResult("kill_switch", False, f"kill switch is on: {reason}")
        return GateResult("kill_switch", True, "kill switch is off")

    return gate


@dataclass
class DailyCapGate:
    """The channel's total daily budget after this action stays within the policy's cap.

    `current_usd`: target key -> the daily budget (USD) each target holds now; the gate keeps
    it up to date as actions pass, so a run cannot exceed the cap by many small steps.
    """

    caps_usd: Mapping[str, float]  # channel -> cap on the sum of its daily budgets
    current_usd: dict[str, float]
    channel_of: dict[str, str]  # target key -> channel

    def __call__(self, action: Action) -> GateResult:
        if action.field != "amount":
            return GateResult("daily_cap", True, "not a budget change")
        channel = action.target.channel
        cap = self.caps_usd.get(channel)
        if cap is None:
            return GateResult("daily_cap", False, f"no daily cap for channel {channel!r}")
        others = sum(
            usd
            for key, usd in self.current_usd.items()
            if self.channel_of.get(key) == channel and key != action.target.key
        )
        total = others + action.usd_per_day
        if total > cap + 1e-6:
            return GateResult(
                "daily_cap", False,
                f"{channel} would total ${total:,.2f}/day, over its cap ${cap:,.2f} "
                f"(${cap - others:,.2f} left for this budget)",
            )  # fmt: skip
        self.current_usd[action.target.key] = action.usd_per_day
        self.channel_of[action.target.key] = channel
        return GateResult(
            "daily_cap", True, f"{channel} totals ${total:,.2f}/day of its ${cap:,.2f} cap"
        )


def canary_gate(canary_geos: Iterable[str], widen: Mapping[str, bool | None]) -> Gate:
    """Canary first: an action marked canary outside the canary geos waits until the canary's
    outcome check passed for its group (`widen[group]` True); False means the check failed."""
    geos = frozenset(canary_geos)

    def gate(action: Action) -> GateResult:
        if not action.proposal.canary:
            return GateResult("canary", True, "not a canary change")
        if action.target.geo in geos:
            return GateResult("canary", True, f"{action.target.geo} is in the canary slice")
        state = widen.get(action.canary_group)
        if state is not None and bool(state):
            return GateResult("canary", True, "the canary passed its outcome check: widening")
        if state is not None:
            return GateResult("canary", False, "the canary failed its outcome check: not widened")
        return GateResult(
            "canary", False, f"waits for the canary in {sorted(geos)} to pass its outcome check"
        )

    return gate
