"""Power of geo experiments on a market's own history, and ranking of candidate test markets.

The minimum detectable lift is found by simulation rather than a formula: pseudo-experiments
are placed in past windows, a known lift is injected into the treated geos and the same
conformal test as `estimate_geo_lift` is run. That keeps the power honest about what the
formulas assume away: serially correlated residuals, a donor pool that fits some geos badly, and
the test's discreteness (its smallest p-value is 1 / number of periods).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from models.experiments.geo import (
    AUGMENTED_SYNTHETIC_CONTROL,
    MIN_PRE_PERIODS,
    SYNTHETIC_CONTROL,
    check_alpha,
    check_method,
    choose_ridge_ratio,
    conformal_p,
    fit_weights,
    prepare_panel,
)

DEFAULT_LIFTS = tuple(round(0.01 * k, 2) for k in range(31))  # 0 % to 30 %


@dataclass(frozen=True)
class PowerResult:
    """Simulated power of a geo test design; `mde` is a fraction of the counterfactual."""

    mde: float  # smallest lift in the grid detected with the target power; nan if none
    lifts: tuple[float, ...]  # lifts evaluated (ascending; stops at the first that reaches power)
    power_curve: tuple[float, ...]  # rejection rate at each lift
    false_positive_rate: float  # rejection rate with no injected lift: the test's size here
    alpha: float
    power: float
    method: str
    n_post_periods: int
    direction: int
    window_starts: tuple[str, ...]


def _window_starts(
    n_periods: int, n_post: int, min_pre: int, n_windows: int, seed: int
) -> np.ndarray:
    candidates = np.arange(min_pre, n_periods - n_post + 1)
    if len(candidates) < 1:
        raise ValueError(
            f"history of {n_periods} periods is too short for {min_pre} pre periods and "
            f"{n_post} post periods; use a longer history or fewer pre periods"
        )
    if len(candidates) <= n_windows:
        return candidates
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(candidates, n_windows, replace=False))


def _check_design(
    y: pd.DataFrame, n_post_periods: int, power: float, n_windows: int, direction: int
) -> None:
    if not isinstance(y, pd.DataFrame):
        raise ValueError(f"y must be a pandas DataFrame (periods x geos), got {type(y).__name__}")
    if not 1 <= n_post_periods <= len(y) - MIN_PRE_PERIODS:
        raise ValueError(
            f"n_post_periods must be between 1 and {len(y) - MIN_PRE_PERIODS} for a history of "
            f"{len(y)} periods, got {n_post_periods}"
        )
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if n_windows < 1:
        raise ValueError(f"n_windows must be at least 1, got {n_windows}")
    if direction not in (-1, 1):
        raise ValueError(f"direction must be -1 (holdout) or 1, got {direction}")


def _power_curve(
    y1_all: np.ndarray,
    y0_all: np.ndarray,
    starts: np.ndarray,
    n_post: int,
    lifts: Sequence[float],
    alpha: float,
    power: float,
    method: str,
    direction: int,
) -> tuple[list[float], list[float]]:
    """Rejection rates over windows for ascending lifts, stopping once the power is reached."""
    windows = []
    for s in starts:
        end = s + n_post
        y1, y0 = y1_all[:end], y0_all[:end]
        ratio = choose_ridge_ratio(y1[:s], y0[:s], n_post) if method != SYNTHETIC_CONTROL else 0.0
        windows.append((y1, y0, ratio))
    done, curve = [], []
    for lift in lifts:
        rejected = 0
        for y1, y0, ratio in windows:
            treated = y1.copy()
            treated[-n_post:] *= 1.0 + direction * lift
            rejected += conformal_p(treated, y0, n_post, 0.0, method, ratio) <= alpha
        done.append(float(lift))
        curve.append(rejected / len(windows))
        if lift > 0 and curve[-1] >= power:
            break
    return done, curve


def _lift_grid(lifts: Sequence[float] | None) -> list[float]:
    grid = sorted({0.0, *(abs(float(v)) for v in (lifts or DEFAULT_LIFTS))})
    if any(v >= 1.0 for v in grid):
        raise ValueError("lifts are fractions of the counterfactual and must be below 1")
    return grid


def minimum_detectable_lift(
    y: pd.DataFrame,
    treated: Sequence[str] | str,
    n_post_periods: int,
    alpha: float = 0.1,
    power: float = 0.8,
    method: str = AUGMENTED_SYNTHETIC_CONTROL,
    lifts: Sequence[float] | None = None,
    n_windows: int = 20,
    min_pre_periods: int | None = None,
    direction: int = -1,
    controls: Sequence[str] | None = None,
    seed: int = 0,
) -> PowerResult:
    """Smallest lift the conformal geo test detects with `power`, simulated on history.

    Up to `n_windows` pseudo-intervention windows of `n_post_periods` are drawn (seeded) among
    those that leave `min_pre_periods` before them (default: half the history); the data after
    a window is dropped, the treated geos are multiplied by 1 + direction x lift inside it
    (direction -1: a holdout lowers revenue) and the test is run at level `alpha`. Windows all
    lie in the past, so lift 0 measures the test's real false-positive rate on this market.
    """
    check_method(method)
    check_alpha(alpha)
    _check_design(y, n_post_periods, power, n_windows, direction)
    panel = prepare_panel(y, treated, y.index[-n_post_periods], None, controls)
    n_periods = len(panel.y1)
    min_pre = (
        max(MIN_PRE_PERIODS, (n_periods - n_post_periods) // 2)
        if min_pre_periods is None
        else min_pre_periods
    )
    if min_pre < MIN_PRE_PERIODS:
        raise ValueError(f"min_pre_periods must be at least {MIN_PRE_PERIODS}, got {min_pre}")
    starts = _window_starts(n_periods, n_post_periods, min_pre, n_windows, seed)
    grid = _lift_grid(lifts)
    done, curve = _power_curve(
        panel.y1, panel.y0, starts, n_post_periods, grid, alpha, power, method, direction
    )
    reached = [lift for lift, pw in zip(done, curve, strict=True) if lift > 0 and pw >= power]
    return PowerResult(
        mde=reached[0] if reached else math.nan,
        lifts=tuple(done),
        power_curve=tuple(curve),
        false_positive_rate=curve[0],
        alpha=alpha,
        power=power,
        method=method,
        n_post_periods=n_post_periods,
        direction=direction,
        window_starts=tuple(str(panel.periods[s]) for s in starts),
    )


def select_test_markets(
    y: pd.DataFrame,
    n_treated: int,
    n_post_periods: int,
    candidates: Sequence[str] | None = None,
    max_combinations: int = 30,
    alpha: float = 0.1,
    power: float = 0.8,
    method: str = AUGMENTED_SYNTHETIC_CONTROL,
    lifts: Sequence[float] | None = None,
    n_windows: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """Rank sets of `n_treated` geos to hold out, best (smallest MDE, then best fit) first.

    Sets are drawn from `candidates` (default: every geo); when there are more than
    `max_combinations` of them a seeded random sample is scored. Every set is scored on the
    same pseudo-intervention windows, with all geos outside the set as donors. Columns:
    treated (comma-joined), mde, false_positive_rate, fit_rmse_pct (relative RMSE of weights
    fitted on the whole history), revenue_share (of the treated set), n_controls.
    """
    check_method(method)
    check_alpha(alpha)
    _check_design(y, n_post_periods, power, n_windows, -1)
    pool = list(y.columns) if candidates is None else list(candidates)
    unknown = [g for g in pool if g not in y.columns]
    if unknown:
        raise ValueError(f"candidate geos {unknown} are not columns of y")
    if not 1 <= n_treated <= len(pool):
        raise ValueError(f"n_treated must be between 1 and {len(pool)} candidates, got {n_treated}")
    if len(y.columns) - n_treated < 2:
        raise ValueError(
            f"{len(y.columns)} geos leave fewer than 2 controls for {n_treated} treated"
        )
    if max_combinations < 1:
        raise ValueError(f"max_combinations must be at least 1, got {max_combinations}")
    n_sets = math.comb(len(pool), n_treated)
    if n_sets <= max_combinations:
        sets = list(combinations(pool, n_treated))
    else:
        rng = np.random.default_rng(seed)
        picked: set[tuple[int, ...]] = set()
        while len(picked) < max_combinations:
            picked.add(tuple(sorted(rng.choice(len(pool), n_treated, replace=False).tolist())))
        sets = [tuple(pool[i] for i in s) for s in sorted(picked)]

    total = float(y.to_numpy(dtype=float).sum())
    grid = _lift_grid(lifts)
    starts: np.ndarray | None = None
    rows: list[dict[str, Any]] = []
    for geos in sets:
        panel = prepare_panel(y, list(geos), y.index[-n_post_periods])
        n_periods = len(panel.y1)
        if starts is None:
            min_pre = max(MIN_PRE_PERIODS, (n_periods - n_post_periods) // 2)
            starts = _window_starts(n_periods, n_post_periods, min_pre, n_windows, seed)
        done, curve = _power_curve(
            panel.y1, panel.y0, starts, n_post_periods, grid, alpha, power, method, -1
        )
        reached = [lift for lift, pw in zip(done, curve, strict=True) if lift > 0 and pw >= power]
        fit = fit_weights(panel.y1, panel.y0, SYNTHETIC_CONTROL)
        fitted = fit.predict(panel.y0)
        rows.append(
            {
                "treated": ",".join(map(str, geos)),
                "mde": reached[0] if reached else math.nan,
                "false_positive_rate": curve[0],
                "fit_rmse_pct": float(np.sqrt(np.mean(((panel.y1 - fitted) / fitted) ** 2))),
                "revenue_share": float(panel.y1.sum()) / total if total else math.nan,
                "n_controls": len(panel.donors),
            }
        )
    out = pd.DataFrame(rows).sort_values(["mde", "fit_rmse_pct"], na_position="last")
    return out.reset_index(drop=True)
