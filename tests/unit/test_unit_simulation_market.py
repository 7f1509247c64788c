"""Simulation config validation and the response curves of the data-generating process."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest

from models.simulation.config import (
    DEFAULT_CHANNEL_TRUTH,
    GEO_CODES,
    ChannelTruth,
    ExperimentPlan,
    SimulationConfig,
)
from models.simulation.market import (
    build_market,
    calibrate_beta,
    experiment_truth,
    geometric_adstock,
    logistic_saturation,
)

# --- config validation ---------------------------------------------------------------------------


def test_defaults_are_valid():
    cfg = SimulationConfig()
    assert cfg.start_date.weekday() == 0
    assert cfg.days == cfg.weeks * 7
    assert cfg.geo_codes == GEO_CODES[: cfg.geos]


def test_start_date_must_be_a_monday():
    with pytest.raises(ValueError, match="Monday"):
        SimulationConfig(start_date=date(2024, 1, 2), weeks=8, geos=3)


@pytest.mark.parametrize("geos", [0, len(GEO_CODES) + 1])
def test_geo_count_must_be_in_range(geos):
    with pytest.raises(ValueError, match="geos must be between 1 and 20"):
        SimulationConfig(weeks=8, geos=geos)


def test_all_geo_codes_may_be_used():
    assert len(SimulationConfig(weeks=8, geos=len(GEO_CODES)).geo_codes) == len(GEO_CODES)


def test_unknown_channel_is_rejected():
    with pytest.raises(ValueError, match="unknown channels \\['radio'\\]"):
        SimulationConfig(weeks=8, geos=3, channels=("search", "radio"))


def test_channel_without_truth_is_rejected():
    truth = {k: v for k, v in DEFAULT_CHANNEL_TRUTH.items() if k != "tv"}
    with pytest.raises(ValueError, match="no true parameters"):
        SimulationConfig(weeks=8, geos=3, channel_truth=truth)


def test_needs_two_weeks():
    with pytest.raises(ValueError, match="at least 2"):
        SimulationConfig(weeks=1, geos=3)


def test_experiment_needs_a_control_geo():
    plan = ExperimentPlan("social", start_week=2, weeks=3, n_treatment_geos=3)
    with pytest.raises(ValueError, match="needs more geos"):
        SimulationConfig(weeks=8, geos=3, experiments=(plan,))


def test_experiments_outside_window_or_channels_are_inactive():
    inside = ExperimentPlan("social", start_week=2, weeks=3, n_treatment_geos=1)
    too_late = ExperimentPlan("tv", start_week=6, weeks=3, n_treatment_geos=1)
    other_channel = ExperimentPlan("video", start_week=1, weeks=2, n_treatment_geos=1)
    cfg = SimulationConfig(
        weeks=8,
        geos=3,
        channels=("search", "social", "tv"),
        experiments=(inside, too_late, other_channel),
    )
    assert cfg.active_experiments() == (inside,)
    # An inactive experiment is not validated against the geo count.
    SimulationConfig(weeks=8, geos=3, experiments=(ExperimentPlan("tv", 6, 3, 5),))


def test_to_dict_is_json_friendly():
    d = SimulationConfig(weeks=8, geos=3).to_dict()
    assert d["start_date"] == "2024-01-01"
    assert d["channel_truth"]["search"]["roas"] == DEFAULT_CHANNEL_TRUTH["search"].roas


# --- response curves -----------------------------------------------------------------------------


def test_adstock_of_an_impulse_decays_geometrically():
    x = np.array([1.0, 0, 0, 0, 0])
    np.testing.assert_allclose(geometric_adstock(x, 0.5), [1, 0.5, 0.25, 0.125, 0.0625])


def test_adstock_adds_overlapping_carryover():
    # t2 = 0.5 * 2 + 0.25 * 1; t3 = 0.25 * 2 + 0.125 * 1
    np.testing.assert_allclose(
        geometric_adstock(np.array([1.0, 2, 0, 0]), 0.5), [1, 2.5, 1.25, 0.625]
    )


def test_adstock_is_truncated_at_l_max():
    x = np.zeros(6)
    x[0] = 1.0
    np.testing.assert_allclose(geometric_adstock(x, 0.5, l_max=3), [1, 0.5, 0.25, 0, 0, 0])


def test_adstock_alpha_zero_is_identity_and_works_per_column():
    x = np.array([[1.0, 10.0], [2.0, 0.0], [3.0, 0.0]])
    np.testing.assert_allclose(geometric_adstock(x, 0.0), x)
    np.testing.assert_allclose(geometric_adstock(x, 0.1), [[1, 10], [2.1, 1], [3.21, 0.1]])


def test_logistic_saturation_known_values():
    x = np.array([0.0, math.log(3.0), 1e6])
    np.testing.assert_allclose(logistic_saturation(x, 1.0), [0.0, 0.5, 1.0])
    # (1 - e^-2) / (1 + e^-2) = tanh(1)
    np.testing.assert_allclose(logistic_saturation(np.array([1.0]), 2.0), [math.tanh(1.0)])


def test_logistic_saturation_is_increasing_and_concave():
    y = logistic_saturation(np.linspace(0, 5, 51), 1.3)
    d = np.diff(y)
    assert (d > 0).all()
    assert (np.diff(d) < 0).all()


# --- market -------------------------------------------------------------------------------------


def _market(seed=3):
    cfg = SimulationConfig(
        seed=seed,
        weeks=10,
        geos=3,
        experiments=(ExperimentPlan("tv", start_week=3, weeks=3, n_treatment_geos=1),),
    )
    market = build_market(cfg, np.random.default_rng(seed))
    actual = market.actual_spend()
    calibrate_beta(market, actual)
    return cfg, market, actual


def test_geo_shares_sum_to_one():
    _, market, _ = _market()
    assert market.geo_share.sum() == pytest.approx(1.0)
    assert (market.geo_share > 0).all()


def test_holdout_turns_channel_dark_only_in_treatment_window():
    cfg, market, actual = _market()
    c = cfg.channels.index("tv")
    geos = market.treatment_geos[0]
    assert (actual[3:6, geos, c] == 0).all()
    assert (market.planned_spend[3:6, geos, c] > 0).any()
    other = [g for g in range(cfg.geos) if g not in geos]
    np.testing.assert_array_equal(actual[:, other, :], market.planned_spend[:, other, :])
    np.testing.assert_array_equal(actual[:3], market.planned_spend[:3])


def test_calibrated_beta_gives_configured_roas():
    cfg, market, actual = _market()
    contribution = market.response(actual).sum(axis=(0, 1))
    for c, ch in enumerate(cfg.channels):
        roas = contribution[c] / actual[:, :, c].sum()
        assert roas == pytest.approx(cfg.channel_truth[ch].roas, rel=1e-9), ch


def test_experiment_truth_is_a_positive_lift():
    _, market, actual = _market()
    (exp,) = experiment_truth(market, actual)
    assert exp["incremental_revenue"] > 0
    assert exp["counterfactual_revenue"] > exp["incremental_revenue"]
    assert exp["lift_pct"] == pytest.approx(
        exp["incremental_revenue"] / exp["counterfactual_revenue"]
    )


def test_zero_spend_channel_gets_zero_beta():
    cfg = SimulationConfig(
        weeks=4,
        geos=2,
        channels=("search", "tv"),
        channel_truth={**DEFAULT_CHANNEL_TRUTH, "tv": ChannelTruth(0.0, 0.8, 0.65, 0.8, "bursts")},
        experiments=(),
    )
    market = build_market(cfg, np.random.default_rng(1))
    actual = market.actual_spend()
    calibrate_beta(market, actual)
    assert market.beta[1] == 0.0
    assert np.isfinite(market.response(actual)).all()
