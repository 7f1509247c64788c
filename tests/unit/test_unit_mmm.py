"""The MMM layer without a sampler: panel rules, the numpy media model, calibration inputs,
gates, saved results and the triangulation's disagreement logic."""

import numpy as np
import pandas as pd
import pytest

from models.budget import ResponseCurves
from models.mmm.artifacts import load_result, save_result
from models.mmm.base import FitSettings, Gates, LiftTest, MMMPanel, MMMResult, panel_from_mart
from models.mmm.calibration import lift_tests_from_experiments
from models.mmm.media import (
    adstock_weights,
    contribution_totals,
    contributions,
    geometric_adstock,
)
from models.mmm.triangulation import triangulate
from models.simulation.market import geometric_adstock as true_adstock
from models.simulation.market import logistic_saturation

CHANNELS = ("search", "tv")


def mart(weeks: int = 20, geos=("US-CA", "US-TX"), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for w in range(weeks):
        for g in geos:
            rows.append({
                "week_start": pd.Timestamp("2024-01-01") + pd.Timedelta(weeks=w), "geo": g,
                "revenue_usd": 1000 + rng.normal(0, 10), "orders": 10,
                "spend_search": rng.uniform(50, 150), "spend_tv": rng.uniform(0, 100),
                "impressions_search": 1, "impressions_tv": 1,
                "promo_days": int(w % 5 == 0) * 3, "n_days_observed": 7 if 0 < w < weeks - 1 else 3,
            })  # fmt: skip
    return pd.DataFrame(rows)


def test_panel_from_mart_keeps_complete_weeks_and_finds_channels():
    panel = panel_from_mart(mart())
    assert panel.channels == CHANNELS
    assert len(panel.weeks) == 18  # the partial first and last weeks are dropped
    assert panel.frame["promo_share"].max() == pytest.approx(3 / 7)
    assert panel.spend().shape == (18, 2, 2)


def test_panel_rejects_ragged_or_negative_data():
    frame = panel_from_mart(mart()).frame
    with pytest.raises(ValueError, match="one row per geo and week"):
        MMMPanel(frame.iloc[1:], CHANNELS)
    bad = frame.copy()
    bad.loc[0, "spend_tv"] = -1
    with pytest.raises(ValueError, match="negative spend"):
        MMMPanel(bad, CHANNELS)
    with pytest.raises(ValueError, match="lacks columns"):
        MMMPanel(frame.drop(columns=["spend_tv"]), CHANNELS)


def test_fingerprint_sees_content_not_row_order():
    panel = panel_from_mart(mart())
    shuffled = MMMPanel(panel.frame.sample(frac=1, random_state=1), CHANNELS, panel.controls)
    assert shuffled.fingerprint() == panel.fingerprint()
    changed = panel.frame.copy()
    changed.loc[3, "revenue_usd"] += 1
    assert MMMPanel(changed, CHANNELS, panel.controls).fingerprint() != panel.fingerprint()


def test_split_holds_out_the_last_weeks():
    train, holdout = panel_from_mart(mart()).split(4)
    assert len(holdout.weeks) == 4 and train.weeks[-1] < holdout.weeks[0]
    with pytest.raises(ValueError, match="too little to fit"):
        panel_from_mart(mart()).split(10)


def test_media_model_matches_the_simulators_dgp():
    """Un-normalised adstock and logistic saturation as the simulator writes them."""
    rng = np.random.default_rng(3)
    spend = rng.uniform(0, 100, (30, 1))
    alpha, lam, beta, scale = 0.6, 1.3, 500.0, 80.0
    expected = beta * logistic_saturation(true_adstock(spend, alpha) / scale, lam)
    got = contributions(
        spend, alpha=np.array([[alpha]]), lam=np.array([[lam]]), beta=np.array([[beta]]),
        channel_scale=np.array([scale]), target_scale=np.array([1.0]), l_max=8, normalize=False,
    )  # fmt: skip
    np.testing.assert_allclose(got[0], expected, rtol=1e-12)


def test_normalised_adstock_weights_sum_to_one_and_carry_over():
    w = adstock_weights(np.array([0.5]), 4, normalize=True)
    assert w.sum() == pytest.approx(1.0)
    x = np.zeros((6, 1))
    x[0] = 1.0
    out = geometric_adstock(x, w[None])
    np.testing.assert_allclose(out[0, :4, 0], w[0])


def test_marginal_roas_is_below_average_roas_on_a_concave_curve():
    spend = np.full((20, 1), 100.0)
    params = dict(
        alpha=np.array([[0.3]]), lam=np.array([[2.0]]), beta=np.array([[300.0]]),
        channel_scale=np.array([100.0]), target_scale=np.array([1.0]), l_max=8,
    )  # fmt: skip
    base, more = contribution_totals(spend, step=0.01, **params)
    roas = base[0, 0] / spend.sum()
    mroas = (more[0, 0] - base[0, 0]) / (0.01 * spend.sum())
    assert 0 < mroas < roas


def _result(roas=(2.0, 0.8), diagnostics=None) -> MMMResult:
    channels = pd.DataFrame({
        "channel": list(CHANNELS), "spend": [100.0, 200.0],
        "contribution_mean": [200.0, 160.0], "contribution_low": [150.0, 100.0], "contribution_high": [250.0, 220.0],
        "roas_mean": list(roas), "roas_low": [r * 0.8 for r in roas], "roas_high": [r * 1.2 for r in roas],
        "mroas_mean": [1.5, 0.6], "mroas_low": [1.0, 0.4], "mroas_high": [2.0, 0.8],
    })  # fmt: skip
    d = diagnostics or {
        "rhat_max": 1.001,
        "ess_bulk_min": 500.0,
        "divergence_rate": 0.0,
        "in_sample_r2": 0.95,
        "holdout_mape": 0.03,
    }
    curves = ResponseCurves.from_point(
        ["search|US-CA", "tv|US-CA"],
        beta=[300, 200],
        lam=[1.5, 1.0],
        alpha=[0.2, 0.6],
        scale=[50, 80],
    )
    return MMMResult(
        "pymc_marketing",
        FitSettings(),
        "abc",
        channels,
        d,
        curves=curves,
        calibrated_with=("EXP-001",),
    )


def test_gates_name_every_failure():
    ok = _result()
    assert ok.gate_failures(Gates()) == []
    bad = _result(
        diagnostics={
            "rhat_max": 1.2,
            "ess_bulk_min": 40.0,
            "divergence_rate": 0.0,
            "in_sample_r2": 0.5,
        }
    )
    failures = bad.gate_failures(Gates())
    assert any(f.startswith("rhat_max") for f in failures)
    assert any(f.startswith("ess_bulk_min") for f in failures)
    assert any(f.startswith("in_sample_r2") for f in failures)
    assert any("holdout_mape is missing" in f for f in failures)


def test_saved_result_loads_back_with_its_curves(tmp_path):
    result = _result()
    path = save_result(result, tmp_path)
    loaded = load_result(path)
    pd.testing.assert_frame_equal(loaded.channels, result.channels)
    assert loaded.calibrated_with == ("EXP-001",)
    np.testing.assert_array_equal(loaded.curves.beta, result.curves.beta)
    assert loaded.curves.units == result.curves.units
    assert save_result(result, tmp_path) == path  # the same fit keeps the same name
    with pytest.raises(FileNotFoundError, match="materialise the MMM"):
        load_result(tmp_path / "nope.result.json")


def test_lift_tests_take_the_experiments_loss_per_dark_week():
    frame = mart(weeks=30)
    panel = panel_from_mart(frame)
    registry = pd.DataFrame([{
        "experiment_id": "EXP-1", "channel": "search", "treatment_geos": ["US-CA"],
        "start_date": pd.Timestamp("2024-04-01"), "end_date": pd.Timestamp("2024-04-28"),
    }])  # fmt: skip
    estimates = pd.DataFrame([{
        "experiment_id": "EXP-1", "method": "augmented_synthetic_control", "metric": "revenue_with_carryover",
        "incremental": -400.0, "incremental_ci_low": -600.0, "incremental_ci_high": -200.0,
        "ci_level": 0.9, "dark_weeks": 4,
    }])  # fmt: skip
    (test,) = lift_tests_from_experiments(estimates, registry, panel, "augmented_synthetic_control")
    assert test.delta_y == pytest.approx(-100.0)
    assert test.sigma == pytest.approx(400 / (2 * 1.6448536) / 4, rel=1e-4)
    assert test.delta_x == tuple(-x for x in test.x) and test.x[0] > 0
    with pytest.raises(ValueError, match="sigma > 0"):
        LiftTest("E", "tv", ("US-CA",), (1.0,), (-1.0,), -1.0, 0.0)


def test_triangulation_flags_disjoint_intervals_but_not_calibration_pairs():
    mmm = pd.DataFrame([
        {"source": "pymc", "channel": "tv", "roas_mean": 0.8, "roas_low": 0.6, "roas_high": 1.0, "calibrated_with": ["EXP-2"], "gates_passed": True},
        {"source": "lw", "channel": "tv", "roas_mean": 2.0, "roas_low": 1.5, "roas_high": 2.5, "calibrated_with": [], "gates_passed": True},
        {"source": "pymc", "channel": "search", "roas_mean": 2.0, "roas_low": 1.5, "roas_high": 2.5, "calibrated_with": ["EXP-2"], "gates_passed": True},
        {"source": "bad", "channel": "search", "roas_mean": 9.0, "roas_low": 8.0, "roas_high": 10.0, "calibrated_with": [], "gates_passed": False},
    ])  # fmt: skip
    experiments = pd.DataFrame([
        {"experiment_id": "EXP-2", "channel": "tv", "iroas": 3.0, "iroas_low": 2.8, "iroas_high": 3.2},
        {"experiment_id": "EXP-3", "channel": "search", "iroas": 2.1, "iroas_low": 1.0, "iroas_high": 3.0},
    ])  # fmt: skip
    attribution = pd.DataFrame({"channel": ["tv", "search"], "markov_share": [0.1, 0.9]})
    t = triangulate(mmm, experiments, attribution).set_index(["channel", "source"])
    assert t.loc[("tv", "pymc"), "disagrees_with"] == "lw"  # not EXP-2: it was calibrated on it
    assert set(t.loc[("tv", "EXP-2"), "disagrees_with"].split(",")) == {"lw"}
    assert t.loc[("tv", "pymc"), "channel_verdict"] == "disagree"
    assert (
        t.loc[("search", "bad"), "disagrees_with"] == ""
    )  # failed its gates: compared with nothing
    assert t.loc[("search", "pymc"), "channel_verdict"] == "agree"
    assert t.loc[("search", "EXP-3"), "attribution_markov_share"] == pytest.approx(0.9)


def test_plots_are_png_files(tmp_path):
    from models.mmm.plots import contributions_png, response_curves_png, roas_png

    r = _result()
    paths = [
        roas_png(r, tmp_path / "roas.png", truth={"search": 2.2, "tv": 0.8}),
        contributions_png(r, tmp_path / "contrib.png"),
        response_curves_png(r, {"search|US-CA": 100.0, "tv|US-CA": 50.0}, tmp_path / "curves.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp.png"))
