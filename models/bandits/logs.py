"""Logged bandit data (who was served what, with which probability, and the reward) and policies.

A policy maps contexts to a distribution over arms: `policy(contexts, arms, eligible)` returns
an [n, K] matrix whose rows sum to 1 over the arms eligible in that context (a creative can
only serve in its own campaign).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

CONTEXT_COLUMNS: tuple[str, ...] = ("campaign_id", "channel", "geo", "device")
SERVING_LOG_COLUMNS: tuple[str, ...] = (
    *CONTEXT_COLUMNS,
    "creative_id",
    "propensity",
    "clicked",
)

Policy = Callable[[pd.DataFrame, Sequence[str], np.ndarray], np.ndarray]


@dataclass(frozen=True)
class BanditLog:
    """Logged decisions: context, action (arm index), reward and the logging propensity."""

    contexts: pd.DataFrame  # one row per decision
    arms: tuple[str, ...]
    actions: np.ndarray  # int [n], index into arms
    rewards: np.ndarray  # float [n]
    propensities: np.ndarray  # float [n], the logging policy's probability of the action
    eligible: np.ndarray  # bool [n, K], arms the logging policy could serve in that context

    def __post_init__(self) -> None:
        n, k = len(self.contexts), len(self.arms)
        if k == 0:
            raise ValueError("a bandit log needs at least one arm")
        for name in ("actions", "rewards", "propensities"):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"{name} must have one entry per context ({n})")
        if self.eligible.shape != (n, k):
            raise ValueError(f"eligible must be [n, K] = [{n}, {k}], got {self.eligible.shape}")
        if n and (self.actions.min() < 0 or self.actions.max() >= k):
            raise ValueError(f"actions must index the {k} arms")
        bad = np.flatnonzero(~(self.propensities > 0) | (self.propensities > 1))
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"{len(bad)} logged propensities are outside (0, 1] (first: row {i}, "
                f"{self.propensities[i]!r}); importance weighting divides by the logging "
                "policy's probability of the served arm, so fix or drop these rows"
            )
        if n and not self.eligible[np.arange(n), self.actions].all():
            raise ValueError("a logged action is not eligible in its context")
        if not np.isfinite(self.rewards).all():
            raise ValueError("rewards must be finite")

    @property
    def n(self) -> int:
        return len(self.contexts)

    @property
    def n_arms(self) -> int:
        return len(self.arms)

    def subset(self, rows: np.ndarray | slice) -> BanditLog:
        idx = np.arange(self.n)[rows]
        return BanditLog(
            contexts=self.contexts.iloc[idx].reset_index(drop=True),
            arms=self.arms,
            actions=self.actions[idx],
            rewards=self.rewards[idx],
            propensities=self.propensities[idx],
            eligible=self.eligible[idx],
        )

    def probabilities(self, policy: Policy) -> np.ndarray:
        """The policy's [n, K] action probabilities on the logged contexts, checked."""
        return check_probabilities(policy(self.contexts, self.arms, self.eligible), self.eligible)


def eligibility(
    campaign_ids: Sequence[str], arms: Sequence[str], arm_campaigns: Mapping[str, str]
) -> np.ndarray:
    """[n, K]: True where arm k belongs to the campaign of row i."""
    arm_camp = np.array([arm_campaigns[a] for a in arms], dtype=object)
    return np.asarray(campaign_ids, dtype=object)[:, None] == arm_camp[None, :]


def from_serving_log(
    log: pd.DataFrame, arm_campaigns: Mapping[str, str] | None = None
) -> BanditLog:
    """A BanditLog from serving-log rows (the landing CSV, raw table or mart).

    `arm_campaigns` (creative_id -> campaign_id) names every arm, including creatives that
    were never served; without it the arms are the creatives seen in the log.
    """
    missing = [c for c in SERVING_LOG_COLUMNS if c not in log.columns]
    if missing:
        raise ValueError(f"serving log lacks columns {missing}")
    log = log.reset_index(drop=True)
    crid = log["creative_id"].astype(str).to_numpy(dtype=object)
    camp = log["campaign_id"].astype(str).to_numpy(dtype=object)
    if arm_campaigns is None:
        pairs = pd.DataFrame({"a": crid, "c": camp}).drop_duplicates()
        clash = pairs["a"][pairs["a"].duplicated()].tolist()
        if clash:
            raise ValueError(f"creatives logged under more than one campaign: {clash[:5]}")
        arm_campaigns = dict(zip(pairs["a"], pairs["c"], strict=True))
    arm_campaigns = {str(a): str(c) for a, c in arm_campaigns.items()}
    arms = tuple(sorted(arm_campaigns))
    unknown = sorted(set(crid) - set(arms))
    if unknown:
        raise ValueError(f"logged creatives missing from arm_campaigns: {unknown[:5]}")
    index = {a: i for i, a in enumerate(arms)}
    actions = np.array([index[a] for a in crid], dtype=np.int64)
    clicked = pd.to_numeric(log["clicked"], errors="raise").to_numpy(dtype=float)
    if not np.isin(clicked, (0.0, 1.0)).all():
        raise ValueError("clicked must be 0 or 1")
    contexts = log[list(CONTEXT_COLUMNS)].astype(str).reset_index(drop=True)
    return BanditLog(
        contexts=contexts,
        arms=arms,
        actions=actions,
        rewards=clicked,
        propensities=pd.to_numeric(log["propensity"], errors="raise").to_numpy(dtype=float),
        eligible=eligibility(camp, arms, arm_campaigns),
    )


def check_probabilities(probs: np.ndarray, eligible: np.ndarray, atol: float = 1e-6) -> np.ndarray:
    """Validate a policy's output: [n, K], non-negative, zero off eligible arms, rows sum to 1."""
    probs = np.asarray(probs, dtype=float)
    if probs.shape != eligible.shape:
        raise ValueError(f"policy returned shape {probs.shape}, expected {eligible.shape}")
    if (probs < 0).any() or not np.isfinite(probs).all():
        raise ValueError("policy probabilities must be finite and non-negative")
    if (probs[~eligible] > atol).any():
        raise ValueError("policy puts probability on arms not eligible in the context")
    sums = probs.sum(axis=1)
    if len(sums) and not np.allclose(sums, 1.0, atol=atol):
        raise ValueError(
            f"policy probabilities must sum to 1 per row (range {sums.min()}..{sums.max()})"
        )
    return probs


def uniform_policy(contexts: pd.DataFrame, arms: Sequence[str], eligible: np.ndarray) -> np.ndarray:
    """Every eligible arm equally likely."""
    return eligible / eligible.sum(axis=1, keepdims=True)


def greedy(scores: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Deterministic policy: all mass on the highest-scoring eligible arm (first on ties)."""
    masked = np.where(eligible, scores, -np.inf)
    out = np.zeros(eligible.shape)
    out[np.arange(len(out)), masked.argmax(axis=1)] = 1.0
    return out


def epsilon_greedy(scores: np.ndarray, eligible: np.ndarray, epsilon: float) -> np.ndarray:
    """Greedy with probability 1 - epsilon, else uniform over eligible arms."""
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    uniform = eligible / eligible.sum(axis=1, keepdims=True)
    return (1 - epsilon) * greedy(scores, eligible) + epsilon * uniform


def softmax(scores: np.ndarray, eligible: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities proportional to exp(score / temperature) over eligible arms."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = np.where(eligible, scores / temperature, -np.inf)
    z = z - z.max(axis=1, keepdims=True)
    e = np.where(eligible, np.exp(z), 0.0)
    return e / e.sum(axis=1, keepdims=True)
