"""Creative fatigue against synthetic creatives whose true CTR decay is known."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from models.creative.fatigue import (
    FATIGUED,
    INSUFFICIENT_DATA,
    NOT_FATIGUED,
    FatigueConfig,
    creative_fatigue,
    fatigue_for_creative,
    fatigue_frame,
)

DAYS = 28


def synthetic_creative(
    seed: int,
    wear_out: float,
    *,
    days: int = DAYS,
    mean_impressions: float = 4_000,
    ctr0: float = 0.02,
    day_noise: float = 0.10,
    form: str = "linear",
) -> tuple[np.ndarray, np.ndarray, float]:
    """Daily impressions and clicks, and the true relative CTR decay between the first and last
    day. Delivery varies day to day and CTR carries multiplicative day noise on top of the
    binomial, as real creatives do; `wear_out` is the decay rate per million impressions
    (linear form) or the power of exposure (log form)."""
    rng = np.random.default_rng(seed)
    impressions = rng.poisson(mean_impressions * rng.lognormal(0, 0.3, days))
    exposure = np.cumsum(impressions) - impressions / 2
    if form == "linear":
        trend = np.exp(-wear_out * (exposure - exposure[0]) / 1e6)
    else:
        trend = (exposure / exposure[0]) ** -wear_out
    ctr = ctr0 * trend * rng.lognormal(0, day_noise, days)
    clicks = rng.binomial(impressions, np.minimum(ctr, 1.0))
    return impressions, clicks, float(1 - trend[-1])


def test_fatigued_creatives_are_flagged_and_their_decay_recovered():
    # wear-out 8 per million over ~110k impressions: CTR falls by about 60%.
    errors, covered = [], 0
    for seed in range(40):
        imp, clk, truth = synthetic_creative(seed, wear_out=8.0)
        r = fatigue_for_creative(f"cr{seed}", imp, clk)
        assert r.status == FATIGUED and r.fatigued, (seed, r.reason)
        assert r.slope < 0 and r.p_value < 0.05
        errors.append(r.decay - truth)
        covered += r.decay_interval[0] <= truth <= r.decay_interval[1]
    errors = np.abs(errors)
    # Tolerance: every seed within 0.15 of the true decay, on average within 0.06.
    assert errors.max() <= 0.15, errors.max()
    assert errors.mean() <= 0.06, errors.mean()
    # The 90% interval should cover the truth about 90% of the time; 75% allows for 40 seeds.
    assert covered / 40 >= 0.75, covered


def test_flat_creatives_are_rarely_flagged():
    # 200 flat creatives with overdispersed days, at the defaults (one-sided 5%, decay >= 20%).
    # Over 3,000 seeds the false-flag rate was 0.8% and the significance rate 4.5%; these 200
    # seeds flag 4 (2%) and find 11 significant. Bounds: at most 3% flagged, 7.5% significant
    # (without the dispersion correction 18 of these 200 come out significant).
    results = [
        fatigue_for_creative(f"cr{s}", *synthetic_creative(1000 + s, wear_out=0.0)[:2])
        for s in range(200)
    ]
    flagged = sum(r.fatigued for r in results)
    assert flagged <= 6, flagged
    significant = sum(r.p_value < 0.05 for r in results)
    assert significant <= 15, significant
    assert all(r.status == NOT_FATIGUED for r in results if not r.fatigued)


def test_a_small_but_significant_decline_is_below_the_threshold():
    # Heavy delivery makes a ~10% decline clearly significant; it is still not "fatigued".
    imp, clk, truth = synthetic_creative(5, wear_out=0.02, mean_impressions=200_000)
    assert 0.05 < truth < 0.15
    r = fatigue_for_creative("big", imp, clk)
    assert r.p_value < 0.05
    assert not r.fatigued and r.status == NOT_FATIGUED
    assert "under the 20% threshold" in r.reason
    lower = fatigue_for_creative("big", imp, clk, FatigueConfig(min_decay=0.05))
    assert lower.fatigued


def test_log_exposure_form_recovers_a_power_law_decay():
    # Over 300 seeds the log form's error was at most 0.17 and 0.04 on average.
    config = FatigueConfig(exposure="log")
    errors = []
    for seed in range(10):
        imp, clk, truth = synthetic_creative(seed, wear_out=0.2, form="log", day_noise=0.05)
        r = fatigue_for_creative("c", imp, clk, config)
        assert r.fatigued, (seed, r.reason)
        errors.append(abs(r.decay - truth))
    assert max(errors) <= 0.2 and np.mean(errors) <= 0.07, errors


def test_too_little_data_is_reported_not_skipped():
    imp, clk, _ = synthetic_creative(1, wear_out=8.0, days=5)
    short = fatigue_for_creative("short", imp, clk)
    assert short.status == INSUFFICIENT_DATA and not short.fatigued
    assert "5 days" in short.reason and short.slope is None

    sparse = fatigue_for_creative("sparse", np.full(20, 100), np.zeros(20, int))
    assert sparse.status == INSUFFICIENT_DATA and "clicks" in sparse.reason

    # Days without delivery carry no information and do not count towards min_days.
    imp = np.array([1000, 0, 0, 0, 0, 0, 1000, 1000])
    clk = np.array([30, 0, 0, 0, 0, 0, 30, 30])
    gaps = fatigue_for_creative("gaps", imp, clk, FatigueConfig(min_clicks=10))
    assert gaps.days == 3 and gaps.status == INSUFFICIENT_DATA


def test_invalid_counts_raise():
    with pytest.raises(ValueError, match="clicks <= impressions"):
        fatigue_for_creative("bad", np.array([10, 10]), np.array([5, 11]))
    with pytest.raises(ValueError, match="alpha"):
        FatigueConfig(alpha=0.7)


def test_creative_day_rows_are_summed_across_geos_and_every_creative_reported():
    start = date(2024, 1, 1)
    rows = []
    imp_a, clk_a, _ = synthetic_creative(3, wear_out=8.0)
    for d in range(DAYS):
        # Creative A split over two geos, in shuffled order: the result must not depend on it.
        half_imp, half_clk = imp_a[d] // 2, clk_a[d] // 2
        rows.append((start + timedelta(days=d), 2100000000010, half_imp, half_clk))
        rows.append(
            (start + timedelta(days=d), 2100000000010, imp_a[d] - half_imp, clk_a[d] - half_clk)
        )
    rows += [(start + timedelta(days=d), "2100000000011", 50, 1) for d in range(3)]
    df = pd.DataFrame(rows, columns=["date_day", "creative_id", "impressions", "clicks"])
    df = df.sample(frac=1.0, random_state=0)

    results = creative_fatigue(df)
    assert [r.creative_id for r in results] == ["2100000000010", "2100000000011"]
    direct = fatigue_for_creative("2100000000010", imp_a, clk_a)
    assert results[0].slope == pytest.approx(direct.slope, rel=1e-9)
    assert results[0].impressions == int(imp_a.sum())
    assert results[1].status == INSUFFICIENT_DATA

    frame = fatigue_frame(results)
    assert list(frame["creative_id"]) == ["2100000000010", "2100000000011"]
    assert (
        frame.loc[0, "decay_interval_low"]
        < frame.loc[0, "decay"]
        < frame.loc[0, "decay_interval_high"]
    )
    assert pd.isna(frame.loc[1, "decay"])

    with pytest.raises(ValueError, match="lack columns"):
        creative_fatigue(df.drop(columns=["clicks"]))


def test_prior_impressions_shift_the_exposure_scale():
    # A creative that had run before the window: the log form sees a flatter exposure curve,
    # so the same CTR path means a steeper slope per log-impression.
    imp, clk, _ = synthetic_creative(2, wear_out=0.2, form="log", day_noise=0.05)
    config = FatigueConfig(exposure="log")
    fresh = fatigue_for_creative("c", imp, clk, config)
    seasoned = fatigue_for_creative("c", imp, clk, config, prior_impressions=500_000)
    assert seasoned.slope < fresh.slope < 0
