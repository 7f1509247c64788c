"""Thompson sampling and LinUCB: posteriors, traffic splits, and regret against known rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.bandits.linucb import ContextEncoder, LinUCB, linucb_policy
from models.bandits.logs import check_probabilities
from models.bandits.simulate import (
    BernoulliEnv,
    UniformAgent,
    device_interaction_env,
    mean_regret,
    run_bandit,
)
from models.bandits.thompson import ThompsonSampler, beta_posteriors, prob_best, traffic_split

# CTR-like rates: five creatives between 1% and 3%.
CTR_RATES = (0.01, 0.015, 0.02, 0.025, 0.03)
SEEDS = range(5)

# --- Thompson sampling -------------------------------------------------------------------------


def test_posteriors_count_clicks_and_non_clicks_on_the_prior():
    post = beta_posteriors([3, 0], [10, 0], arms=["a", "b"], prior=(2.0, 8.0))
    assert post.alpha.tolist() == [5.0, 2.0]
    assert post.beta.tolist() == [15.0, 8.0]
    assert post.mean.tolist() == pytest.approx([0.25, 0.2])


def test_prob_best_matches_symmetry_and_a_clear_winner():
    same = prob_best(beta_posteriors([50, 50], [1000, 1000]), draws=20_000, seed=1)
    assert same == pytest.approx([0.5, 0.5], abs=0.02)
    clear = prob_best(beta_posteriors([20, 60], [1000, 1000]), draws=20_000, seed=1)
    assert clear[1] > 0.999


def test_traffic_split_sums_to_one_respects_the_floor_and_favours_the_winner():
    arms = {"a": (20, 1000), "b": (35, 1000), "c": (60, 1000)}
    split = traffic_split(arms, draws=10_000, seed=3, floor=0.05)
    assert sum(split.values()) == pytest.approx(1.0)
    assert min(split.values()) >= 0.05
    assert split["a"] == pytest.approx(0.05, abs=1e-3)  # hopeless arm: the floor only
    assert split["c"] > 0.85


def test_traffic_split_is_deterministic_with_a_seed():
    arms = {"a": (30, 1000), "b": (33, 1000)}
    assert traffic_split(arms, seed=7) == traffic_split(arms, seed=7)
    assert traffic_split(arms, seed=7) != traffic_split(arms, seed=8)


def test_an_arm_never_shown_explores_according_to_the_prior():
    arms = {"old": (50, 1000), "new": (0, 0)}
    # A flat prior says the new arm is probably far better than 5%: it takes most traffic.
    flat = traffic_split(arms, seed=1, floor=0.0)
    assert flat["new"] > 0.9
    # A CTR-scale prior (mean 0.5%) says it is probably worse: it gets little beyond the floor.
    ctr_prior = traffic_split(arms, seed=1, floor=0.05, prior=(1.0, 199.0))
    assert ctr_prior["new"] < 0.1


def test_one_arm_takes_all_traffic():
    assert traffic_split({"only": (3, 100)}, seed=0) == {"only": 1.0}


@pytest.mark.parametrize(
    "arms, kwargs, match",
    [
        ({}, {}, "at least one arm"),
        ({"a": (1, 10), "b": (1, 10)}, {"floor": 0.6}, "floor"),
        ({"a": (11, 10)}, {}, "clicks <= impressions"),
        ({"a": (-1, 10)}, {}, "clicks <= impressions"),
        ({"a": (1, 10)}, {"prior": (0.0, 1.0)}, "prior"),
    ],
)
def test_traffic_split_refuses_bad_input(arms, kwargs, match):
    with pytest.raises(ValueError, match=match):
        traffic_split(arms, **kwargs)


def test_thompson_regret_is_at_most_a_quarter_of_uniform():
    """Five CTR-like arms (1%..3%), 50,000 impressions with feedback every 10, averaged over
    five seeds: Thompson's cumulative regret is at most 25% of uniform allocation's (measured:
    about 11%)."""
    regret = mean_regret(BernoulliEnv(CTR_RATES), ["uniform", "thompson"], 50_000, SEEDS, 10)
    assert regret["uniform"] == pytest.approx(50_000 * (0.03 - 0.02), rel=0.05)
    assert regret["thompson"] <= 0.25 * regret["uniform"]


def test_run_bandit_is_deterministic_with_a_seed():
    env = BernoulliEnv(CTR_RATES)
    a = run_bandit(env, ThompsonSampler(5), 2_000, seed=4, batch_size=5)
    b = run_bandit(env, ThompsonSampler(5), 2_000, seed=4, batch_size=5)
    c = run_bandit(env, ThompsonSampler(5), 2_000, seed=5, batch_size=5)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(np.diff(a) >= 0)  # pseudo-regret never decreases


def test_one_arm_has_no_regret():
    env = BernoulliEnv((0.02,))
    assert run_bandit(env, ThompsonSampler(1), 500, seed=0)[-1] == 0.0
    assert run_bandit(env, UniformAgent(1), 500, seed=0)[-1] == 0.0


# --- LinUCB --------------------------------------------------------------------------------------


def test_linucb_beats_uniform_and_context_free_thompson_when_the_best_arm_depends_on_device():
    """Three arms, each best on one device (1.5x vs 0.8x), 10,000 decisions, five seeds:
    LinUCB's regret is at most half of Thompson's and of uniform's (measured: about a quarter)."""
    env = device_interaction_env(seed=1)
    regret = mean_regret(env, ["uniform", "thompson", "linucb"], 10_000, SEEDS, 10)
    assert regret["linucb"] <= 0.5 * regret["thompson"]
    assert regret["linucb"] <= 0.5 * regret["uniform"]
    # Thompson learns the best arm on average, which still loses on two devices in three.
    assert regret["thompson"] <= regret["uniform"]


def test_encoder_one_hot_with_bias_and_unseen_levels_as_zero():
    ctx = pd.DataFrame({"geo": ["A", "B"], "device": ["mobile", "desktop"], "channel": ["x", "x"]})
    enc = ContextEncoder.from_contexts(ctx)
    assert enc.feature_names == (
        "bias",
        "geo=A",
        "geo=B",
        "device=desktop",
        "device=mobile",
        "channel=x",
    )
    x = enc.transform(
        pd.DataFrame({"geo": ["B", "Z"], "device": ["mobile", "tablet"], "channel": ["x", "y"]})
    )
    assert x.tolist() == [[1, 0, 1, 0, 1, 1], [1, 0, 0, 0, 0, 0]]


def test_linucb_fit_from_a_log_recovers_per_device_rates():
    env = device_interaction_env(seed=2)
    rng = np.random.default_rng(0)
    ctx = env.sample_contexts(60_000, rng)
    mu = env.expected_rewards(ctx)
    actions = rng.integers(0, env.n_arms, len(ctx))
    rewards = (rng.random(len(ctx)) < mu[np.arange(len(ctx)), actions]).astype(float)
    enc = env.encoder()
    model = LinUCB(env.n_arms, enc.dim, alpha=0.0).fit(enc.transform(ctx), actions, rewards)
    est = model.expected(enc.transform(ctx))
    by_device = pd.DataFrame(np.abs(est - mu)).groupby(ctx["device"].to_numpy()).mean()
    assert (by_device.to_numpy() < 0.012).all()  # rates are 0.04..0.08
    best_hit = (est.argmax(axis=1) == mu.argmax(axis=1)).mean()
    assert best_hit > 0.95


def test_linucb_policy_gives_probabilities_off_policy_evaluation_can_use():
    env = device_interaction_env(seed=3)
    ctx = env.sample_contexts(200, np.random.default_rng(1))
    enc = env.encoder()
    model = LinUCB(env.n_arms, enc.dim, alpha=0.5)
    eligible = np.ones((len(ctx), env.n_arms), dtype=bool)
    eps = linucb_policy(model, enc, epsilon=0.3)(ctx, ("a", "b", "c"), eligible)
    check_probabilities(eps, eligible)
    assert eps.min() == pytest.approx(0.1)  # epsilon / K
    soft = linucb_policy(model, enc, epsilon=None, temperature=0.01)(ctx, ("a", "b", "c"), eligible)
    check_probabilities(soft, eligible)
    assert soft.min() > 0
    with pytest.raises(ValueError, match="exactly one"):
        linucb_policy(model, enc, epsilon=0.1, temperature=0.1)
    with pytest.raises(ValueError, match="arms"):
        linucb_policy(model, enc, epsilon=0.1)(ctx, ("a", "b"), eligible[:, :2])


def test_linucb_refuses_bad_shapes_and_parameters():
    with pytest.raises(ValueError, match="alpha"):
        LinUCB(2, 3, alpha=-1.0)
    with pytest.raises(ValueError, match="features"):
        LinUCB(2, 3).update(np.ones((4, 2)), np.zeros(4, int), np.zeros(4))


def test_exact_credible_interval_matches_posterior_draws():
    from models.bandits.thompson import beta_posteriors

    post = beta_posteriors([12, 0, 40], [1000, 50, 2000], prior=(1, 199))
    low, high = post.interval(0.9)
    draws = post.samples(200_000, seed=1)
    assert np.allclose(low, np.quantile(draws, 0.05, axis=0), rtol=0.02)
    assert np.allclose(high, np.quantile(draws, 0.95, axis=0), rtol=0.02)
    assert (low < post.mean).all() and (post.mean < high).all()
