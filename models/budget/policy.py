"""The budget policy (`policies/budget.yaml`): spend floors and caps, step limits, objective.

Its sha256 (of the parsed YAML, canonical JSON) is recorded with every plan built under it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from models.policy_files import canonical_sha256, version_and_usd, yaml_sha256
from models.policy_files import number as _number
from models.simulation.config import CHANNEL_PLATFORM

DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[2] / "policies" / "budget.yaml"
KNOWN_CHANNELS: tuple[str, ...] = tuple(CHANNEL_PLATFORM)
OBJECTIVES: tuple[str, ...] = ("max_revenue", "target_roas")
DEFAULT_MAX_CHANGE = 0.2  # platforms' learning phase: move a budget by at most ~20% a period

_TOP_KEYS = {
    "version",
    "period",
    "currency",
    "objective",
    "target_roas",
    "max_change_per_period",
    "channels",
}
_CHANNEL_KEYS = {"min_weekly_spend", "max_weekly_spend", "max_change_per_period"}


@dataclass(frozen=True)
class ChannelLimits:
    min_weekly_spend: float = 0.0  # e.g. a minimum contract spend
    max_weekly_spend: float = math.inf
    max_change_per_period: float | None = None  # None: the policy-wide step limit


@dataclass(frozen=True)
class BudgetPolicy:
    version: str
    period: str = "week"
    currency: str = "USD"
    objective: str = "max_revenue"
    target_roas: float | None = None
    max_change_per_period: float | None = DEFAULT_MAX_CHANGE  # None: no step limit
    channels: dict[str, ChannelLimits] = field(default_factory=dict)
    sha256: str | None = None  # of the source document; None when built in code

    def limits(self, channel: str) -> ChannelLimits:
        """The channel's limits; a channel the policy does not list gets [0, inf)."""
        return self.channels.get(channel, ChannelLimits())

    def step(self, channel: str) -> float | None:
        own = self.limits(channel).max_change_per_period
        return self.max_change_per_period if own is None else own

    @property
    def hash(self) -> str:
        return self.sha256 if self.sha256 is not None else canonical_sha256(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        def num(x: float | None) -> float | None:
            return None if x is None or math.isinf(x) else x

        return {
            "version": self.version,
            "period": self.period,
            "currency": self.currency,
            "objective": self.objective,
            "target_roas": self.target_roas,
            "max_change_per_period": self.max_change_per_period,
            "channels": {
                ch: {
                    "min_weekly_spend": lim.min_weekly_spend,
                    "max_weekly_spend": num(lim.max_weekly_spend),
                    "max_change_per_period": lim.max_change_per_period,
                }
                for ch, lim in sorted(self.channels.items())
            },
        }


def policy_sha256(path: str | Path = DEFAULT_POLICY_PATH) -> str:
    """Hash of a policy file's parsed content; comments and layout do not change it."""
    return yaml_sha256(path)


def _channel_limits(name: str, raw: Any) -> ChannelLimits:
    if raw is None:
        return ChannelLimits()
    if not isinstance(raw, Mapping):
        raise ValueError(f"channels.{name} must be a mapping, got {raw!r}")
    unknown = sorted(set(raw) - _CHANNEL_KEYS)
    if unknown:
        raise ValueError(
            f"channels.{name} has unknown fields {unknown}; allowed: {sorted(_CHANNEL_KEYS)}"
        )
    low = _number(raw.get("min_weekly_spend", 0.0), f"channels.{name}.min_weekly_spend")
    high = _number(
        raw.get("max_weekly_spend"), f"channels.{name}.max_weekly_spend", allow_none=True
    )
    high = math.inf if high is None else high
    if high < low:
        raise ValueError(
            f"channels.{name}: max_weekly_spend {high:g} is below min_weekly_spend {low:g}"
        )
    step = _number(
        raw.get("max_change_per_period"), f"channels.{name}.max_change_per_period", allow_none=True
    )
    return ChannelLimits(low, high, step)


def policy_from_dict(
    document: Any,
    *,
    known_channels: Iterable[str] = KNOWN_CHANNELS,
    sha256: str | None = None,
) -> BudgetPolicy:
    """Validate a parsed policy document; every error names the field at fault."""
    if not isinstance(document, Mapping):
        raise ValueError(f"a budget policy must be a mapping, got {type(document).__name__}")
    unknown = sorted(set(document) - _TOP_KEYS)
    if unknown:
        raise ValueError(
            f"budget policy has unknown fields {unknown}; allowed: {sorted(_TOP_KEYS)}"
        )
    version, currency = version_and_usd(document, "budget policy", "spend and revenue are in USD")
    period = document.get("period", "week")
    if period != "week":
        raise ValueError(f"period must be 'week' (the MMM and plans are weekly), got {period!r}")
    objective = document.get("objective", "max_revenue")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    target = _number(document.get("target_roas"), "target_roas", allow_none=True, positive=True)
    if objective == "target_roas" and target is None:
        raise ValueError("objective target_roas needs a target_roas")
    step = _number(
        document.get("max_change_per_period", DEFAULT_MAX_CHANGE),
        "max_change_per_period",
        allow_none=True,
    )

    raw_channels = document.get("channels") or {}
    if not isinstance(raw_channels, Mapping):
        raise ValueError(f"channels must be a mapping of channel to limits, got {raw_channels!r}")
    known = set(known_channels)
    unknown_channels = sorted(str(c) for c in raw_channels if c not in known)
    if unknown_channels:
        raise ValueError(
            f"channels has unknown channel keys {unknown_channels}; known: {sorted(known)}"
        )
    channels = {str(c): _channel_limits(str(c), raw) for c, raw in raw_channels.items()}
    return BudgetPolicy(
        version=str(version),
        period=period,
        currency=currency,
        objective=objective,
        target_roas=target,
        max_change_per_period=step,
        channels=channels,
        sha256=sha256,
    )


def load_budget_policy(
    path: str | Path = DEFAULT_POLICY_PATH, *, known_channels: Iterable[str] = KNOWN_CHANNELS
) -> BudgetPolicy:
    """Read, validate and hash a budget policy YAML file."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return policy_from_dict(
            document, known_channels=known_channels, sha256=canonical_sha256(document)
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
