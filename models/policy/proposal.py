"""Action proposals: one proposed change to an ad platform, with everything needed to judge it.

Budget plans, bid changes, creative launches, traffic splits and pauses all become an
`ActionProposal`: the change (current and proposed value), the inputs it was computed from
(asset versions, data snapshot), model and prompt versions, seed, the expected effect with its
interval, and `proposal_hash`, a sha256 of all of that. The hash is what a verdict, an approval
and the audit log point at: approving one proposal can never approve a different one.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from types import MappingProxyType
from typing import Any

from models.policy_files import finite_number

# Bumped when the hashed document changes shape; part of every hash.
PROPOSAL_SCHEMA = "adloop.action_proposal/1"

# Units the engine knows; `usd_per_day` values are daily budgets and meet the channel spend caps.
UNIT_USD_PER_DAY = "usd_per_day"

Value = float | Mapping[str, float] | None


def _number(value: Any, where: str, *, allow_none: bool = True) -> float | None:
    return finite_number(value, where, allow_none=allow_none)


def _value(value: Any, where: str) -> Value:
    """A number (a budget, a bid), a mapping of arm to number (a traffic split), or None."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"{where} keys must be non-empty strings, got {key!r}")
            out[key] = _number(item, f"{where}[{key!r}]", allow_none=False)
        return MappingProxyType(out)
    return _number(value, where)


def _text(value: Any, where: str, *, required: bool = True) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {value!r}")
    if required and not value.strip():
        raise ValueError(f"{where} must not be empty")
    return value


def change_ratio(current: Value, proposed: Value) -> float | None:
    """How far a change moves a value, as a fraction.

    Numbers: |proposed - current| / |current| (0 -> 0 is 0; 0 -> anything else is inf).
    Mappings (traffic splits, shares summing to 1): the share of traffic that moves, i.e. half
    the summed absolute share differences (arms missing on one side count as 0).
    None on either side (a launch, a value the platform does not have yet): None, no step.
    """
    if current is None or proposed is None:
        return None
    if isinstance(current, Mapping) != isinstance(proposed, Mapping):
        raise ValueError("cannot compare a number with a split: current and proposed differ")
    if isinstance(current, Mapping):
        arms = set(current) | set(proposed)
        return 0.5 * sum(abs(proposed.get(a, 0.0) - current.get(a, 0.0)) for a in arms)
    if current == 0:
        return 0.0 if proposed == 0 else math.inf
    return abs(proposed - current) / abs(current)


def step_toward(current: Value, target: Value, max_step: float | None) -> tuple[Value, float]:
    """Move from `current` toward `target` by at most `max_step` (as `change_ratio` measures
    it), so that a plan a platform should reach over weeks becomes this week's allowed step.
    Returns the value and the fraction of the way it goes.

    Numbers are money: rounded to cents toward `current`, so rounding never breaks the limit.
    Splits move along the straight line between the two, which keeps the shares summing to 1
    and makes a split's policy value (hence its expected effect) exactly that fraction of the
    way from current to target."""
    moved = change_ratio(current, target)
    if moved is None or max_step is None or moved <= max_step or moved == 0:
        return target, 1.0
    if isinstance(current, Mapping):
        frac = max_step / moved
        arms = sorted(set(current) | set(target))
        return {a: (1 - frac) * current.get(a, 0.0) + frac * target.get(a, 0.0) for a in arms}, frac
    cur = round(float(current), 2)
    if target > cur:
        value = math.floor(cur * (1 + max_step) * 100 + 1e-9) / 100
    else:
        value = math.ceil(cur * (1 - max_step) * 100 - 1e-9) / 100
    span = target - cur
    return value, (value - cur) / span if span else 1.0


@dataclass(frozen=True)
class ActionProposal:
    """One proposed change. Every field is decision-relevant and enters `proposal_hash`."""

    action_type: str  # budget_change, bid_change, creative_launch, traffic_split, pause, ...
    platform: str  # google_ads, meta
    account_id: str
    target_id: str  # campaign, ad set, shared budget or ad id on the platform
    channel: str  # search, social, display, video
    current_value: Value  # None when nothing exists yet (a launch)
    proposed_value: Value  # a daily budget in USD, a bid, a split {arm: share}, ...
    unit: str  # usd_per_day, usd_per_click, share, ...
    inputs: Mapping[str, str] = field(default_factory=dict)  # asset versions, data snapshot ids
    model_version: str = ""
    prompt_version: str = ""
    seed: int | None = None
    expected_effect: float | None = None
    effect_low: float | None = None
    effect_high: float | None = None
    effect_metric: str = ""  # what the effect measures, e.g. revenue_usd_per_week
    proposer: str = ""  # who or what proposed it (a person, or the job that did)
    canary: bool = False  # a canary: applied to a small slice first
    created_for: date | None = None  # the day the change is meant for

    def __post_init__(self) -> None:
        for name in ("action_type", "platform", "account_id", "target_id", "channel", "unit"):
            _text(getattr(self, name), name)
        for name in ("model_version", "prompt_version", "effect_metric", "proposer"):
            _text(getattr(self, name), name, required=False)
        current = _value(self.current_value, "current_value")
        proposed = _value(self.proposed_value, "proposed_value")
        if proposed is None:
            raise ValueError("proposed_value is required")
        change_ratio(current, proposed)  # raises on a number compared with a split
        object.__setattr__(self, "current_value", current)
        object.__setattr__(self, "proposed_value", proposed)
        if not isinstance(self.inputs, Mapping):
            raise ValueError(f"inputs must be a mapping of name to version, got {self.inputs!r}")
        inputs = {
            _text(k, "inputs key"): _text(v, f"inputs[{k!r}]") for k, v in self.inputs.items()
        }
        object.__setattr__(self, "inputs", MappingProxyType(inputs))
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ValueError(f"seed must be an integer or None, got {self.seed!r}")
        effect = {
            name: _number(getattr(self, name), name)
            for name in ("expected_effect", "effect_low", "effect_high")
        }
        for name, number in effect.items():
            object.__setattr__(self, name, number)
        low, mid, high = effect["effect_low"], effect["expected_effect"], effect["effect_high"]
        if low is not None and high is not None and low > high:
            raise ValueError(f"effect_low {low:g} is above effect_high {high:g}")
        if mid is not None and (
            (low is not None and mid < low) or (high is not None and mid > high)
        ):
            raise ValueError(f"expected_effect {mid:g} lies outside [effect_low, effect_high]")
        if not isinstance(self.canary, bool):
            raise ValueError(f"canary must be true or false, got {self.canary!r}")
        if self.created_for is not None and not isinstance(self.created_for, date):
            raise ValueError(f"created_for must be a date or None, got {self.created_for!r}")

    def __hash__(self) -> int:  # the mappings inside are not hashable themselves
        return hash(self.proposal_hash)

    @property
    def change_ratio(self) -> float | None:
        """The fraction this proposal moves its target by; see `change_ratio`."""
        return change_ratio(self.current_value, self.proposed_value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content: mappings as plain dicts, the date as ISO text."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, date):
                value = value.isoformat()
            out[f.name] = value
        return out

    def canonical_json(self) -> str:
        """Sorted keys, no whitespace, floats as repr (json's own float format), schema tag."""
        document = {"schema": PROPOSAL_SCHEMA, **self.to_dict()}
        return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)

    @property
    def proposal_hash(self) -> str:
        """sha256 of `canonical_json()`: stable across runs, processes and machines."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()
