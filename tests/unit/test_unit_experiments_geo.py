"""Geo experiments: (augmented) synthetic control recovers known lifts, conformal tests hold size."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from models.experiments import IncrementalityEstimate
from models.experiments.geo import (
    AUGMENTED_SYNTHETIC_CONTROL,
    METHODS,
    SYNTHETIC_CONTROL,
    conformal_test,
    estimate_geo_lift,
    fit_weights,
    placebo_in_space,
    prepare_panel,
    synthetic_control,
)
from models.experiments.panels import apply_lift, simulate_geo_panel

N_PERIODS, N_POST = 104, 6
TRUE_LIFT = -0.08
TREATED = ["G01", "G04", "G07"]


def holdout(seed: int, lift: float = TRUE_LIFT, treated=TREATED):
    """A 10-geo, 104-week panel whose 3 treated geos lose `lift` over the last 6 weeks."""
    y = simulate_geo_panel(10, N_PERIODS, seed=seed)
    start, end = y.index[N_PERIODS - N_POST], y.index[-1]
    return apply_lift(y, treated, start, end, lift), start


def random_treated(seed: int, columns) -> list[str]:
    return sorted(np.random.default_rng(seed).choice(columns, 3, replace=False).tolist())


# --- point estimate and interval -------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_recovers_known_holdout_lift(method, seed):
    y, start = holdout(seed)
    est = estimate_geo_lift(y, TREATED, start, method=method, alpha=0.1, experiment_id="x")
    assert est.lift_ci_low <= est.lift_pct <= est.lift_ci_high
    assert abs(est.lift_pct - TRUE_LIFT) < 0.05, est.lift_pct
    assert est.p_value <= 0.1
    # Sign convention: a holdout of a working channel has negative incrementality.
    assert est.incremental < 0 and est.incremental_ci_high < 0
    assert est.incremental == pytest.approx(est.observed - est.counterfactual)
    assert est.lift_pct == pytest.approx(est.incremental / est.counterfactual)
    assert (est.n_treated, est.n_control, est.n_pre, est.n_post) == (3, 7, 98, 6)
    assert est.ci_level == pytest.approx(0.9)


@pytest.mark.parametrize("method", METHODS)
def test_interval_coverage_and_bias_over_many_panels(method):
    """Over 40 panels with random treated sets, the 90 % interval covers the truth ~90 % of the time."""
    lifts, covered = [], []
    for seed in range(100, 140):
        y = simulate_geo_panel(10, N_PERIODS, seed=seed)
        treated = random_treated(seed, y.columns)
        start = y.index[N_PERIODS - N_POST]
        y = apply_lift(y, treated, start, y.index[-1], TRUE_LIFT)
        est = estimate_geo_lift(y, treated, start, method=method, alpha=0.1, max_placebos=5)
        lifts.append(est.lift_pct)
        covered.append(est.lift_ci_low <= TRUE_LIFT <= est.lift_ci_high)
    coverage, bias = float(np.mean(covered)), float(np.mean(lifts)) - TRUE_LIFT
    assert coverage >= 0.8, f"coverage {coverage:.2f} of nominal 0.90"
    assert abs(bias) < 0.01, f"mean lift {np.mean(lifts):.4f} vs truth {TRUE_LIFT}"


@pytest.mark.parametrize("method", METHODS)
def test_aa_false_positive_rate(method):
    """400 A/A geo tests (no effect, random treated sets): conformal rejection rate at 5 %.

    400 rather than 200 keeps the binomial noise (+-1.1 points) well inside the 2-point margin;
    over 2,000 such panels the rate is 4.9 % at alpha 0.05 and 10.2 % at 0.10.
    """
    p_values = []
    for seed in range(1000, 1400):
        y = simulate_geo_panel(10, N_PERIODS, seed=seed)
        treated = random_treated(seed, y.columns)
        p_values.append(conformal_test(y, treated, y.index[N_PERIODS - N_POST], method=method))
    rate = float(np.mean(np.array(p_values) <= 0.05))
    assert rate <= 0.07, f"A/A false-positive rate {rate:.3f} at alpha 0.05 ({method})"
    # The p-values spread over (0, 1]: the test is not trivially conservative.
    assert np.mean(np.array(p_values) <= 0.5) > 0.35


def test_estimate_p_value_is_the_conformal_test_of_no_effect():
    y, start = holdout(0, lift=-0.02)
    est = estimate_geo_lift(y, TREATED, start)
    assert est.p_value == conformal_test(y, TREATED, start)


def test_augmented_sc_corrects_bias_outside_the_convex_hull():
    """Treated geos swing with the seasons more than any donor: SC's convex weights cannot
    follow, ASC's ridge correction extrapolates with negative weights."""
    errors = {SYNTHETIC_CONTROL: [], AUGMENTED_SYNTHETIC_CONTROL: []}
    rmse = {SYNTHETIC_CONTROL: [], AUGMENTED_SYNTHETIC_CONTROL: []}
    treated = ["G00", "G01", "G02"]
    for seed in range(10):
        y = simulate_geo_panel(10, N_PERIODS, seed=seed)
        t = np.arange(N_PERIODS)
        season = np.sin(2 * np.pi * t / 52) + 0.3 * np.cos(4 * np.pi * t / 52)  # the panel's
        y[treated] = y[treated].mul(np.exp(0.2 * season), axis=0)
        start = y.index[N_PERIODS - N_POST]
        y = apply_lift(y, treated, start, y.index[-1], TRUE_LIFT)
        for method in errors:
            fit = synthetic_control(y, treated, start, method=method)
            errors[method].append(abs(fit.lift_pct - TRUE_LIFT))
            rmse[method].append(fit.pre_rmse_pct)
    sc, asc = np.mean(errors[SYNTHETIC_CONTROL]), np.mean(errors[AUGMENTED_SYNTHETIC_CONTROL])
    assert asc < 0.8 * sc, f"mean abs error ASC {asc:.4f} vs SC {sc:.4f}"
    assert np.mean(rmse[AUGMENTED_SYNTHETIC_CONTROL]) < np.mean(rmse[SYNTHETIC_CONTROL])


# --- weights ---------------------------------------------------------------------------------------


def test_sc_weights_solve_the_simplex_problem():
    rng = np.random.default_rng(3)
    y0 = rng.lognormal(3.0, 0.3, (60, 6))
    y1 = y0[:, :3] @ np.array([0.6, 0.3, 0.4]) + rng.normal(0, 1.0, 60)
    fit = fit_weights(y1, y0, SYNTHETIC_CONTROL)
    assert (fit.sc_weights >= 0).all() and fit.sc_weights.sum() == pytest.approx(1.0)
    z1, z0 = y1 / y1.mean(), y0 / y0.mean(axis=0)
    res = minimize(
        lambda w: np.sum((z1 - z0 @ w) ** 2),
        np.full(6, 1 / 6),
        method="SLSQP",
        bounds=[(0, 1)] * 6,
        constraints={"type": "eq", "fun": lambda w: w.sum() - 1},
        options={"ftol": 1e-12, "maxiter": 500},
    )
    np.testing.assert_allclose(fit.sc_weights, res.x, atol=2e-3)


def test_sc_matches_a_treated_aggregate_larger_than_any_donor():
    """3 treated geos summed vs 7 single donors: normalisation makes the levels comparable."""
    y, start = holdout(5, lift=0.0)
    fit = synthetic_control(y, TREATED, start, method=SYNTHETIC_CONTROL)
    assert y[TREATED].sum(axis=1).mean() > y.drop(columns=TREATED).max(axis=1).mean()
    assert fit.pre_rmse_pct < 0.05
    assert sum(fit.donor_weights(augmented=False).values()) == pytest.approx(1.0, abs=1e-5)
    asc = synthetic_control(y, TREATED, start, method=AUGMENTED_SYNTHETIC_CONTROL)
    assert sum(asc.donor_weights().values()) == pytest.approx(1.0, abs=1e-5)


# --- placebo-in-space ------------------------------------------------------------------------------


def test_placebo_in_space_ranks_a_real_effect_first():
    y, start = holdout(0)
    res = placebo_in_space(y, TREATED, start, method=SYNTHETIC_CONTROL)
    assert len(res.placebos) == math.comb(7, 3)
    assert set(res.placebos.columns) >= {"placebo_geos", "lift_pct", "incremental"}
    assert not any(g in pl for g in TREATED for pl in res.placebos["placebo_geos"])
    assert res.p_value == pytest.approx(1 / 36)


def test_placebo_p_values_are_not_small_without_effect():
    p_values = []
    for seed in range(300, 340):
        y = simulate_geo_panel(10, N_PERIODS, seed=seed)
        res = placebo_in_space(
            y, random_treated(seed, y.columns), y.index[-N_POST], method=SYNTHETIC_CONTROL
        )
        p_values.append(res.p_value)
    rate = float(np.mean(np.array(p_values) <= 0.1))
    assert rate <= 0.2, f"placebo rejection rate {rate:.3f} at 0.1 without effect"


def test_placebo_sampling_is_seeded():
    y = simulate_geo_panel(14, 60, seed=1)
    treated = ["G00", "G01", "G02"]
    a = placebo_in_space(y, treated, y.index[-6], max_placebos=10, seed=4)
    b = placebo_in_space(y, treated, y.index[-6], max_placebos=10, seed=4)
    c = placebo_in_space(y, treated, y.index[-6], max_placebos=10, seed=5)
    assert len(a.placebos) == 10
    pd.testing.assert_frame_equal(a.placebos, b.placebos)
    assert list(a.placebos["placebo_geos"]) != list(c.placebos["placebo_geos"])


# --- the record ------------------------------------------------------------------------------------


def test_estimate_record_is_a_flat_json_friendly_row():
    y, start = holdout(2)
    est = estimate_geo_lift(y, TREATED, start, post_end=y.index[-1], experiment_id="exp-7")
    record = est.to_record()
    inputs = json.loads(record["inputs"])
    assert record["experiment_id"] == "exp-7" and record["method"] == AUGMENTED_SYNTHETIC_CONTROL
    assert set(inputs["donor_weights"]) == set(y.columns) - set(TREATED)
    assert 0 < inputs["placebo_p_value"] <= 1 and inputs["pre_rmse"] > 0
    assert inputs["warnings"] == []
    assert pd.DataFrame([record]).shape == (1, len(record))
    again = estimate_geo_lift(y, TREATED, start, post_end=y.index[-1], experiment_id="exp-7")
    assert again.to_record() == record


def test_periods_after_post_end_are_ignored():
    y, start = holdout(3)
    end = y.index[-1]
    longer = pd.concat([y, y.iloc[-4:].set_axis(y.index[-4:] + pd.Timedelta(weeks=4)) * 3.0])
    a = estimate_geo_lift(y, TREATED, start)
    b = estimate_geo_lift(longer, TREATED, start, post_end=end)
    assert a.to_record() == b.to_record()


def test_incrementality_estimate_rejects_bad_ci_level_and_cleans_inputs():
    kwargs = dict(
        experiment_id="e",
        method="m",
        metric="revenue",
        lift_pct=0.1,
        lift_ci_low=0.0,
        lift_ci_high=0.2,
        incremental=1.0,
        incremental_ci_low=0.0,
        incremental_ci_high=2.0,
        p_value=0.01,
        counterfactual=10.0,
        observed=11.0,
        n_treated=1,
        n_control=2,
        n_pre=3,
        n_post=4,
    )
    est = IncrementalityEstimate(
        ci_level=0.9, inputs={"w": np.array([0.5, np.float64(0.5)]), "x": math.inf}, **kwargs
    )
    assert json.loads(est.to_record()["inputs"]) == {"w": [0.5, 0.5], "x": None}
    with pytest.raises(ValueError, match="ci_level"):
        IncrementalityEstimate(ci_level=90, **kwargs)


# --- bad input -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return simulate_geo_panel(6, 30, seed=9)


def test_too_few_pre_periods(panel):
    with pytest.raises(ValueError, match="pre-period points"):
        estimate_geo_lift(panel, ["G00"], panel.index[5])


def test_treated_geo_not_in_data(panel):
    with pytest.raises(ValueError, match=r"\['US-ZZ'\] are not columns"):
        estimate_geo_lift(panel, ["G00", "US-ZZ"], panel.index[-4])


def test_nan_values_are_named(panel):
    bad = panel.copy()
    bad.iloc[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values in geos \['G02'\]"):
        estimate_geo_lift(bad, ["G00"], panel.index[-4])


def test_nan_after_post_end_is_irrelevant(panel):
    bad = panel.copy()
    bad.iloc[-1, 2] = np.nan
    est = estimate_geo_lift(bad, ["G00"], panel.index[-4], post_end=panel.index[-2])
    assert est.n_post == 3 and math.isfinite(est.lift_pct)
    assert "under a year" in est.inputs["warnings"][0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(treated=[]), "treated is empty"),
        (dict(treated=["G00", "G00"]), "twice"),
        (dict(treated=["G00", "G01", "G02", "G03", "G04"]), "at least 2 control geos"),
        (dict(controls=["G00", "G01"]), "both treated and controls"),
        (dict(post_start=pd.Timestamp("2030-01-07")), "no period of y falls"),
        (dict(post_end=pd.Timestamp("2020-01-06")), "before post_start"),
        (dict(post_start=3), "cannot be compared"),
        (dict(method="diff_in_diff"), "method must be one of"),
        (dict(alpha=1.5), "alpha"),
        (dict(ridge_ratio=0.0), "ridge_ratio"),
    ],
)
def test_bad_arguments(panel, kwargs, message):
    args = dict(y=panel, treated=["G00"], post_start=panel.index[-4]) | kwargs
    with pytest.raises(ValueError, match=message):
        estimate_geo_lift(**args)


def test_unsorted_or_non_frame_or_non_positive(panel):
    with pytest.raises(ValueError, match="sorted ascending"):
        estimate_geo_lift(panel.iloc[::-1], ["G00"], panel.index[-4])
    with pytest.raises(ValueError, match="DataFrame"):
        estimate_geo_lift(panel.to_numpy(), ["G00"], panel.index[-4])
    negative = panel.copy()
    negative["G03"] = -negative["G03"]
    with pytest.raises(ValueError, match=r"\['G03'\] have a non-positive mean"):
        estimate_geo_lift(negative, ["G00"], panel.index[-4])
    assert prepare_panel(panel, "G00", panel.index[-4]).treated == ("G00",)
