"""Power of geo tests by simulation on history, and the ranking of candidate test markets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.experiments.geo import SYNTHETIC_CONTROL
from models.experiments.panels import simulate_geo_panel
from models.experiments.power import minimum_detectable_lift, select_test_markets

TREATED = ["G01", "G04", "G07"]
FINE_LIFTS = [round(0.005 * k, 3) for k in range(1, 41)]


@pytest.mark.parametrize("seed", [3, 4])
def test_mde_shrinks_with_longer_tests(seed):
    y = simulate_geo_panel(10, 104, seed=seed, factor_sigma=0.01)
    short = minimum_detectable_lift(y, TREATED, 1, n_windows=30, lifts=FINE_LIFTS, seed=seed)
    long = minimum_detectable_lift(y, TREATED, 8, n_windows=30, lifts=FINE_LIFTS, seed=seed)
    assert math.isfinite(short.mde) and math.isfinite(long.mde)
    assert long.mde < short.mde, f"MDE 8 periods {long.mde} vs 1 period {short.mde}"
    # The curve starts at no lift and stops at the first lift with the target power.
    assert long.lifts[0] == 0.0 and long.power_curve[-1] >= 0.8 and long.lifts[-1] == long.mde
    assert long.false_positive_rate == long.power_curve[0]
    assert len(long.window_starts) == 30


def test_mde_grows_with_noise():
    quiet = simulate_geo_panel(10, 104, seed=7, noise_sigma=0.01, factor_sigma=0.01)
    noisy = simulate_geo_panel(10, 104, seed=7, noise_sigma=0.05, factor_sigma=0.01)
    a = minimum_detectable_lift(quiet, TREATED, 4, method=SYNTHETIC_CONTROL, lifts=FINE_LIFTS)
    b = minimum_detectable_lift(noisy, TREATED, 4, method=SYNTHETIC_CONTROL, lifts=FINE_LIFTS)
    assert a.mde < b.mde


def test_mde_is_seeded_and_nan_when_out_of_grid():
    y = simulate_geo_panel(10, 80, seed=2)
    a = minimum_detectable_lift(y, TREATED, 4, n_windows=8, seed=1)
    b = minimum_detectable_lift(y, TREATED, 4, n_windows=8, seed=1)
    assert a == b
    tiny = minimum_detectable_lift(y, TREATED, 4, n_windows=8, lifts=[0.001], seed=1)
    assert math.isnan(tiny.mde) and tiny.lifts == (0.0, 0.001)


def test_select_test_markets_returns_a_sorted_frame():
    y = simulate_geo_panel(9, 80, seed=5)
    ranked = select_test_markets(y, 2, 4, max_combinations=12, n_windows=6, seed=3)
    assert isinstance(ranked, pd.DataFrame) and len(ranked) == 12
    assert list(ranked.columns) == [
        "treated",
        "mde",
        "false_positive_rate",
        "fit_rmse_pct",
        "revenue_share",
        "n_controls",
    ]
    keys = list(zip(ranked["mde"].fillna(np.inf), ranked["fit_rmse_pct"], strict=True))
    assert keys == sorted(keys)
    assert ranked["treated"].is_unique and (ranked["n_controls"] == 7).all()
    assert ranked["revenue_share"].between(0, 1).all()
    again = select_test_markets(y, 2, 4, max_combinations=12, n_windows=6, seed=3)
    pd.testing.assert_frame_equal(ranked, again)


def test_select_test_markets_prefers_a_well_matched_set():
    """Sets holding geos with idiosyncratic noise score worse than the one tracking the market."""
    y = simulate_geo_panel(8, 80, seed=6, noise_sigma=0.02)
    rng = np.random.default_rng(0)
    y[["G00", "G01"]] *= np.exp(rng.normal(0.0, 0.12, (80, 2)))
    ranked = select_test_markets(
        y, 2, 4, candidates=["G00", "G01", "G02", "G03"], n_windows=8, method=SYNTHETIC_CONTROL
    )
    assert len(ranked) == math.comb(4, 2)
    assert ranked["treated"].iloc[0] == "G02,G03"
    best, rest = ranked.iloc[0], ranked.iloc[1:]
    assert (rest["mde"] > best["mde"]).all() and (rest["fit_rmse_pct"] > best["fit_rmse_pct"]).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n_post_periods=0), "n_post_periods"),
        (dict(power=1.0), "power"),
        (dict(direction=0), "direction"),
        (dict(lifts=[0.5, 1.5]), "below 1"),
        (dict(min_pre_periods=70), "too short"),
        (dict(treated=["G99"]), "not columns"),
    ],
)
def test_power_bad_input(kwargs, message):
    y = simulate_geo_panel(6, 60, seed=1)
    args = dict(y=y, treated=["G00"], n_post_periods=4) | kwargs
    with pytest.raises(ValueError, match=message):
        minimum_detectable_lift(**args)


def test_select_bad_input():
    y = simulate_geo_panel(5, 40, seed=1)
    with pytest.raises(ValueError, match="n_treated"):
        select_test_markets(y, 0, 4)
    with pytest.raises(ValueError, match="fewer than 2 controls"):
        select_test_markets(y, 4, 4)
    with pytest.raises(ValueError, match="candidate geos"):
        select_test_markets(y, 2, 4, candidates=["G00", "X"])
