"""The actuation policy (`policies/actuation.yaml`): autonomy tiers, step limits, approvers,
daily spend caps, stop-loss rules, blackout dates and the kill-switch default.

Loaded and validated here (every error names the field at fault); its sha256 (of the parsed
YAML as canonical JSON, comments and layout excluded) is stored with every verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from models.policy_files import canonical_sha256, version_and_usd, yaml_sha256
from models.policy_files import number as _number
from models.simulation.config import CHANNEL_PLATFORM

DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[2] / "policies" / "actuation.yaml"

TIERS: tuple[str, ...] = ("autonomous", "needs_approval", "forbidden")
STEP_OUTCOMES: tuple[str, ...] = ("rejected", "needs_approval")
BLACKOUT_EFFECTS: tuple[str, ...] = ("needs_approval", "forbidden")
PLATFORMS: tuple[str, ...] = ("google_ads", "meta")
STOP_LOSS_METRICS: tuple[str, ...] = ("spend_pace", "cpa_increase", "roas_drop")
STOP_LOSS_ACTIONS: tuple[str, ...] = ("pause", "revert", "alert")

_TOP_KEYS = {"version", "currency", "kill_switch", "action_types", "channels"}
_TOP_KEYS |= {"stop_loss", "blackouts", "canary"}
_TYPE_KEYS = {
    "tier",
    "unit",
    "max_change_per_action",
    "max_change_per_period",
    "on_step_exceeded",
    "needs_approval_above",
    "approvers",
    "note",
}
_CHANNEL_KEYS = {"platform", "daily_spend_cap"}
_STOP_KEYS = {"id", "metric", "threshold", "action", "channels", "min_conversions", "min_spend"}
_STOP_KEYS.add("note")
_BLACKOUT_KEYS = {"start", "end", "channels", "effect", "exempt_action_types", "reason"}


@dataclass(frozen=True)
class PeriodLimit:
    ratio: float  # cumulative change allowed inside the window
    hours: float  # window length


@dataclass(frozen=True)
class ActionTypePolicy:
    tier: str
    approvers: tuple[str, ...] = ()
    unit: str | None = None  # None: any unit
    max_change_per_action: float | None = None
    max_change_per_period: PeriodLimit | None = None
    on_step_exceeded: str = "rejected"
    needs_approval_above: float | None = None  # change ratio above which autonomy ends
    note: str = ""


@dataclass(frozen=True)
class ChannelPolicy:
    platform: str
    daily_spend_cap: float  # USD per day, for one proposed daily budget


@dataclass(frozen=True)
class StopLossRule:
    id: str
    metric: str  # spend_pace | cpa_increase | roas_drop
    threshold: float  # a fraction: 0.3 = 30% over plan / worse than baseline
    action: str  # pause | revert | alert
    channels: tuple[str, ...] | None = None  # None: every channel
    min_conversions: float = 0.0  # cpa/roas rules wait for this many conversions
    min_spend: float = 0.0  # and for this much spend
    note: str = ""


@dataclass(frozen=True)
class Blackout:
    start: date
    end: date  # inclusive
    reason: str
    channels: tuple[str, ...] | None = None  # None: every channel
    effect: str = "needs_approval"  # or forbidden: a hard freeze
    exempt_action_types: tuple[str, ...] = ()

    def covers(self, day: date, channel: str) -> bool:
        return self.start <= day <= self.end and (self.channels is None or channel in self.channels)


@dataclass(frozen=True)
class CanaryPolicy:
    """Large changes go to a slice first and widen only after the slice's outcome passed."""

    geos: tuple[str, ...]  # the canary slice
    action_types: tuple[str, ...] = ("budget_change",)
    min_change: float = 0.0  # changes at least this large are canaried
    max_spend_pace: float = 0.3  # the outcome check: |observed / budgeted spend - 1| <= this


@dataclass(frozen=True)
class ActuationPolicy:
    version: str
    action_types: dict[str, ActionTypePolicy]
    channels: dict[str, ChannelPolicy]
    stop_loss: tuple[StopLossRule, ...] = ()
    blackouts: tuple[Blackout, ...] = ()
    kill_switch: bool = False
    currency: str = "USD"
    sha256: str = ""
    canary: CanaryPolicy | None = None

    def is_canary(self, action_type: str, change: float | None) -> bool:
        c = self.canary
        return (
            c is not None and action_type in c.action_types and change is not None
            and change >= c.min_change
        )  # fmt: skip

    def approvers(self, action_type: str) -> tuple[str, ...]:
        """Who may approve this action type; () for unknown or forbidden types."""
        rule = self.action_types.get(action_type)
        return () if rule is None or rule.tier == "forbidden" else rule.approvers

    def can_approve(self, action_type: str, approver: str, proposer: str) -> bool:
        """Approver listed for the type, and not the proposer (no one approves their own)."""
        return approver in self.approvers(action_type) and approver != proposer


def policy_sha256(path: str | Path = DEFAULT_POLICY_PATH) -> str:
    """Hash of a policy file's parsed content; comments and layout do not change it."""
    return yaml_sha256(path)


def _mapping(raw: Any, where: str, keys: set[str]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be a mapping, got {raw!r}")
    unknown = sorted(str(k) for k in set(raw) - keys)
    if unknown:
        raise ValueError(f"{where} has unknown fields {unknown}; allowed: {sorted(keys)}")
    return raw


def _choice(value: Any, where: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(f"{where} must be one of {list(options)}, got {value!r}")
    return value


def _names(raw: Any, where: str, *, allow_none: bool = True) -> tuple[str, ...] | None:
    if raw is None and allow_none:
        return None
    if not isinstance(raw, list) or not all(isinstance(x, str) and x.strip() for x in raw):
        raise ValueError(f"{where} must be a list of non-empty strings, got {raw!r}")
    if len(set(raw)) != len(raw):
        raise ValueError(f"{where} lists a name twice: {raw!r}")
    return tuple(raw)


def _date(raw: Any, where: str) -> date:
    if isinstance(raw, date):  # YAML parses 2026-11-27 into a date already
        return raw
    if isinstance(raw, str):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    raise ValueError(f"{where} must be a date written YYYY-MM-DD, got {raw!r}")


def _action_type(name: str, raw: Any) -> ActionTypePolicy:
    where = f"action_types.{name}"
    raw = _mapping(raw, where, _TYPE_KEYS)
    if "tier" not in raw:
        raise ValueError(f"{where} needs a tier, one of {list(TIERS)}")
    tier = _choice(raw["tier"], f"{where}.tier", TIERS)
    approvers = _names(raw.get("approvers", []), f"{where}.approvers", allow_none=False)
    if tier != "forbidden" and not approvers:
        # any non-forbidden action can be escalated to needs_approval (blackout, step limit)
        raise ValueError(f"{where}.approvers must name at least one approver (tier {tier})")
    unit = raw.get("unit")
    if unit is not None and (not isinstance(unit, str) or not unit.strip()):
        raise ValueError(f"{where}.unit must be a non-empty string, got {unit!r}")
    per_action = _number(
        raw.get("max_change_per_action"), f"{where}.max_change_per_action", allow_none=True
    )
    period = None
    raw_period = raw.get("max_change_per_period")
    if raw_period is not None:
        raw_period = _mapping(raw_period, f"{where}.max_change_per_period", {"ratio", "hours"})
        if set(raw_period) != {"ratio", "hours"}:
            raise ValueError(f"{where}.max_change_per_period needs both ratio and hours")
        period = PeriodLimit(
            ratio=_number(raw_period["ratio"], f"{where}.max_change_per_period.ratio"),
            hours=_number(
                raw_period["hours"], f"{where}.max_change_per_period.hours", positive=True
            ),
        )
    escalate = _number(
        raw.get("needs_approval_above"), f"{where}.needs_approval_above", allow_none=True
    )
    if escalate is not None and per_action is not None and escalate > per_action:
        raise ValueError(
            f"{where}.needs_approval_above {escalate:g} is above max_change_per_action "
            f"{per_action:g}: it could never apply"
        )
    note = raw.get("note", "")
    if not isinstance(note, str):
        raise ValueError(f"{where}.note must be text, got {note!r}")
    return ActionTypePolicy(
        tier=tier,
        approvers=approvers,
        unit=unit,
        max_change_per_action=per_action,
        max_change_per_period=period,
        on_step_exceeded=_choice(
            raw.get("on_step_exceeded", "rejected"), f"{where}.on_step_exceeded", STEP_OUTCOMES
        ),
        needs_approval_above=escalate,
        note=note,
    )


def _channel(name: str, raw: Any) -> ChannelPolicy:
    where = f"channels.{name}"
    if name not in CHANNEL_PLATFORM:
        raise ValueError(
            f"channels has unknown channel {name!r}; known: {sorted(CHANNEL_PLATFORM)}"
        )
    raw = _mapping(raw, where, _CHANNEL_KEYS)
    for key in sorted(_CHANNEL_KEYS - set(raw)):
        raise ValueError(f"{where} needs {key}")
    platform = _choice(raw["platform"], f"{where}.platform", PLATFORMS)
    if platform != CHANNEL_PLATFORM[name]:
        raise ValueError(
            f"{where}.platform is {platform!r} but {name} runs on {CHANNEL_PLATFORM[name]!r}"
        )
    return ChannelPolicy(platform, _number(raw["daily_spend_cap"], f"{where}.daily_spend_cap"))


def _stop_loss(i: int, raw: Any, channels: set[str]) -> StopLossRule:
    where = f"stop_loss[{i}]"
    raw = _mapping(raw, where, _STOP_KEYS)
    for key in ("id", "metric", "threshold", "action"):
        if key not in raw:
            raise ValueError(f"{where} needs {key}")
    rule_id = raw["id"]
    if not isinstance(rule_id, str) or not rule_id.strip():
        raise ValueError(f"{where}.id must be a non-empty string, got {rule_id!r}")
    rule_channels = _names(raw.get("channels"), f"{where}.channels")
    for ch in rule_channels or ():
        if ch not in channels:
            raise ValueError(f"{where}.channels names {ch!r}, not a channel of this policy")
    return StopLossRule(
        id=rule_id,
        metric=_choice(raw["metric"], f"{where}.metric", STOP_LOSS_METRICS),
        threshold=_number(raw["threshold"], f"{where}.threshold", positive=True),
        action=_choice(raw["action"], f"{where}.action", STOP_LOSS_ACTIONS),
        channels=rule_channels,
        min_conversions=_number(raw.get("min_conversions", 0), f"{where}.min_conversions"),
        min_spend=_number(raw.get("min_spend", 0), f"{where}.min_spend"),
        note=str(raw.get("note", "")),
    )


def _blackout(i: int, raw: Any, channels: set[str], types: set[str]) -> Blackout:
    where = f"blackouts[{i}]"
    raw = _mapping(raw, where, _BLACKOUT_KEYS)
    if "start" not in raw:
        raise ValueError(f"{where} needs start")
    reason = raw.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"{where} needs a reason")
    start = _date(raw["start"], f"{where}.start")
    end = _date(raw.get("end", start), f"{where}.end")
    if end < start:
        raise ValueError(f"{where}: end {end} is before start {start}")
    on = _names(raw.get("channels"), f"{where}.channels")
    for ch in on or ():
        if ch not in channels:
            raise ValueError(f"{where}.channels names {ch!r}, not a channel of this policy")
    exempt = _names(raw.get("exempt_action_types", []), f"{where}.exempt_action_types")
    for t in exempt or ():
        if t not in types:
            raise ValueError(f"{where}.exempt_action_types names {t!r}, not an action type")
    return Blackout(
        start=start,
        end=end,
        reason=reason,
        channels=on,
        effect=_choice(raw.get("effect", "needs_approval"), f"{where}.effect", BLACKOUT_EFFECTS),
        exempt_action_types=exempt or (),
    )


def policy_from_dict(document: Any, *, sha256: str | None = None) -> ActuationPolicy:
    """Validate a parsed actuation policy; every error names the field at fault."""
    raw = _mapping(document, "the actuation policy", _TOP_KEYS)
    version, currency = version_and_usd(raw, "the actuation policy", "spend is in USD")
    kill = raw.get("kill_switch", False)
    if not isinstance(kill, bool):
        raise ValueError(f"kill_switch must be true or false, got {kill!r}")

    raw_types = raw.get("action_types")
    if not isinstance(raw_types, Mapping) or not raw_types:
        raise ValueError("action_types must map at least one action type to its rules")
    action_types = {str(n): _action_type(str(n), r) for n, r in raw_types.items()}
    raw_channels = raw.get("channels")
    if not isinstance(raw_channels, Mapping) or not raw_channels:
        raise ValueError("channels must map at least one channel to its platform and cap")
    channels = {str(n): _channel(str(n), r) for n, r in raw_channels.items()}

    raw_stops = raw.get("stop_loss") or []
    if not isinstance(raw_stops, list):
        raise ValueError(f"stop_loss must be a list of rules, got {raw_stops!r}")
    stops = tuple(_stop_loss(i, r, set(channels)) for i, r in enumerate(raw_stops))
    ids = [s.id for s in stops]
    if len(set(ids)) != len(ids):
        raise ValueError(f"stop_loss ids must be unique, got {ids}")
    raw_blackouts = raw.get("blackouts") or []
    if not isinstance(raw_blackouts, list):
        raise ValueError(f"blackouts must be a list, got {raw_blackouts!r}")
    blackouts = tuple(
        _blackout(i, r, set(channels), set(action_types)) for i, r in enumerate(raw_blackouts)
    )
    canary = None
    if raw.get("canary") is not None:
        rc = _mapping(
            raw["canary"], "canary", {"geos", "action_types", "min_change", "max_spend_pace"}
        )
        geos = _names(rc.get("geos"), "canary.geos", allow_none=False)
        if not geos:
            raise ValueError("canary.geos must name at least one geo")
        types = _names(
            rc.get("action_types", ["budget_change"]), "canary.action_types", allow_none=False
        )
        unknown = sorted(set(types) - set(action_types))
        if unknown:
            raise ValueError(f"canary.action_types names unknown action types {unknown}")
        canary = CanaryPolicy(
            geos=geos, action_types=types,
            min_change=_number(rc.get("min_change", 0.0), "canary.min_change"),
            max_spend_pace=_number(rc.get("max_spend_pace", 0.3), "canary.max_spend_pace"),
        )  # fmt: skip
    return ActuationPolicy(
        canary=canary,
        version=version,
        action_types=action_types,
        channels=channels,
        stop_loss=stops,
        blackouts=blackouts,
        kill_switch=kill,
        currency=currency,
        sha256=sha256 if sha256 is not None else canonical_sha256(document),
    )


def load_actuation_policy(path: str | Path | None = None) -> ActuationPolicy:
    """Read, validate and hash an actuation policy file (default `policies/actuation.yaml`)."""
    path = Path(path) if path is not None else DEFAULT_POLICY_PATH
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return policy_from_dict(document, sha256=canonical_sha256(document))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
