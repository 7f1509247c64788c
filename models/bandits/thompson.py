"""Beta-Bernoulli Thompson sampling: click posteriors per arm, a floored traffic split, and an
online sampler for simulations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_PRIOR: tuple[float, float] = (1.0, 1.0)  # uniform on the click rate


@dataclass(frozen=True)
class BetaPosteriors:
    """Beta(alpha, beta) posterior of each arm's click rate."""

    arms: tuple[str, ...]
    alpha: np.ndarray
    beta: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return self.alpha / (self.alpha + self.beta)

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Equal-tailed credible interval of each arm's click rate, exact (no sampling)."""
        from scipy.stats import beta

        tail = (1 - level) / 2
        return beta.ppf(tail, self.alpha, self.beta), beta.ppf(1 - tail, self.alpha, self.beta)

    def samples(self, draws: int, seed: int) -> np.ndarray:
        """[draws, K] joint posterior draws."""
        rng = np.random.default_rng(seed)
        return rng.beta(self.alpha, self.beta, size=(draws, len(self.arms)))


def _check_prior(prior: tuple[float, float]) -> None:
    if len(prior) != 2 or min(prior) <= 0:
        raise ValueError(f"prior must be (alpha, beta) with both > 0, got {prior}")


def beta_posteriors(
    clicks: Sequence[float],
    impressions: Sequence[float],
    arms: Sequence[str] | None = None,
    prior: tuple[float, float] = DEFAULT_PRIOR,
) -> BetaPosteriors:
    """Posteriors from click and impression counts; an arm never shown keeps the prior."""
    _check_prior(prior)
    c = np.asarray(clicks, dtype=float)
    n = np.asarray(impressions, dtype=float)
    if c.shape != n.shape or c.ndim != 1:
        raise ValueError("clicks and impressions must be 1-d and of equal length")
    if len(c) == 0:
        raise ValueError("at least one arm is needed")
    if (c < 0).any() or (c > n).any():
        raise ValueError("need 0 <= clicks <= impressions for every arm")
    names = tuple(arms) if arms is not None else tuple(str(i) for i in range(len(c)))
    if len(names) != len(c):
        raise ValueError(f"{len(names)} arm names for {len(c)} arms")
    return BetaPosteriors(names, prior[0] + c, prior[1] + n - c)


def prob_best(posteriors: BetaPosteriors, draws: int = 10_000, seed: int = 0) -> np.ndarray:
    """Monte Carlo probability that each arm has the highest click rate."""
    if draws < 1:
        raise ValueError("draws must be >= 1")
    k = len(posteriors.arms)
    winners = posteriors.samples(draws, seed).argmax(axis=1)
    return np.bincount(winners, minlength=k) / draws


def traffic_split(
    arms: Mapping[str, tuple[float, float]],
    draws: int = 10_000,
    seed: int = 0,
    floor: float = 0.05,
    prior: tuple[float, float] = DEFAULT_PRIOR,
) -> dict[str, float]:
    """Traffic share per arm from `{arm: (clicks, impressions)}`: each arm's posterior
    probability of being best, mixed with a uniform floor so every arm keeps exploring.

    share = floor + (1 - K * floor) * P(best), so shares sum to 1 and none is below `floor`.
    """
    if not arms:
        raise ValueError("traffic_split needs at least one arm")
    names = tuple(arms)
    counts = np.array([arms[a] for a in names], dtype=float).reshape(len(names), 2)
    post = beta_posteriors(counts[:, 0], counts[:, 1], names, prior)
    share = floored_split(prob_best(post, draws, seed), floor)
    return dict(zip(names, map(float, share), strict=True))


def floored_split(p_best: np.ndarray, floor: float = 0.05) -> np.ndarray:
    """floor + (1 - K * floor) * P(best): shares summing to 1, none below `floor`."""
    k = len(p_best)
    if not 0 <= floor <= 1 / k:
        raise ValueError(f"floor must be in [0, 1/K] = [0, {1 / k:.4f}] for {k} arms, got {floor}")
    return floor + (1 - k * floor) * np.asarray(p_best, dtype=float)


class ThompsonSampler:
    """Online Thompson sampling over K arms, ignoring context; one posterior draw per decision.

    Updates arrive in batches, as in ad serving where clicks are reported with a delay.
    """

    def __init__(self, n_arms: int, prior: tuple[float, float] = DEFAULT_PRIOR) -> None:
        if n_arms < 1:
            raise ValueError("n_arms must be >= 1")
        _check_prior(prior)
        self.alpha = np.full(n_arms, float(prior[0]))
        self.beta = np.full(n_arms, float(prior[1]))

    def choose(self, features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        draws = rng.beta(self.alpha, self.beta, size=(len(features), len(self.alpha)))
        return draws.argmax(axis=1)

    def update(self, features: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        k = len(self.alpha)
        clicks = np.bincount(actions, weights=rewards, minlength=k)
        self.alpha += clicks
        self.beta += np.bincount(actions, minlength=k) - clicks
