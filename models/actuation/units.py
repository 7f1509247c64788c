"""Daily budgets between the decision's USD and each platform's own integer unit.

Google Ads: micros of the account currency, in whole cents (multiples of 10,000 micros).
Meta: minor units (cents) of the ad account's currency. `usd_per_unit` is the USD value of one
unit of the account currency (1.0 for USD), from the warehouse's exchange rates.
"""

from __future__ import annotations

import math

from connectors.ad_platforms.base import GOOGLE_ADS, META, BudgetTarget

MICROS_PER_CENT = 10_000


def to_platform_amount(usd_per_day: float, target: BudgetTarget, usd_per_unit: float = 1.0) -> int:
    """A daily budget in USD as the integer the platform stores, rounded to whole cents."""
    if not math.isfinite(usd_per_day) or usd_per_day < 0:
        raise ValueError(f"a daily budget must be a finite amount >= 0, got {usd_per_day!r}")
    if not math.isfinite(usd_per_unit) or usd_per_unit <= 0:
        raise ValueError(f"usd_per_unit must be > 0, got {usd_per_unit!r}")
    cents = round(usd_per_day / usd_per_unit * 100)
    if target.platform == GOOGLE_ADS:
        return cents * MICROS_PER_CENT
    if target.platform == META:
        return cents
    raise ValueError(f"no budget unit for platform {target.platform!r}")


def to_usd(amount: int, target: BudgetTarget, usd_per_unit: float = 1.0) -> float:
    """The platform's integer budget as USD per day."""
    if target.platform == GOOGLE_ADS:
        return amount / 1_000_000 * usd_per_unit
    if target.platform == META:
        return amount / 100 * usd_per_unit
    raise ValueError(f"no budget unit for platform {target.platform!r}")
