"""Simulated geo panels with a known structure, for power checks, demos and the estimator tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def simulate_geo_panel(
    n_geos: int = 10,
    n_periods: int = 104,
    *,
    n_factors: int = 2,
    noise_sigma: float = 0.03,
    factor_sigma: float = 0.04,
    trend_sd: float = 0.01,
    season_sd: float = 0.04,
    loading_sd: float = 0.35,
    start: str = "2023-01-02",
    seed: int = 0,
) -> pd.DataFrame:
    """Weekly revenue per geo from a multiplicative latent factor model, no intervention.

    log y[t, i] = log size[i] + trend[i] * t + seasonality[t] * amp[i] + loading[i] . f[t] + e[t, i]
    with AR(1) factors f (rho 0.8, innovations factor_sigma) and iid noise e ~ N(0, noise_sigma).
    Geos differ in size (log-normal), yearly growth (6 % +- trend_sd), seasonal amplitude
    (0.15 +- season_sd) and loadings (1 +- loading_sd), so no geo is a copy of another.
    """
    if n_geos < 3:
        raise ValueError(f"n_geos must be at least 3, got {n_geos}")
    if n_periods < 10:
        raise ValueError(f"n_periods must be at least 10, got {n_periods}")
    rng = np.random.default_rng(seed)
    t = np.arange(n_periods)
    size = 20_000.0 * rng.lognormal(0.0, 0.5, n_geos)
    trend = rng.normal(0.06, trend_sd, n_geos) / 52
    amp = rng.normal(0.15, season_sd, n_geos)
    season = np.sin(2 * np.pi * t / 52.0) + 0.3 * np.cos(4 * np.pi * t / 52.0)
    shocks = rng.normal(0.0, factor_sigma, (n_periods, n_factors))
    factors = np.empty((n_periods, n_factors))
    # Start from the stationary distribution so that the panel has no burn-in.
    factors[0] = shocks[0] / np.sqrt(1.0 - 0.8**2)
    for k in range(1, n_periods):
        factors[k] = 0.8 * factors[k - 1] + shocks[k]
    # Loadings around 1 keep most geos inside the convex hull of the others, as real markets are.
    loadings = rng.normal(1.0, loading_sd, (n_geos, n_factors))
    log_y = (
        np.log(size)[None, :]
        + np.outer(t, trend)
        + np.outer(season, amp)
        + factors @ loadings.T
        + rng.normal(0.0, noise_sigma, (n_periods, n_geos))
    )
    index = pd.date_range(start, periods=n_periods, freq="W-MON", name="week")
    columns = pd.Index([f"G{i:02d}" for i in range(n_geos)], name="geo")
    return pd.DataFrame(np.exp(log_y), index=index, columns=columns)


def apply_lift(
    y: pd.DataFrame, geos: Sequence[str], start: Any, end: Any, lift: float
) -> pd.DataFrame:
    """A copy of `y` with revenue of `geos` multiplied by 1 + lift for periods in [start, end]."""
    out = y.copy()
    rows = (out.index >= start) & (out.index <= end)
    out.loc[rows, list(geos)] *= 1.0 + lift
    return out
