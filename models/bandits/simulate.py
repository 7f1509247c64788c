"""Bandit environments with known click rates, and the cumulative regret of online policies
(Thompson sampling, LinUCB, uniform allocation) played against them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from models.bandits.linucb import ContextEncoder, LinUCB
from models.bandits.thompson import ThompsonSampler

DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet")


class Agent(Protocol):
    def choose(self, features: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...

    def update(self, features: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None: ...


class Environment(Protocol):
    @property
    def n_arms(self) -> int: ...

    def encoder(self) -> ContextEncoder: ...

    def sample_contexts(self, n: int, rng: np.random.Generator) -> pd.DataFrame: ...

    def expected_rewards(self, contexts: pd.DataFrame) -> np.ndarray: ...


@dataclass(frozen=True)
class BernoulliEnv:
    """K arms with fixed click rates and no context."""

    rates: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.rates or not all(0 <= p <= 1 for p in self.rates):
            raise ValueError("rates must be a non-empty list of probabilities")

    @property
    def n_arms(self) -> int:
        return len(self.rates)

    def encoder(self) -> ContextEncoder:
        return ContextEncoder(())

    def sample_contexts(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        return pd.DataFrame(index=range(n))

    def expected_rewards(self, contexts: pd.DataFrame) -> np.ndarray:
        return np.broadcast_to(np.array(self.rates), (len(contexts), self.n_arms))


@dataclass(frozen=True)
class ContextualBernoulliEnv:
    """Click probability = base[a] * device_effect[a, device] * geo_effect[geo]: the best arm
    depends on the device, so only a contextual policy can reach zero regret."""

    base: tuple[float, ...]
    device_effect: tuple[tuple[float, ...], ...]  # [K][devices]
    geo_effect: tuple[float, ...]
    device_probs: tuple[float, ...]
    geo_probs: tuple[float, ...]
    devices: tuple[str, ...] = DEVICES
    channel: str = "display"

    def __post_init__(self) -> None:
        k, d, g = len(self.base), len(self.devices), len(self.geo_effect)
        if np.shape(self.device_effect) != (k, d):
            raise ValueError(f"device_effect must be [{k}][{d}]")
        if len(self.device_probs) != d or len(self.geo_probs) != g:
            raise ValueError("one probability per device and per geo")
        if not np.isclose(sum(self.device_probs), 1) or not np.isclose(sum(self.geo_probs), 1):
            raise ValueError("device_probs and geo_probs must each sum to 1")
        if self._rates().max() > 1:
            raise ValueError("a click probability exceeds 1")

    @property
    def n_arms(self) -> int:
        return len(self.base)

    @property
    def geos(self) -> tuple[str, ...]:
        return tuple(f"G{i + 1:02d}" for i in range(len(self.geo_effect)))

    def encoder(self) -> ContextEncoder:
        """One-hot geo, device and channel plus a bias, as LinUCB sees the serving log."""
        return ContextEncoder(
            (("geo", self.geos), ("device", self.devices), ("channel", (self.channel,)))
        )

    def _rates(self) -> np.ndarray:
        """[K, devices, geos]."""
        return (
            np.array(self.base)[:, None, None]
            * np.array(self.device_effect)[:, :, None]
            * np.array(self.geo_effect)[None, None, :]
        )

    def sample_contexts(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        dev = rng.choice(len(self.devices), size=n, p=self.device_probs)
        geo = rng.choice(len(self.geo_effect), size=n, p=self.geo_probs)
        return pd.DataFrame(
            {
                "geo": np.array(self.geos, dtype=object)[geo],
                "device": np.array(self.devices, dtype=object)[dev],
                "channel": self.channel,
            }
        )

    def expected_rewards(self, contexts: pd.DataFrame) -> np.ndarray:
        dev = pd.Categorical(contexts["device"], categories=self.devices).codes
        geo = pd.Categorical(contexts["geo"], categories=self.geos).codes
        if (dev < 0).any() or (geo < 0).any():
            raise ValueError("contexts hold a device or geo this environment does not know")
        return self._rates()[:, dev, geo].T


def device_interaction_env(
    seed: int, n_arms: int = 3, n_geos: int = 4, base_rate: float = 0.05
) -> ContextualBernoulliEnv:
    """A contextual environment where arm k is best on device k mod 3 (by 1.5x) and
    mediocre elsewhere; base rates and geo effects vary a little with the seed."""
    rng = np.random.default_rng(seed)
    base = base_rate * rng.uniform(0.9, 1.1, n_arms)
    effect = np.full((n_arms, len(DEVICES)), 0.8)
    for k in range(n_arms):
        effect[k, k % len(DEVICES)] = 1.5
    geo = rng.lognormal(0.0, 0.1, n_geos)
    return ContextualBernoulliEnv(
        base=tuple(map(float, base)),
        device_effect=tuple(tuple(map(float, row)) for row in effect),
        geo_effect=tuple(map(float, geo)),
        device_probs=(0.5, 0.35, 0.15),
        geo_probs=tuple([1.0 / n_geos] * n_geos),
    )


class UniformAgent:
    """Every arm equally often, whatever the feedback: the no-learning baseline."""

    def __init__(self, n_arms: int) -> None:
        self.n_arms = n_arms

    def choose(self, features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.n_arms, size=len(features))

    def update(self, features: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        pass


AgentFactory = Callable[[int, int], Agent]  # (n_arms, feature dim) -> a fresh agent

AGENTS: dict[str, AgentFactory] = {
    "uniform": lambda k, d: UniformAgent(k),
    "thompson": lambda k, d: ThompsonSampler(k),
    "linucb": lambda k, d: LinUCB(k, d, alpha=0.5),
}


def run_bandit(
    env: Environment,
    agent: Agent,
    horizon: int,
    seed: int,
    batch_size: int = 1,
) -> np.ndarray:
    """Cumulative expected regret after each of `horizon` decisions.

    Regret is pseudo-regret (best expected reward minus the chosen arm's, per context), which
    measures the policy without the clicks' Bernoulli noise. The agent sees feedback after
    every `batch_size` decisions.
    """
    if horizon < 1 or batch_size < 1:
        raise ValueError("horizon and batch_size must be >= 1")
    ctx_rng, play_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    contexts = env.sample_contexts(horizon, ctx_rng)
    mu = np.asarray(env.expected_rewards(contexts))
    x = env.encoder().transform(contexts)
    regret = np.empty(horizon)
    best = mu.max(axis=1)
    for lo in range(0, horizon, batch_size):
        hi = min(lo + batch_size, horizon)
        actions = np.asarray(agent.choose(x[lo:hi], play_rng))
        rows = np.arange(lo, hi)
        p = mu[rows, actions]
        rewards = (play_rng.random(hi - lo) < p).astype(float)
        agent.update(x[lo:hi], actions, rewards)
        regret[lo:hi] = best[rows] - p
    return np.cumsum(regret)


def mean_regret(
    env: Environment,
    agents: Mapping[str, AgentFactory] | Sequence[str],
    horizon: int,
    seeds: Sequence[int],
    batch_size: int = 1,
) -> dict[str, float]:
    """Cumulative regret at the horizon, averaged over seeds; every agent sees the same
    contexts for a given seed (common random numbers)."""
    factories = agents if isinstance(agents, Mapping) else {a: AGENTS[a] for a in agents}
    dim = env.encoder().dim
    return {
        name: float(
            np.mean(
                [run_bandit(env, f(env.n_arms, dim), horizon, s, batch_size)[-1] for s in seeds]
            )
        )
        for name, f in factories.items()
    }
