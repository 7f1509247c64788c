"""Budget optimizer against the simulator's true response curves, and the budget policy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from models.budget import (
    DEFAULT_POLICY_PATH,
    InfeasibleBudgetError,
    ResponseCurves,
    allocate,
    load_budget_policy,
    optimize_budget,
    policy_from_dict,
    policy_sha256,
    unit_bounds,
)
from models.simulation.config import SimulationConfig
from models.simulation.market import build_market, calibrate_beta

NO_STEPS = policy_from_dict({"version": "test", "max_change_per_period": None})


@pytest.fixture(scope="module")
def market():
    config = SimulationConfig(seed=11, weeks=52, geos=4)
    m = build_market(config, np.random.default_rng(11))
    calibrate_beta(m, m.actual_spend())
    return m


@pytest.fixture(scope="module")
def truth(market) -> ResponseCurves:
    """National steady-state curves of the simulator: geo shares cancel when spend follows them."""
    t = market.config.channel_truth
    ch = market.channels
    return ResponseCurves.from_point(
        ch,
        beta=market.beta,
        lam=[t[c].saturation_lambda for c in ch],
        alpha=[t[c].adstock_alpha for c in ch],
        scale=market.kappa,
        l_max=8,
    )


@pytest.fixture(scope="module")
def current(market) -> np.ndarray:
    return np.array([market.config.channel_truth[c].weekly_spend for c in market.channels])


def simulator_weekly_contribution(market, national: np.ndarray) -> float:
    """Contribution in a late week of constant national spend split by geo share (the DGP)."""
    spend = np.broadcast_to(
        national[None, None, :] * market.geo_share[None, :, None], (12, len(market.geo_share), 6)
    )
    return float(market.response(np.array(spend))[-1].sum())


def noisy(curves: ResponseCurves, draws: int, sd: float, seed: int) -> ResponseCurves:
    rng = np.random.default_rng(seed)
    shape = (draws, curves.n_units)
    return ResponseCurves(
        units=curves.units,
        channel=curves.channel,
        geo=curves.geo,
        beta=curves.beta * rng.lognormal(0, sd, shape),
        lam=curves.lam * rng.lognormal(0, sd, shape),
        alpha=np.broadcast_to(curves.alpha, shape),
        scale=curves.scale,
    )


def slsqp_optimum(objective, grad, lo, hi, total, starts: int, seed: int) -> np.ndarray:
    """Independent multi-start SLSQP on sum(s) = total within [lo, hi]."""
    rng = np.random.default_rng(seed)
    hi_f = np.minimum(hi, total)
    best, best_val = None, -np.inf
    for _ in range(starts):
        x0 = lo + rng.dirichlet(np.ones(len(lo))) * (total - lo.sum())
        x0 = np.clip(x0, lo, hi_f)
        res = minimize(
            lambda s: -objective(s),
            x0,
            jac=(lambda s: -grad(s)) if grad else None,
            method="SLSQP",
            bounds=list(zip(lo, hi_f, strict=True)),
            constraints=[{"type": "eq", "fun": lambda s: s.sum() - total}],
            options={"maxiter": 500, "ftol": 1e-12},
        )
        if res.success and -res.fun > best_val:
            best, best_val = res.x, -res.fun
    assert best is not None
    return best


# --- response curves ------------------------------------------------------------------------


def test_curves_reproduce_the_simulator(market, truth, current):
    for spend in (current, current * 0.3, current * 2.5):
        assert truth.contribution(spend).sum() == pytest.approx(
            simulator_weekly_contribution(market, spend), rel=1e-10
        )


def test_marginal_is_the_derivative_and_grids_broadcast(truth, current):
    h = 1e-3
    numeric = (truth.contribution(current + h) - truth.contribution(current - h)) / (2 * h)
    np.testing.assert_allclose(truth.marginal(current), numeric, rtol=1e-6)
    grid = np.outer(np.linspace(0, 3, 7), current)
    assert truth.contribution(grid).shape == (1, 7, 6)
    assert truth.mean_curve(grid).shape == (7, 6)
    np.testing.assert_allclose(truth.mean_curve(grid)[0], 0.0)
    normalised = ResponseCurves.from_point(
        ["a"], beta=[2.0], lam=[1.0], alpha=[0.5], scale=[1.0], normalize=True
    )
    assert normalised.contribution([1.0])[0, 0] == pytest.approx(2 * math.tanh(0.5))


def test_from_point_splits_unit_names():
    c = ResponseCurves.from_point(
        ["search|US-CA", "tv"], beta=[1, 1], lam=[1, 1], alpha=[0, 0], scale=[1, 1]
    )
    assert c.channel == ("search", "tv")
    assert c.geo == ("US-CA", None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": np.ones((2, 3))}, "beta must have shape \\[draws, 2\\]"),
        ({"beta": -np.ones((1, 2))}, "beta must be >= 0"),
        ({"lam": np.zeros((1, 2))}, "lam must be > 0"),
        ({"alpha": np.full((1, 2), 1.5)}, "alpha must be in"),
        ({"scale": np.array([1.0, 0.0])}, "scale must be finite and > 0"),
        ({"channel": ("a",)}, "channel has 1 entries for 2 units"),
        ({"units": ("a", "a")}, "units must be unique"),
        ({"lam": np.ones((3, 2))}, "need the same shape"),
    ],
)
def test_curves_validate(kwargs, message):
    base = dict(
        units=("a", "b"),
        channel=("a", "b"),
        geo=(None, None),
        beta=np.ones((1, 2)),
        lam=np.ones((1, 2)),
        alpha=np.zeros((1, 2)),
        scale=np.ones(2),
    )
    with pytest.raises(ValueError, match=message):
        ResponseCurves(**{**base, **kwargs})


def test_spend_is_validated(truth):
    with pytest.raises(ValueError, match="spend must have shape"):
        truth.contribution([1.0, 2.0])
    with pytest.raises(ValueError, match=">= 0"):
        truth.contribution(-np.ones(6))


# --- (a) the true optimum -------------------------------------------------------------------


@pytest.mark.parametrize("policy_name", ["no_steps", "default"])
def test_finds_the_true_optimum(market, truth, current, policy_name):
    policy = NO_STEPS if policy_name == "no_steps" else load_budget_policy()
    plan = optimize_budget(truth, current, policy)
    proposed = plan.table["proposed_spend"].to_numpy()
    total = current.sum()
    assert proposed.sum() == pytest.approx(total, rel=1e-12)

    # Independent optimum of the simulator's own response function (not ResponseCurves).
    bounds = unit_bounds(truth, current, policy)
    reference = slsqp_optimum(
        lambda s: simulator_weekly_contribution(market, s),
        None,
        bounds.lower,
        bounds.upper,
        total,
        starts=4,
        seed=0,
    )
    ours = simulator_weekly_contribution(market, proposed)
    best = simulator_weekly_contribution(market, reference)
    assert ours >= best * (1 - 0.01)
    # Exact method: no worse than a tight multi-start SLSQP with analytic gradients.
    tight = slsqp_optimum(
        lambda s: truth.mean_curve(s).sum(),
        truth.mean_marginal,
        bounds.lower,
        bounds.upper,
        total,
        starts=8,
        seed=1,
    )
    assert truth.mean_curve(proposed).sum() >= truth.mean_curve(tight).sum() * (1 - 1e-9)
    assert plan.expected_contribution_proposed == pytest.approx(ours, rel=1e-10)
    if policy_name == "no_steps":
        assert plan.expected_lift > 0


def test_matches_greedy_increments_on_noisy_draws(truth, current):
    # Marginal analysis in $10 steps is exact up to one step for concave separable returns.
    curves = noisy(truth, draws=200, sd=0.2, seed=5)
    lo, hi = np.zeros(6), np.full(6, np.inf)
    total = 30_000.0
    spend, _ = allocate(curves, lo, hi, total)
    greedy, step = np.zeros(6), 10.0
    for _ in range(int(total / step)):
        gain = np.diag(curves.mean_curve(greedy + step * np.eye(6))) - curves.mean_curve(greedy)
        greedy[np.argmax(gain)] += step
    np.testing.assert_allclose(spend, greedy, atol=6 * step)
    assert curves.mean_curve(spend).sum() >= curves.mean_curve(greedy).sum() - 1e-6


# --- (b) equal marginal returns -------------------------------------------------------------


def test_equal_marginal_returns_at_the_optimum(truth, current):
    curves = noisy(truth, draws=300, sd=0.15, seed=2)
    plan = optimize_budget(curves, current, load_budget_policy())
    t = plan.table
    interior = t["binding"] == ""
    assert interior.sum() >= 2
    np.testing.assert_allclose(
        t.loc[interior, "marginal_return_proposed"], plan.marginal_return, rtol=1e-8
    )
    # KKT: units held at a cap would take more; units held at a floor would give some up.
    at_upper = t["proposed_spend"] >= t["upper_bound"] - 1e-6
    at_lower = (t["proposed_spend"] <= t["lower_bound"] + 1e-6) & ~at_upper
    assert (t.loc[at_upper, "marginal_return_proposed"] >= plan.marginal_return * (1 - 1e-8)).all()
    assert (t.loc[at_lower, "marginal_return_proposed"] <= plan.marginal_return * (1 + 1e-8)).all()


# --- (c) limits -----------------------------------------------------------------------------


def test_step_limits_floors_and_caps_are_honoured(truth, current):
    policy = load_budget_policy()
    plan = optimize_budget(truth, current, policy)
    t = plan.table.set_index("unit")
    for ch in truth.units:
        step = policy.step(ch)
        lim = policy.limits(ch)
        s, c = t.loc[ch, "proposed_spend"], t.loc[ch, "current_spend"]
        assert c * (1 - step) - 1e-6 <= s <= c * (1 + step) + 1e-6, ch
        assert lim.min_weekly_spend - 1e-6 <= s <= lim.max_weekly_spend + 1e-6, ch
    assert t.loc["tv", "proposed_spend"] >= policy.limits("tv").min_weekly_spend
    assert t.loc["email", "proposed_spend"] <= policy.limits("email").max_weekly_spend
    assert t.loc["search", "binding"] == "step_limit_up"
    assert t.loc["tv", "binding"] == "step_limit_down"
    assert plan.binding == dict(zip(t.index, t["binding"], strict=True))
    assert plan.policy_hash == policy_sha256(DEFAULT_POLICY_PATH)
    assert plan.policy_version == "1"


def test_min_contract_and_cap_bind(truth, current):
    policy = policy_from_dict(
        {
            "version": 1,
            "max_change_per_period": None,
            "channels": {
                "tv": {"min_weekly_spend": 44_000},
                "email": {"max_weekly_spend": 4_200},
                "display": None,
            },
        }
    )
    plan = optimize_budget(truth, current, policy)
    t = plan.table.set_index("unit")
    assert t.loc["tv", "proposed_spend"] == pytest.approx(44_000)
    assert t.loc["tv", "binding"] == "min_contract"
    assert t.loc["email", "proposed_spend"] == pytest.approx(4_200)
    assert t.loc["email", "binding"] == "max_cap"
    assert t.loc["display", "binding"] == "zero_floor"


def test_infeasible_budget_is_a_clear_error(truth, current):
    policy = load_budget_policy()
    with pytest.raises(InfeasibleBudgetError, match="outside the feasible range"):
        optimize_budget(truth, current, policy, total_budget=current.sum() * 1.5)
    closest = optimize_budget(
        truth, current, policy, total_budget=current.sum() * 1.5, on_infeasible="closest"
    )
    assert not closest.feasible
    assert "nearest feasible budget" in closest.message
    assert closest.total_proposed == pytest.approx(unit_bounds(truth, current, policy).upper.sum())


def test_contract_out_of_step_reach_moves_toward_it_by_one_step(truth, current):
    policy = load_budget_policy()
    tv = truth.units.index("tv")
    low_tv = current.copy()
    low_tv[tv] = policy.limits("tv").min_weekly_spend / 2
    plan = optimize_budget(truth, low_tv, policy)
    step = policy.step("tv")
    assert plan.table["proposed_spend"].iloc[tv] == pytest.approx(low_tv[tv] * (1 + step))
    assert plan.binding["tv"] == "toward_min_contract"
    assert plan.total_proposed == pytest.approx(low_tv.sum())


def test_channel_limits_are_shared_over_geo_units():
    units = ("tv|US-CA", "tv|US-TX", "search|US-CA", "search|US-TX")
    curves = ResponseCurves.from_point(
        units, beta=[5e3, 5e3, 4e4, 4e4], lam=[1, 1, 1.5, 1.5], alpha=[0.5] * 4, scale=[3e3] * 4
    )
    current = np.array([6_000.0, 3_000.0, 5_000.0, 5_000.0])
    policy = policy_from_dict(
        {
            "version": 1,
            "max_change_per_period": 0.5,
            "channels": {"tv": {"min_weekly_spend": 8_000}},
        }
    )
    plan = optimize_budget(curves, current, policy)
    t = plan.table.set_index("unit")
    assert t.loc[["tv|US-CA", "tv|US-TX"], "proposed_spend"].sum() >= 8_000 - 1e-6
    assert t.loc["tv|US-CA", "lower_bound"] == pytest.approx(8_000 * 2 / 3)
    assert list(plan.table["geo"]) == ["US-CA", "US-TX", "US-CA", "US-TX"]


# --- (d) probability of beating current -----------------------------------------------------


def test_prob_beats_current(truth, current):
    curves = noisy(truth, draws=400, sd=0.15, seed=3)
    bad = current.copy()
    bad[truth.units.index("display")] += bad[truth.units.index("search")] * 0.9
    bad[truth.units.index("search")] *= 0.1
    better = optimize_budget(curves, bad, NO_STEPS)
    assert better.prob_beats_current >= 0.97
    assert better.lift_ci_low > 0
    assert better.lift_ci_low <= better.expected_lift <= better.lift_ci_high

    optimum = better.table["proposed_spend"].to_numpy()
    again = optimize_budget(curves, optimum, NO_STEPS)
    np.testing.assert_allclose(again.table["proposed_spend"], optimum, rtol=1e-7)
    assert again.prob_beats_current <= 0.5
    assert abs(again.expected_lift) < 1e-6 * again.expected_contribution_current


# --- (e) target ROAS ------------------------------------------------------------------------


@pytest.mark.parametrize("policy_name", ["no_steps", "default"])
def test_target_roas_is_reached_at_the_largest_budget(truth, current, policy_name):
    policy = NO_STEPS if policy_name == "no_steps" else load_budget_policy()
    target = 1.5
    plan = optimize_budget(truth, current, policy, objective="target_roas", target_roas=target)
    assert plan.objective == "target_roas"
    assert plan.expected_roas_proposed == pytest.approx(target, rel=1e-8)
    # Any larger budget, spent optimally within the same bounds, falls below the target.
    b = unit_bounds(truth, current, policy)
    bigger = plan.total_proposed * 1.01
    if bigger <= b.upper.sum():
        spend, _ = allocate(truth, b.lower, b.upper, bigger)
        assert truth.mean_curve(spend).sum() / bigger < target


def test_target_roas_from_the_policy_and_out_of_reach(truth, current):
    policy = policy_from_dict(
        {
            "version": 1,
            "objective": "target_roas",
            "target_roas": 2.0,
            "max_change_per_period": None,
        }
    )
    plan = optimize_budget(truth, current, policy)
    assert plan.target_roas == 2.0
    assert plan.expected_roas_proposed == pytest.approx(2.0, rel=1e-8)
    with pytest.raises(InfeasibleBudgetError, match="out of reach"):
        optimize_budget(truth, current, policy, target_roas=50.0)
    closest = optimize_budget(truth, current, policy, target_roas=50.0, on_infeasible="closest")
    assert not closest.feasible
    assert closest.expected_roas_proposed < 50.0
    with pytest.raises(ValueError, match="total_budget is what"):
        optimize_budget(truth, current, policy, total_budget=1e4)


def test_target_roas_capped_by_bounds(truth, current):
    # A low target is met even with every unit at its upper bound: the caps decide.
    policy = load_budget_policy()
    plan = optimize_budget(truth, current, policy, objective="target_roas", target_roas=0.1)
    b = unit_bounds(truth, current, policy)
    assert plan.total_proposed == pytest.approx(b.upper.sum())
    assert plan.expected_roas_proposed > 0.1


# --- plan shape and determinism -------------------------------------------------------------


def test_plan_table_and_determinism(truth, current):
    curves = noisy(truth, draws=500, sd=0.1, seed=4)
    plan = optimize_budget(curves, current, load_budget_policy(), max_draws=200, seed=7)
    assert plan.n_draws == 200
    for col in (
        "unit",
        "channel",
        "geo",
        "current_spend",
        "proposed_spend",
        "change",
        "change_pct",
        "expected_contribution_current",
        "expected_contribution_proposed",
        "expected_effect",
        "effect_ci_low",
        "effect_ci_high",
        "binding",
    ):
        assert col in plan.table.columns, col
    t = plan.table
    np.testing.assert_allclose(t["change"], t["proposed_spend"] - t["current_spend"])
    assert (t["effect_ci_low"] <= t["expected_effect"] + 1e-9).all()
    assert (t["expected_effect"] <= t["effect_ci_high"] + 1e-9).all()
    assert plan.expected_lift == pytest.approx(t["expected_effect"].sum())
    again = optimize_budget(curves, current, load_budget_policy(), max_draws=200, seed=7)
    pd.testing.assert_frame_equal(plan.table, again.table)
    assert plan.prob_beats_current == again.prob_beats_current


# --- (f) the policy file --------------------------------------------------------------------


def test_default_policy_loads_and_hashes_stably(tmp_path):
    policy = load_budget_policy()
    assert policy.period == "week"
    assert policy.max_change_per_period == 0.2
    assert set(policy.channels) == {"search", "social", "display", "video", "tv", "email"}
    assert policy.limits("tv").min_weekly_spend > 0
    assert math.isfinite(policy.limits("email").max_weekly_spend)
    assert policy.sha256 == policy_sha256(DEFAULT_POLICY_PATH)

    # Comments and key order do not change the hash; a value does.
    text = DEFAULT_POLICY_PATH.read_text()
    reordered = tmp_path / "reordered.yaml"
    body = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    version_line = next(line for line in body if line.startswith("version:"))
    body.remove(version_line)
    reordered.write_text("\n".join([*body, version_line, "# moved"]) + "\n")
    assert policy_sha256(reordered) == policy.sha256
    changed = tmp_path / "changed.yaml"
    changed.write_text(text.replace("max_change_per_period: 0.2", "max_change_per_period: 0.25"))
    assert policy_sha256(changed) != policy.sha256
    assert load_budget_policy(changed).max_change_per_period == 0.25


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"version": 1, "channels": {"radio": {}}}, "unknown channel keys \\['radio'\\]"),
        ({"version": 1, "channels": {"tv": {"min_weekly_spend": -5}}}, "must be >= 0"),
        ({"version": 1, "max_change_per_period": -0.1}, "max_change_per_period must be >= 0"),
        (
            {"version": 1, "channels": {"tv": {"min_weekly_spend": 10, "max_weekly_spend": 5}}},
            "is below min_weekly_spend",
        ),
        ({"version": 1, "channels": {"tv": {"floor": 1}}}, "unknown fields \\['floor'\\]"),
        ({"version": 1, "budget": 1}, "unknown fields \\['budget'\\]"),
        ({"version": 1, "objective": "target_roas"}, "needs a target_roas"),
        ({"version": 1, "target_roas": 0}, "target_roas must be > 0"),
        ({"version": 1, "objective": "max_profit"}, "objective must be one of"),
        ({"version": 1, "period": "day"}, "period must be 'week'"),
        ({"version": 1, "currency": "EUR"}, "currency must be 'USD'"),
        ({"period": "week"}, "needs a version"),
        ({"version": 1, "max_change_per_period": True}, "must be a number"),
        ({"version": 1, "channels": {"tv": {"max_weekly_spend": "lots"}}}, "must be a number"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_policy_validation(document, message):
    with pytest.raises(ValueError, match=message):
        policy_from_dict(document)


def test_policy_file_errors_name_the_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nchannels:\n  radio: {}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: channels has unknown channel keys"):
        load_budget_policy(bad)
    assert load_budget_policy(bad, known_channels=["radio"]).limits("radio").min_weekly_spend == 0


def test_optimizer_input_errors(truth, current):
    with pytest.raises(ValueError, match="current_spend must have shape"):
        optimize_budget(truth, current[:3], NO_STEPS)
    with pytest.raises(ValueError, match="objective must be"):
        optimize_budget(truth, current, NO_STEPS, objective="max_profit")
    with pytest.raises(ValueError, match="needs a target_roas"):
        optimize_budget(truth, current, NO_STEPS, objective="target_roas")
