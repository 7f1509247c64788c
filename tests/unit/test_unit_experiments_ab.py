"""User-level A/B tests: CUPED shrinks variance without bias; the mSPRT survives daily peeking."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from models.experiments.ab import (
    always_valid_p_values,
    confidence_sequence,
    cuped_difference_in_means,
    difference_in_means,
    sequential_test,
)

# --- CUPED -----------------------------------------------------------------------------------------


def correlated_arm(rng, n: int, effect: float, rho: float = 0.7):
    """Outcome y and pre-period covariate x with corr(x, y) = rho; treatment adds `effect`."""
    x = rng.normal(50.0, 10.0, n)
    y = 50.0 + effect + rho * (x - 50.0) + math.sqrt(1 - rho**2) * rng.normal(0.0, 10.0, n)
    return y, x


def test_cuped_is_unbiased_and_shrinks_variance():
    effect, n = 2.0, 2000
    plain, cuped, ses, covered = [], [], [], []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        yt, xt = correlated_arm(rng, n, effect)
        yc, xc = correlated_arm(rng, n, 0.0)
        c = cuped_difference_in_means(yt, yc, xt, xc)
        d = difference_in_means(yt, yc)
        plain.append(d.incremental / n)
        cuped.append(c.incremental / n)
        ses.append((c.inputs["se"], d.inputs["se"]))
        covered.append(c.incremental_ci_low <= effect * n <= c.incremental_ci_high)
    plain, cuped = np.array(plain), np.array(cuped)
    ratio = cuped.var() / plain.var()
    assert ratio <= 0.6, f"var(CUPED) / var(plain) = {ratio:.3f}"
    se_ratio = np.mean([c**2 / p**2 for c, p in ses])
    assert se_ratio == pytest.approx(ratio, abs=0.08)  # the reported SE tracks the real spread
    for name, est in (("plain", plain), ("cuped", cuped)):
        assert abs(est.mean() - effect) < 3 * est.std() / math.sqrt(len(est)), name
    assert 0.92 <= np.mean(covered) <= 0.98


def test_cuped_record_and_lift():
    rng = np.random.default_rng(11)
    yt, xt = correlated_arm(rng, 5000, 5.0, rho=0.8)
    yc, xc = correlated_arm(rng, 5000, 0.0, rho=0.8)
    est = cuped_difference_in_means(yt, yc, xt, xc, alpha=0.05, experiment_id="ab-1")
    assert est.method == "cuped_difference_in_means" and est.ci_level == 0.95
    assert est.lift_ci_low < est.lift_pct < est.lift_ci_high
    assert est.lift_pct == pytest.approx(0.1, abs=0.02)  # 5 on a mean of 50
    assert est.p_value < 1e-6
    assert est.inputs["variance_reduction"] == pytest.approx(0.64, abs=0.05)
    assert est.incremental == pytest.approx(est.observed - est.counterfactual)
    assert (est.n_treated, est.n_control, est.n_pre) == (5000, 5000, 1)
    record = est.to_record()
    assert json.loads(record["inputs"])["theta"] == pytest.approx(0.8, abs=0.05)


def test_difference_in_means_matches_scipy_welch():
    rng = np.random.default_rng(5)
    yt, yc = rng.normal(10.5, 3.0, 400), rng.normal(10.0, 5.0, 700)
    est = difference_in_means(yt, yc, alpha=0.1)
    ref = stats.ttest_ind(yt, yc, equal_var=False)
    assert est.p_value == pytest.approx(ref.pvalue)
    assert est.inputs["t_stat"] == pytest.approx(ref.statistic)
    assert est.n_pre == 0 and est.method == "difference_in_means"


def test_ab_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        difference_in_means([1.0, np.nan, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2 users"):
        difference_in_means([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="one value per user"):
        cuped_difference_in_means([1.0, 2.0, 3.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="covariate is constant"):
        cuped_difference_in_means([1.0, 2.0], [1.0, 3.0], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="constant outcomes"):
        difference_in_means([1.0, 1.0], [2.0, 2.0])
    with pytest.raises(ValueError, match="alpha"):
        difference_in_means([1.0, 2.0], [1.0, 3.0], alpha=0.0)
    with pytest.raises(ValueError, match="one-dimensional"):
        difference_in_means(np.ones((3, 2)), [1.0, 3.0])


# --- sequential (mSPRT) ----------------------------------------------------------------------------

DAYS = 28


def revenue_arm(rng, n: int, lift: float):
    """Per-user revenue (10 % buy, log-normal basket) and arrival day over DAYS days."""
    buy = rng.random(n) < 0.1
    y = np.where(buy, rng.lognormal(3.5, 0.8, n), 0.0) * (1.0 + lift)
    return y, rng.integers(0, DAYS, n)


def run_many(n_runs: int, lift: float, users_per_arm: int, seed0: int):
    ever_msprt, ever_naive, first_days = [], [], []
    for seed in range(seed0, seed0 + n_runs):
        rng = np.random.default_rng(seed)
        yt, dt = revenue_arm(rng, users_per_arm, lift)
        yc, dc = revenue_arm(rng, users_per_arm, 0.0)
        res = sequential_test(yt, dt, yc, dc, alpha=0.05)
        assert len(res.looks) == DAYS
        ever_msprt.append(res.first_rejection is not None)
        first_days.append(res.first_rejection_day)
        naive_p = 2 * stats.norm.sf(np.abs(res.diff) / np.sqrt(res.var))
        ever_naive.append(bool((naive_p <= 0.05).any()))
    return np.mean(ever_msprt), np.mean(ever_naive), first_days


def test_msprt_aa_false_positive_rate_under_daily_peeking():
    msprt, naive, _ = run_many(500, 0.0, 4200, seed0=0)
    assert msprt <= 0.05, f"mSPRT ever rejected in {msprt:.3f} of 500 A/A runs over {DAYS} looks"
    # Teeth: the same daily looks with a fixed-horizon z-test reject far more often.
    assert naive > 0.1, f"naive repeated testing rejected only {naive:.3f}"


def test_msprt_power_with_a_real_effect():
    msprt, _, first_days = run_many(200, 0.3, 8400, seed0=10_000)
    assert msprt >= 0.8, f"mSPRT detected a 30 % lift in only {msprt:.3f} of runs"
    stopped = [d for d in first_days if d is not None]
    assert np.median(stopped) < DAYS - 1  # detected before the last look, typically


def test_confidence_sequence_covers_the_truth_at_every_look():
    misses = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        yt, dt = rng.normal(1.0, 2.0, 3000), rng.integers(0, 20, 3000)
        yc, dc = rng.normal(0.8, 2.0, 3000), rng.integers(0, 20, 3000)
        res = sequential_test(yt, dt, yc, dc, alpha=0.1)
        misses += bool(((res.ci_low > 0.2) | (res.ci_high < 0.2)).any())
        assert (np.diff(res.ci_low) >= 0).all() and (np.diff(res.ci_high) <= 0).all()
        assert (np.diff(res.p_values) <= 0).all()
    assert misses / 300 <= 0.1


def test_msprt_formulas_and_known_variance():
    # Reject exactly when |diff| crosses the confidence-sequence boundary for 0.
    var = np.array([1.0, 0.5, 0.25])
    tau2 = 0.3
    half = np.sqrt(var * (var + tau2) / tau2 * (2 * np.log(20) + np.log((var + tau2) / var)))
    p = always_valid_p_values(half * 1.0001, var, tau2)
    assert (p <= 0.05).all() and p[0] == pytest.approx(0.05, rel=1e-3)
    assert (always_valid_p_values(half * 0.999, var, tau2)[:1] > 0.05).all()
    low, high = confidence_sequence(np.zeros(3), var, tau2, alpha=0.05)
    np.testing.assert_allclose(high, half)
    np.testing.assert_allclose(low, -half)
    rng = np.random.default_rng(0)
    y, d = rng.normal(0, 1, 500), rng.integers(0, 5, 500)
    res = sequential_test(y, d, y[::-1] + 0.01, d, sigma2=1.0, tau=0.1)
    n_t = np.cumsum(np.bincount(d))
    np.testing.assert_allclose(res.var, 2.0 / n_t)
    est = res.to_estimate(experiment_id="seq")
    assert est.method == "msprt" and est.n_post == 5 and est.p_value == res.p_values[-1]


def test_sequential_bad_input():
    with pytest.raises(ValueError, match="one entry per user"):
        sequential_test([1.0, 2.0], [0], [1.0], [0])
    with pytest.raises(ValueError, match="tau must be positive"):
        sequential_test([1.0, 2.0], [0, 1], [1.0, 2.0], [0, 1], tau=0.0)
    with pytest.raises(ValueError, match="tau2"):
        always_valid_p_values([0.1], [1.0], 0.0)
