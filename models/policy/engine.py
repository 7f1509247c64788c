"""The policy engine: a verdict on each action proposal under the actuation policy, and the
stop-loss rules evaluated on observed numbers.

`evaluate` runs every rule on every proposal without stopping at the first failure, records each
check and every reason, and returns the most severe outcome: rejected > needs_approval > allowed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

from models.policy.config import (
    ActuationPolicy,
    StopLossRule,
    load_actuation_policy,
    policy_sha256,
)
from models.policy.proposal import UNIT_USD_PER_DAY, ActionProposal, Value, change_ratio

OUTCOMES: tuple[str, ...] = ("allowed", "needs_approval", "rejected")  # by severity
_SEVERITY = {o: i for i, o in enumerate(OUTCOMES)}

__all__ = [
    "OUTCOMES",
    "AppliedChange",
    "Check",
    "StopLossResult",
    "Verdict",
    "evaluate",
    "evaluate_stop_loss",
    "load_actuation_policy",
    "policy_sha256",
]


class Check(NamedTuple):
    name: str
    passed: bool
    detail: str
    outcome: str = "allowed"  # what this check alone asks for when it does not pass


@dataclass(frozen=True)
class AppliedChange:
    """An earlier change applied to the same target (for the per-period step limit)."""

    at: datetime  # naive datetimes are read as UTC
    from_value: Value
    to_value: Value


@dataclass(frozen=True)
class Verdict:
    outcome: str  # allowed | needs_approval | rejected
    reasons: tuple[str, ...]  # one per check that did not pass, "name: detail"
    checks: tuple[Check, ...]
    policy_version: str
    policy_sha256: str
    proposal_hash: str
    approvers: tuple[str, ...] = ()  # who may approve, when the outcome is needs_approval

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "checks": [c._asdict() for c in self.checks],
            "policy_version": self.policy_version,
            "policy_sha256": self.policy_sha256,
            "proposal_hash": self.proposal_hash,
            "approvers": list(self.approvers),
        }


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _fmt(ratio: float) -> str:
    return "inf" if math.isinf(ratio) else f"{ratio:.1%}"


def evaluate(
    proposal: ActionProposal,
    policy: ActuationPolicy,
    *,
    today: date | datetime,
    history: Iterable[AppliedChange] = (),
    kill_switch: bool | None = None,
) -> Verdict:
    """The policy's verdict on one proposal.

    `today`: when the change would be applied; a bare date counts as that day's midnight (UTC),
    and the per-period window then reaches back from there (the longer, safer window).
    `history`: changes already applied to the same target; those inside the window add up with
    this one against `max_change_per_period`. `kill_switch`: the live switch, when known;
    None uses the policy's default. Checks, in order: kill_switch, action_type, channel,
    platform, unit, tier, spend_cap, step_per_action, step_per_period, escalation, blackout.
    """
    now = _utc(today if isinstance(today, datetime) else datetime.combine(today, time()))
    checks: list[Check] = []

    def check(name: str, passed: bool, detail: str, outcome: str = "rejected") -> None:
        checks.append(Check(name, passed, detail, "allowed" if passed else outcome))

    killed = policy.kill_switch if kill_switch is None else kill_switch
    check("kill_switch", not killed, "kill switch is on" if killed else "kill switch is off")

    rule = policy.action_types.get(proposal.action_type)
    check(
        "action_type",
        rule is not None,
        f"{proposal.action_type!r} is known"
        if rule
        else f"unknown action type {proposal.action_type!r}; policy knows "
        f"{sorted(policy.action_types)}",
    )
    channel = policy.channels.get(proposal.channel)
    check(
        "channel",
        channel is not None,
        f"{proposal.channel!r} is known"
        if channel
        else f"unknown channel {proposal.channel!r}; policy actuates {sorted(policy.channels)}",
    )
    if channel is not None:
        check(
            "platform",
            proposal.platform == channel.platform,
            f"{proposal.channel} runs on {channel.platform}, proposal targets {proposal.platform}",
        )

    ratio = proposal.change_ratio
    if rule is not None:
        if rule.unit is not None:
            check(
                "unit",
                proposal.unit == rule.unit,
                f"{proposal.action_type} is in {rule.unit}, proposal is in {proposal.unit}",
            )
        if rule.tier == "forbidden":
            check("tier", False, f"{proposal.action_type} is forbidden by policy")
        elif rule.tier == "needs_approval":
            check("tier", False, f"{proposal.action_type} always needs approval", "needs_approval")
        else:
            check("tier", True, f"{proposal.action_type} is autonomous")

    if channel is not None and proposal.unit == UNIT_USD_PER_DAY:
        budget = proposal.proposed_value
        if isinstance(budget, Mapping):
            check("spend_cap", False, "a daily budget must be a number, not a mapping")
        else:
            check(
                "spend_cap",
                budget <= channel.daily_spend_cap,
                f"proposed daily budget ${budget:,.2f} vs {proposal.channel} cap "
                f"${channel.daily_spend_cap:,.2f}",
            )

    if rule is not None and rule.max_change_per_action is not None and ratio is not None:
        check(
            "step_per_action",
            ratio <= rule.max_change_per_action + 1e-12,
            f"change {_fmt(ratio)} vs max {_fmt(rule.max_change_per_action)} per action",
            rule.on_step_exceeded,
        )

    limit = rule.max_change_per_period if rule is not None else None
    if limit is not None and ratio is not None:
        start = now - timedelta(hours=limit.hours)
        # path length: every step in the window counts, so 100 -> 120 -> 100 -> 120 adds up
        earlier = [change_ratio(c.from_value, c.to_value) for c in history if _utc(c.at) >= start]
        earlier = [r for r in earlier if r is not None]
        total = sum(earlier) + ratio
        check(
            "step_per_period",
            total <= limit.ratio + 1e-12,
            f"cumulative change {_fmt(total)} over {limit.hours:g} h ({len(earlier)} earlier "
            f"change(s) in the window) vs max {_fmt(limit.ratio)}",
            rule.on_step_exceeded,
        )

    if (
        rule is not None
        and rule.tier == "autonomous"
        and rule.needs_approval_above is not None
        and ratio is not None
    ):
        check(
            "escalation",
            ratio <= rule.needs_approval_above + 1e-12,
            f"change {_fmt(ratio)} vs {_fmt(rule.needs_approval_above)} allowed without approval",
            "needs_approval",
        )

    days = {now.date()} | ({proposal.created_for} if proposal.created_for else set())
    blackouts = 0
    for blackout in policy.blackouts:
        hit = [d for d in sorted(days) if blackout.covers(d, proposal.channel)]
        if hit and proposal.action_type not in blackout.exempt_action_types:
            blackouts += 1
            hard = blackout.effect == "forbidden"
            check(
                "blackout",
                False,
                f"{hit[0]} is inside the blackout {blackout.start}..{blackout.end} "
                f"({blackout.reason}): "
                + ("nothing may change" if hard else "nothing is autonomous"),
                "rejected" if hard else "needs_approval",
            )
    if not blackouts:
        on = ", ".join(str(d) for d in sorted(days))
        check("blackout", True, f"no blackout applies on {on}")

    outcome = max((c.outcome for c in checks), key=_SEVERITY.__getitem__)
    return Verdict(
        outcome=outcome,
        reasons=tuple(f"{c.name}: {c.detail}" for c in checks if not c.passed),
        checks=tuple(checks),
        policy_version=policy.version,
        policy_sha256=policy.sha256,
        proposal_hash=proposal.proposal_hash,
        approvers=policy.approvers(proposal.action_type) if outcome == "needs_approval" else (),
    )


@dataclass(frozen=True)
class StopLossResult:
    rule_id: str
    metric: str
    action: str  # pause | revert | alert, when triggered
    triggered: bool
    value: float | None  # the metric's value; None when it could not be computed
    threshold: float
    detail: str


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _stop_value(rule: StopLossRule, o: Mapping[str, float]) -> tuple[float | None, str]:
    spend, conversions = o.get("spend"), o.get("conversions")
    if rule.metric == "spend_pace":
        pace = _ratio(spend, o.get("planned_spend"))
        return (None, "needs spend and planned_spend > 0") if pace is None else (pace - 1, "")
    if spend is None or spend < rule.min_spend:
        return None, f"waits for spend >= {rule.min_spend:g}"
    if conversions is None or conversions < rule.min_conversions:
        return None, f"waits for conversions >= {rule.min_conversions:g}"
    if rule.metric == "cpa_increase":
        cpa = o.get("cpa", _ratio(spend, conversions))
        rel = _ratio(cpa, o.get("baseline_cpa"))
        return (None, "needs cpa and baseline_cpa > 0") if rel is None else (rel - 1, "")
    rel = _ratio(o.get("roas"), o.get("baseline_roas"))  # roas_drop
    return (None, "needs roas and baseline_roas > 0") if rel is None else (1 - rel, "")


def evaluate_stop_loss(
    policy: ActuationPolicy | Iterable[StopLossRule],
    observed: Mapping[str, float],
    *,
    channel: str | None = None,
) -> tuple[StopLossResult, ...]:
    """Evaluate the stop-loss rules on observed numbers; pure, one result per applicable rule.

    `observed` may hold: spend, planned_spend (same period), conversions, cpa (default
    spend / conversions), baseline_cpa, roas, baseline_roas. Metrics (fractions):
    spend_pace = spend / planned_spend - 1; cpa_increase = cpa / baseline_cpa - 1;
    roas_drop = 1 - roas / baseline_roas. A rule triggers when its metric exceeds the threshold;
    rules whose inputs are missing, or below min_spend / min_conversions, do not trigger.
    Rules limited to other channels are skipped when `channel` is given.
    """
    rules = policy.stop_loss if isinstance(policy, ActuationPolicy) else tuple(policy)
    results = []
    for rule in rules:
        if channel is not None and rule.channels is not None and channel not in rule.channels:
            continue
        value, why = _stop_value(rule, observed)
        triggered = value is not None and value > rule.threshold
        if value is None:
            detail = f"{rule.metric} not evaluated: {why}"
        else:
            verb = rule.action if triggered else "ok"
            detail = f"{rule.metric} {value:+.1%} vs threshold {rule.threshold:.1%}: {verb}"
        results.append(
            StopLossResult(
                rule.id, rule.metric, rule.action, triggered, value, rule.threshold, detail
            )
        )
    return tuple(results)
