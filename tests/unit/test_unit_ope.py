"""Off-policy evaluation and the gate: IPS, SNIPS and DR against known values, on synthetic logs
and on the simulator's serving log against truth.json."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.bandits.gate import ope_gate
from models.bandits.linucb import fit_linucb, linucb_policy
from models.bandits.logs import BanditLog, from_serving_log, greedy, uniform_policy
from models.bandits.ope import (
    compare_to_logging,
    effective_sample_size,
    evaluate_policy,
    fit_reward_model,
)
from models.bandits.truth import (
    oracle_policy,
    serving_truth,
    true_click_probabilities,
    true_policy_value,
    truth_logging_policy,
)
from models.simulation.config import SimulationConfig
from models.simulation.generator import SERVING_LOG_DIR, SERVING_LOG_FILE, simulate

N_BOOT = 400
TOLERANCE = 0.15  # relative error allowed against the true value

# --- synthetic logs with known rates --------------------------------------------------------------

RATES = np.array([0.1, 0.2, 0.3])
LOGGING = np.array([0.5, 0.3, 0.2])


def synthetic_log(n: int = 20_000, seed: int = 0, logging: np.ndarray = LOGGING) -> BanditLog:
    rng = np.random.default_rng(seed)
    k = len(logging)
    actions = rng.choice(k, size=n, p=logging)
    rewards = (rng.random(n) < RATES[:k][actions]).astype(float)
    return BanditLog(
        contexts=pd.DataFrame({"campaign_id": "c", "channel": "display", "geo": "G1",
                               "device": rng.choice(["mobile", "desktop"], n)}),
        arms=tuple("abc"[:k]),
        actions=actions,
        rewards=rewards,
        propensities=logging[actions],
        eligible=np.ones((n, k), dtype=bool),
    )  # fmt: skip


def always(log: BanditLog, arm: int) -> np.ndarray:
    out = np.zeros((log.n, log.n_arms))
    out[:, arm] = 1.0
    return out


def test_estimators_recover_a_known_policy_value_and_cover_it():
    log = synthetic_log()
    res = evaluate_policy(log, always(log, 2), n_boot=N_BOOT, seed=1)
    for name, est in res.estimates.items():
        assert est.value == pytest.approx(0.3, abs=0.02), name
        assert est.covers(0.3), name
        assert est.upper - est.lower < 0.05, name
    # Arm 2 is logged a fifth of the time, each with weight 5: ESS = n / 5.
    assert res.ess == pytest.approx(log.n / 5, rel=0.05)
    assert res.max_weight == pytest.approx(5.0)


def test_logging_policy_as_candidate_has_weight_one_and_no_difference():
    log = synthetic_log()
    target = np.tile(LOGGING, (log.n, 1))
    cmp = compare_to_logging(log, target, n_boot=N_BOOT, seed=1)
    assert cmp.candidate.ess == pytest.approx(log.n)
    assert cmp.candidate.ips.value == pytest.approx(cmp.logging.value)
    assert cmp.logging.value == pytest.approx(LOGGING @ RATES, abs=0.01)
    assert cmp.difference["ips"].value == pytest.approx(0.0, abs=1e-12)
    assert cmp.difference["dr"].lower < 0 < cmp.difference["dr"].upper


def test_paired_difference_is_tighter_than_the_values_it_compares():
    log = synthetic_log()
    target = np.tile([0.45, 0.3, 0.25], (log.n, 1))  # a small step away from the logging policy
    cmp = compare_to_logging(log, target, n_boot=N_BOOT, seed=2)
    diff = cmp.difference["dr"]
    assert diff.upper - diff.lower < 0.5 * (cmp.candidate.dr.upper - cmp.candidate.dr.lower)
    assert diff.value == pytest.approx((target[0] - LOGGING) @ RATES, abs=0.004)


def test_bootstrap_is_deterministic_with_a_seed():
    log = synthetic_log(5_000)
    a = evaluate_policy(log, always(log, 1), n_boot=200, seed=3)
    b = evaluate_policy(log, always(log, 1), n_boot=200, seed=3)
    c = evaluate_policy(log, always(log, 1), n_boot=200, seed=4)
    assert a == b
    assert a.ips.value == c.ips.value
    assert (a.ips.lower, a.ips.upper) != (c.ips.lower, c.ips.upper)


def test_effective_sample_size():
    assert effective_sample_size(np.ones(10)) == pytest.approx(10)
    assert effective_sample_size(np.array([1.0, 0, 0, 0])) == pytest.approx(1)
    assert effective_sample_size(np.zeros(5)) == 0.0


def test_a_zero_propensity_in_the_log_is_a_clear_error():
    log = synthetic_log(100)
    props = log.propensities.copy()
    props[7] = 0.0
    with pytest.raises(ValueError, match=r"outside \(0, 1\] \(first: row 7"):
        BanditLog(log.contexts, log.arms, log.actions, log.rewards, props, log.eligible)
    df = pd.DataFrame({"campaign_id": ["c", "c"], "channel": "display", "geo": "G1",
                       "device": "mobile", "creative_id": ["a", "b"], "propensity": [0.5, 0.0],
                       "clicked": [0, 1]})  # fmt: skip
    with pytest.raises(ValueError, match="importance weighting divides"):
        from_serving_log(df)


def test_an_arm_never_logged_is_invisible_to_ips_and_modelled_by_dr():
    log = synthetic_log(logging=np.array([0.6, 0.4, 0.0]))  # arm c eligible, never served
    assert np.bincount(log.actions, minlength=3)[2] == 0
    model = fit_reward_model(log)
    assert model.predict(log.contexts)[:, 2] == pytest.approx(log.rewards.mean())
    res = evaluate_policy(log, always(log, 2), n_boot=50, seed=0)
    assert res.ess == 0.0
    assert res.ips.value == 0.0
    assert np.isnan(res.snips.value)
    assert res.dr.value == pytest.approx(log.rewards.mean())  # the model's guess, nothing more
    decision = ope_gate(log, always(log, 2), n_boot=50, seed=0)
    assert not decision.proposed
    assert "effective sample size 0" in decision.reasons[0]


def test_one_arm_log_every_policy_is_the_logging_policy():
    log = synthetic_log(2_000, logging=np.array([1.0]))
    cmp = compare_to_logging(log, always(log, 0), n_boot=100, seed=0)
    assert cmp.candidate.ips.value == cmp.logging.value == log.rewards.mean()
    assert cmp.difference["snips"].lower == cmp.difference["snips"].upper == 0.0
    assert not ope_gate(log, always(log, 0), n_boot=100, seed=0).proposed


def test_bad_candidate_probabilities_are_refused():
    log = synthetic_log(100)
    with pytest.raises(ValueError, match="shape"):
        evaluate_policy(log, np.ones((100, 2)) / 2)
    with pytest.raises(ValueError, match="sum to 1"):
        evaluate_policy(log, np.ones((100, 3)))
    blocked = BanditLog(log.contexts, log.arms, log.actions, log.rewards, log.propensities,
                        log.eligible & (np.arange(3) != 2) | (log.actions == 2)[:, None])  # fmt: skip
    with pytest.raises(ValueError, match="not eligible"):
        evaluate_policy(blocked, np.full((100, 3), 1 / 3))


# --- the simulator's serving log against truth.json ------------------------------------------------


@pytest.fixture(scope="module", params=[3, 11], ids=lambda s: f"seed{s}")
def market(request, tmp_path_factory):
    """A small market with the default 100k logged impressions (~1,100 clicks)."""
    config = SimulationConfig(seed=request.param, weeks=8, geos=4, events=2_000, experiments=())
    sim = simulate(config, tmp_path_factory.mktemp("ope"), log=lambda _m: None)
    df = pd.read_csv(sim.landing_dir / SERVING_LOG_DIR / SERVING_LOG_FILE, dtype=str)
    st = serving_truth(sim.truth)
    owners = {a: c["campaign_id"] for a, c in sim.truth["creative_serving"]["creatives"].items()}
    return st, from_serving_log(df, owners)


def worst_policy(st):
    def policy(contexts, arms, eligible):
        return greedy(-true_click_probabilities(st, contexts, arms), eligible)

    return policy


@pytest.mark.parametrize("name", ["logging", "uniform", "best_per_context"])
def test_ope_recovers_true_policy_values_from_the_serving_log(market, name):
    st, log = market
    policy = {
        "logging": truth_logging_policy(st),
        "uniform": uniform_policy,
        "best_per_context": oracle_policy(st),
    }[name]
    true = true_policy_value(st, policy)
    res = evaluate_policy(log, log.probabilities(policy), n_boot=N_BOOT, seed=5)
    for est_name, est in res.estimates.items():
        assert abs(est.value / true - 1) < TOLERANCE, (est_name, est, true)
        assert est.covers(true), (est_name, est, true)


def test_logging_policy_value_is_the_mean_logged_click_rate(market):
    st, log = market
    true = true_policy_value(st, truth_logging_policy(st))
    cmp = compare_to_logging(log, log.probabilities(uniform_policy), n_boot=N_BOOT, seed=5)
    assert abs(cmp.logging.value / true - 1) < TOLERANCE
    assert cmp.logging.covers(true)


def test_ope_of_a_linucb_policy_learnt_on_half_the_log(market):
    st, log = market
    rows = np.random.default_rng(0).permutation(log.n)
    train, test = log.subset(rows[: log.n // 2]), log.subset(rows[log.n // 2 :])
    model, encoder = fit_linucb(train, alpha=0.0)
    policy = linucb_policy(model, encoder, epsilon=0.1)
    true = true_policy_value(st, policy)
    res = evaluate_policy(test, test.probabilities(policy), n_boot=N_BOOT, seed=6)
    assert abs(res.dr.value / true - 1) < TOLERANCE
    assert res.dr.covers(true)
    assert true > true_policy_value(st, truth_logging_policy(st))  # it did learn something


def test_gate_refuses_the_logging_policy_itself(market):
    st, log = market
    decision = ope_gate(log, log.probabilities(truth_logging_policy(st)), n_boot=N_BOOT, seed=7)
    assert not decision.proposed
    assert decision.improvement.lower <= 0.0
    assert "lower end of the 95% interval of the relative improvement" in decision.reasons[0]
    assert "is not above the minimum +0.00%" in decision.reasons[0]


def test_gate_refuses_a_worse_policy(market):
    st, log = market
    worst = worst_policy(st)
    assert true_policy_value(st, worst) < true_policy_value(st, truth_logging_policy(st))
    decision = ope_gate(log, log.probabilities(worst), n_boot=N_BOOT, seed=7)
    assert not decision.proposed
    assert decision.improvement.upper < 0


def test_gate_proposes_a_truly_better_policy(market):
    st, log = market
    best = oracle_policy(st)
    true_lift = true_policy_value(st, best) / true_policy_value(st, truth_logging_policy(st)) - 1
    assert true_lift > 0.1
    decision = ope_gate(log, log.probabilities(best), min_improvement=0.05, n_boot=N_BOOT, seed=7)
    assert decision.proposed, decision.reasons
    assert decision.improvement.lower > 0.05
    assert decision.improvement.covers(true_lift)
    assert decision.confidence == 0.95 and decision.min_improvement == 0.05
    # Asking for more than the log can show refuses the same candidate, and says why.
    greedy_ask = ope_gate(log, log.probabilities(best), min_improvement=1.0, n_boot=N_BOOT, seed=7)
    assert not greedy_ask.proposed
    assert "is not above the minimum +100.00%" in greedy_ask.reasons[0]


def test_gate_guards_on_effective_sample_size(market):
    st, log = market
    decision = ope_gate(
        log, log.probabilities(oracle_policy(st)), min_ess=log.n, n_boot=N_BOOT, seed=7
    )
    assert not decision.proposed
    assert decision.ess < log.n
    assert decision.reasons[0].startswith("effective sample size")


def test_gate_in_absolute_units(market):
    st, log = market
    best = oracle_policy(st)
    diff = true_policy_value(st, best) - true_policy_value(st, truth_logging_policy(st))
    decision = ope_gate(
        log, log.probabilities(best), relative=False, min_improvement=diff / 4, n_boot=N_BOOT
    )
    assert decision.proposed, decision.reasons
    assert decision.improvement.covers(diff)
    with pytest.raises(ValueError, match="estimator"):
        ope_gate(log, log.probabilities(best), estimator="magic")
