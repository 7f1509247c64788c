"""Disjoint LinUCB (Li et al. 2010) over one-hot context features, fit online or from a log,
and turned into a stochastic policy so it can be evaluated off-policy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.bandits.logs import BanditLog, Policy, epsilon_greedy, softmax

DEFAULT_FEATURES: tuple[str, ...] = ("geo", "device", "channel")


@dataclass(frozen=True)
class ContextEncoder:
    """Bias plus one-hot columns for each categorical context field; unseen levels encode as 0."""

    levels: tuple[tuple[str, tuple[str, ...]], ...]  # (column, its levels), in feature order

    @classmethod
    def from_contexts(
        cls, contexts: pd.DataFrame, columns: Sequence[str] = DEFAULT_FEATURES
    ) -> ContextEncoder:
        missing = [c for c in columns if c not in contexts.columns]
        if missing:
            raise ValueError(f"contexts lack feature columns {missing}")
        return cls(tuple((c, tuple(sorted(contexts[c].astype(str).unique()))) for c in columns))

    @property
    def dim(self) -> int:
        return 1 + sum(len(lv) for _, lv in self.levels)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return ("bias", *(f"{c}={v}" for c, lv in self.levels for v in lv))

    def transform(self, contexts: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(contexts), self.dim))
        out[:, 0] = 1.0
        offset = 1
        for col, lv in self.levels:
            codes = pd.Categorical(contexts[col].astype(str), categories=lv).codes
            known = codes >= 0
            out[np.flatnonzero(known), offset + codes[known]] = 1.0
            offset += len(lv)
        return out


class LinUCB:
    """One ridge regression per arm; score = theta_a . x + alpha * sqrt(x' A_a^-1 x)."""

    def __init__(self, n_arms: int, dim: int, alpha: float = 1.0, ridge: float = 1.0) -> None:
        if n_arms < 1 or dim < 1:
            raise ValueError("n_arms and dim must be >= 1")
        if alpha < 0 or ridge <= 0:
            raise ValueError(f"need alpha >= 0 and ridge > 0, got alpha={alpha}, ridge={ridge}")
        self.alpha = float(alpha)
        self.A = np.repeat(np.eye(dim)[None] * ridge, n_arms, axis=0)  # [K, d, d]
        self.b = np.zeros((n_arms, dim))
        self._A_inv: np.ndarray | None = None

    @property
    def n_arms(self) -> int:
        return len(self.b)

    def update(self, features: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> LinUCB:
        """Add (context, arm, reward) rows; fitting from a log is one update with every row."""
        x = np.asarray(features, dtype=float)
        a = np.asarray(actions)
        r = np.asarray(rewards, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.b.shape[1] or len(a) != len(x) or len(r) != len(x):
            raise ValueError("features must be [n, dim] with one action and reward per row")
        for k in np.unique(a):
            rows = a == k
            self.A[k] += x[rows].T @ x[rows]
            self.b[k] += r[rows] @ x[rows]
        self._A_inv = None
        return self

    def fit(self, features: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> LinUCB:
        return self.update(features, actions, rewards)

    def _inverse(self) -> np.ndarray:
        if self._A_inv is None:
            self._A_inv = np.linalg.inv(self.A)
        return self._A_inv

    @property
    def theta(self) -> np.ndarray:
        return np.einsum("kij,kj->ki", self._inverse(), self.b)

    def expected(self, features: np.ndarray) -> np.ndarray:
        """[n, K] ridge estimates of each arm's reward."""
        return np.asarray(features) @ self.theta.T

    def scores(self, features: np.ndarray) -> np.ndarray:
        """[n, K] upper confidence bounds."""
        x = np.asarray(features, dtype=float)
        a_inv = self._inverse()
        width = np.stack([((x @ a_inv[k]) * x).sum(axis=1) for k in range(self.n_arms)], axis=1)
        return x @ self.theta.T + self.alpha * np.sqrt(np.maximum(width, 0.0))

    def choose(self, features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Highest UCB per row; ties (e.g. before any data) broken at random."""
        s = self.scores(features)
        s = s + rng.random(s.shape) * 1e-12
        return s.argmax(axis=1)


def linucb_policy(
    model: LinUCB,
    encoder: ContextEncoder,
    *,
    epsilon: float | None = 0.1,
    temperature: float | None = None,
    optimistic: bool = False,
) -> Policy:
    """A stochastic policy from a fitted LinUCB: epsilon-greedy (default) or softmax with a
    temperature in reward units, on ridge estimates or, if `optimistic`, on UCB scores.

    Off-policy evaluation needs the candidate's probabilities, not just its argmax.
    """
    if (epsilon is None) == (temperature is None):
        raise ValueError("give exactly one of epsilon and temperature")

    def policy(contexts: pd.DataFrame, arms: Sequence[str], eligible: np.ndarray) -> np.ndarray:
        if len(arms) != model.n_arms:
            raise ValueError(f"model has {model.n_arms} arms, the contexts {len(arms)}")
        x = encoder.transform(contexts)
        s = model.scores(x) if optimistic else model.expected(x)
        if temperature is not None:
            return softmax(s, eligible, temperature)
        return epsilon_greedy(s, eligible, epsilon)

    return policy


def fit_linucb(
    log: BanditLog,
    columns: Sequence[str] = DEFAULT_FEATURES,
    alpha: float = 1.0,
    ridge: float = 1.0,
) -> tuple[LinUCB, ContextEncoder]:
    """LinUCB fit on every logged (context, arm, reward) row.

    Each arm's ridge regression only sees the contexts it was served in; with a logging
    policy that explores in every context, that covers the context space.
    """
    encoder = ContextEncoder.from_contexts(log.contexts, columns)
    model = LinUCB(log.n_arms, encoder.dim, alpha=alpha, ridge=ridge)
    model.update(encoder.transform(log.contexts), log.actions, log.rewards)
    return model, encoder
