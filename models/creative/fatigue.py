"""Creative fatigue: does a creative's click-through rate fall as its cumulative exposure grows?
A quasi-Poisson log-linear fit of daily clicks on cumulative impressions, per creative."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

REQUIRED_COLUMNS = ("date_day", "creative_id", "impressions", "clicks")
FATIGUED = "fatigued"
NOT_FATIGUED = "not_fatigued"
INSUFFICIENT_DATA = "insufficient_data"
_PER_MILLION = 1e6


@dataclass(frozen=True)
class FatigueConfig:
    min_days: int = 7  # days with impressions
    min_clicks: int = 50
    alpha: float = 0.05  # one-sided: only a falling CTR counts as fatigue
    min_decay: float = 0.20  # a significant but smaller drop is not worth acting on
    # "linear": CTR = c * exp(slope * exposure in millions), the classic wear-out curve;
    # "log": CTR = c * exposure ** slope. The log form puts most of the leverage on the first
    # days, so one noisy launch day can make or hide fatigue: it flags flat creatives about
    # 4% of the time on overdispersed data where the linear form flagged none in 200.
    exposure: Literal["linear", "log"] = "linear"
    max_iter: int = 100

    def __post_init__(self) -> None:
        if self.exposure not in ("linear", "log"):
            raise ValueError(f"exposure must be 'linear' or 'log', got {self.exposure!r}")
        if self.min_days < 3:
            raise ValueError("min_days must be at least 3: two parameters and a dispersion")
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if not 0 <= self.min_decay < 1:
            raise ValueError(f"min_decay is a fraction in [0, 1), got {self.min_decay}")


@dataclass(frozen=True)
class FatigueResult:
    creative_id: str
    status: str  # fatigued, not_fatigued, insufficient_data
    fatigued: bool
    reason: str
    days: int
    impressions: int
    clicks: int
    # d log CTR per million cumulative impressions ("linear") or per log impression ("log").
    slope: float | None = None
    slope_se: float | None = None
    slope_interval: tuple[float, float] | None = None  # two-sided, level 1 - 2 * alpha
    p_value: float | None = None  # one-sided, against a slope >= 0
    decay: float | None = None  # 1 - fitted CTR on the last day / on the first day
    decay_interval: tuple[float, float] | None = None
    ctr_first: float | None = None
    ctr_last: float | None = None
    dispersion: float | None = None  # Pearson chi2 / df; > 1 means day-to-day noise beyond Poisson


@dataclass(frozen=True)
class _Fit:
    intercept: float
    slope: float
    slope_se: float
    dispersion: float
    df: int


def _fit_loglinear(
    x: np.ndarray, clicks: np.ndarray, impressions: np.ndarray, max_iter: int
) -> _Fit | None:
    """Poisson regression of clicks with offset log(impressions) on centred x by IRLS; standard
    errors scaled by the Pearson dispersion (never below 1), so noisy days widen the interval."""
    X = np.column_stack([np.ones_like(x), x])
    offset = np.log(impressions)
    beta = np.array([np.log(clicks.sum() / impressions.sum()), 0.0])
    for _ in range(max_iter):
        eta = X @ beta + offset
        mu = np.exp(eta)
        z = eta - offset + (clicks - mu) / mu
        xtw = X.T * mu
        new = np.linalg.solve(xtw @ X, xtw @ z)
        if not np.all(np.isfinite(new)):
            return None
        done = np.max(np.abs(new - beta)) < 1e-10
        beta = new
        if done:
            break
    else:
        return None
    mu = np.exp(X @ beta + offset)
    df = len(x) - 2
    dispersion = float(np.sum((clicks - mu) ** 2 / mu) / df)
    cov = np.linalg.inv((X.T * mu) @ X) * max(dispersion, 1.0)
    return _Fit(float(beta[0]), float(beta[1]), float(np.sqrt(cov[1, 1])), dispersion, df)


def fatigue_for_creative(
    creative_id: str,
    impressions: np.ndarray,
    clicks: np.ndarray,
    config: FatigueConfig = FatigueConfig(),
    prior_impressions: int = 0,
) -> FatigueResult:
    """Fatigue of one creative from its daily impressions and clicks in date order. Cumulative
    exposure counts from launch: pass `prior_impressions` when the rows start later."""
    imp = np.asarray(impressions, dtype=np.float64)
    clk = np.asarray(clicks, dtype=np.float64)
    if imp.shape != clk.shape or imp.ndim != 1:
        raise ValueError(f"creative {creative_id}: impressions and clicks must be equal 1-D arrays")
    if np.any(imp < 0) or np.any(clk < 0) or np.any(clk > imp):
        raise ValueError(
            f"creative {creative_id}: counts must satisfy 0 <= clicks <= impressions every day"
        )
    # Exposure at the middle of each day: the day's own impressions count half, so the first
    # day's x is finite and its CTR is paired with the exposure its impressions actually saw.
    exposure = prior_impressions + np.cumsum(imp) - imp / 2
    served = imp > 0
    imp, clk, exposure = imp[served], clk[served], exposure[served]
    base = {
        "creative_id": creative_id,
        "days": int(served.sum()),
        "impressions": int(imp.sum()),
        "clicks": int(clk.sum()),
    }
    if base["days"] < config.min_days:
        return FatigueResult(
            status=INSUFFICIENT_DATA,
            fatigued=False,
            reason=f"{base['days']} days with impressions, fewer than {config.min_days}",
            **base,
        )
    if base["clicks"] < config.min_clicks:
        return FatigueResult(
            status=INSUFFICIENT_DATA,
            fatigued=False,
            reason=f"{base['clicks']} clicks, fewer than {config.min_clicks}",
            **base,
        )
    x = np.log(exposure) if config.exposure == "log" else exposure / _PER_MILLION
    centre = float(x.mean())
    fit = _fit_loglinear(x - centre, clk, imp, config.max_iter)
    if fit is None:
        return FatigueResult(
            status=INSUFFICIENT_DATA, fatigued=False, reason="the fit did not converge", **base
        )
    q = float(stats.t.ppf(1 - config.alpha, fit.df))
    lo, hi = fit.slope - q * fit.slope_se, fit.slope + q * fit.slope_se
    span = float(x[-1] - x[0])
    decay = 1 - float(np.exp(fit.slope * span))
    p_value = float(stats.t.cdf(fit.slope / fit.slope_se, fit.df)) if fit.slope_se > 0 else 0.0
    significant = hi < 0
    fatigued = significant and decay >= config.min_decay
    if fatigued:
        reason = (
            f"CTR fell {decay:.0%} over the observed exposure (slope {fit.slope:.3f}, "
            f"one-sided p {p_value:.3g} < {config.alpha:g})"
        )
    elif significant:
        reason = f"CTR fell {decay:.0%}, significant but under the {config.min_decay:.0%} threshold"
    else:
        reason = f"no significant decline (slope {fit.slope:.3f}, one-sided p {p_value:.3g})"
    return FatigueResult(
        status=FATIGUED if fatigued else NOT_FATIGUED,
        fatigued=fatigued,
        reason=reason,
        slope=fit.slope,
        slope_se=fit.slope_se,
        slope_interval=(lo, hi),
        p_value=p_value,
        decay=decay,
        decay_interval=(1 - float(np.exp(hi * span)), 1 - float(np.exp(lo * span))),
        ctr_first=float(np.exp(fit.intercept + fit.slope * (x[0] - centre))),
        ctr_last=float(np.exp(fit.intercept + fit.slope * (x[-1] - centre))),
        dispersion=fit.dispersion,
        **base,
    )


def creative_fatigue(
    rows: pd.DataFrame,
    config: FatigueConfig = FatigueConfig(),
    prior_impressions: Mapping[str, int] | None = None,
) -> list[FatigueResult]:
    """One result per creative in `rows` (date_day, creative_id, impressions, clicks; several
    rows per creative and day, e.g. per geo, are summed), ordered by creative id. Creatives with
    too little data come back as insufficient_data rather than being left out."""
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"creative-day rows lack columns {missing}")
    if rows[["impressions", "clicks"]].isna().any().any():
        raise ValueError("creative-day rows have missing impressions or clicks")
    daily = (
        rows.assign(creative_id=rows["creative_id"].astype(str))
        .groupby(["creative_id", "date_day"], sort=True)[["impressions", "clicks"]]
        .sum()
        .reset_index()
    )
    prior = prior_impressions or {}
    return [
        fatigue_for_creative(
            str(cid),
            group["impressions"].to_numpy(),
            group["clicks"].to_numpy(),
            config,
            int(prior.get(str(cid), 0)),
        )
        for cid, group in daily.groupby("creative_id", sort=True)
    ]


def fatigue_frame(results: list[FatigueResult]) -> pd.DataFrame:
    """Results as a table (intervals as low/high columns), for an asset's output or metadata."""
    records = []
    for r in results:
        row = asdict(r)
        for name in ("slope_interval", "decay_interval"):
            interval = row.pop(name)
            row[f"{name}_low"], row[f"{name}_high"] = interval if interval else (None, None)
        records.append(row)
    return pd.DataFrame.from_records(records)
