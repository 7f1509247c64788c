"""Off-policy evaluation from a logged bandit: IPS, self-normalised IPS and doubly robust values
of a candidate policy with bootstrap intervals, and its paired difference to the logging policy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.bandits.logs import BanditLog, check_probabilities

ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dr")


@dataclass(frozen=True)
class Estimate:
    value: float
    lower: float
    upper: float

    def covers(self, x: float) -> bool:
        return self.lower <= x <= self.upper


@dataclass(frozen=True)
class RewardModel:
    """Direct-method reward model: click rate per arm x context cell, shrunk towards the arm's
    rate, which is shrunk towards the log's overall rate (`prior_strength` pseudo-impressions)."""

    arms: tuple[str, ...]
    keys: tuple[str, ...]
    cells: tuple[str, ...]  # cell labels ("mobile", or "mobile|US-CA" for two keys), by row
    cell_means: np.ndarray  # [cells, K]
    arm_means: np.ndarray  # [K]
    global_mean: float

    def predict(self, contexts: pd.DataFrame) -> np.ndarray:
        """[n, K] predicted rewards; a cell never seen in the log gets the arm's rate."""
        row = pd.Index(self.cells).get_indexer(_cell_labels(contexts, self.keys))
        out = np.broadcast_to(self.arm_means, (len(contexts), len(self.arms))).copy()
        seen = row >= 0
        out[seen] = self.cell_means[row[seen]]
        return out


def _cell_labels(contexts: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    missing = [k for k in keys if k not in contexts.columns]
    if missing:
        raise ValueError(f"contexts lack reward-model keys {missing}")
    labels = pd.Series("", index=contexts.index, dtype=object)
    for i, k in enumerate(keys):
        labels = labels + ("|" if i else "") + contexts[k].astype(str)
    return labels


def fit_reward_model(
    log: BanditLog, keys: Sequence[str] = ("device",), prior_strength: float = 200.0
) -> RewardModel:
    """Smoothed mean reward per (arm, context cell); cells are the distinct values of `keys`."""
    if prior_strength < 0:
        raise ValueError("prior_strength must be >= 0")
    k = log.n_arms
    global_mean = float(log.rewards.mean()) if log.n else 0.0
    n_arm = np.bincount(log.actions, minlength=k).astype(float)
    r_arm = np.bincount(log.actions, weights=log.rewards, minlength=k)
    m = prior_strength
    with np.errstate(invalid="ignore", divide="ignore"):
        arm_means = np.where(n_arm + m > 0, (r_arm + m * global_mean) / (n_arm + m), global_mean)
    cell_of, uniq = pd.factorize(_cell_labels(log.contexts, keys), sort=True)
    flat = cell_of.astype(np.int64) * k + log.actions
    size = len(uniq) * k
    n_cell = np.bincount(flat, minlength=size).reshape(len(uniq), k).astype(float)
    r_cell = np.bincount(flat, weights=log.rewards, minlength=size).reshape(len(uniq), k)
    with np.errstate(invalid="ignore", divide="ignore"):
        cell_means = np.where(
            n_cell + m > 0, (r_cell + m * arm_means) / (n_cell + m), arm_means[None, :]
        )
    return RewardModel(
        arms=log.arms,
        keys=tuple(keys),
        cells=tuple(map(str, uniq)),
        cell_means=cell_means,
        arm_means=arm_means,
        global_mean=global_mean,
    )


def importance_weights(log: BanditLog, target: np.ndarray) -> np.ndarray:
    """pi(a_i | x_i) / pi_0(a_i | x_i) for each logged row."""
    return target[np.arange(log.n), log.actions] / log.propensities


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2: how many logged rows the estimate is
    worth; 0 when the candidate never takes a logged action."""
    w = np.asarray(weights, dtype=float)
    sq = float((w**2).sum())
    return float(w.sum() ** 2 / sq) if sq > 0 else 0.0


@dataclass(frozen=True)
class OPEResult:
    """A candidate policy's estimated value (mean reward per decision) by each estimator."""

    estimates: dict[str, Estimate]
    ess: float
    n: int
    max_weight: float
    confidence: float
    n_boot: int

    @property
    def ips(self) -> Estimate:
        return self.estimates["ips"]

    @property
    def snips(self) -> Estimate:
        return self.estimates["snips"]

    @property
    def dr(self) -> Estimate:
        return self.estimates["dr"]


@dataclass(frozen=True)
class PolicyComparison:
    """Candidate against the logging policy on the same rows (paired bootstrap)."""

    candidate: OPEResult
    logging: Estimate  # the logging policy's own value: the mean logged reward
    difference: dict[str, Estimate]  # candidate - logging, per estimator
    relative: dict[str, Estimate]  # (candidate - logging) / logging, per estimator


def _row_stats(log: BanditLog, target: np.ndarray, q_hat: np.ndarray) -> tuple[np.ndarray, dict]:
    """Per-row terms [n, 4]: w*r, w, the doubly robust term, r; plus diagnostics."""
    rows = np.arange(log.n)
    w = importance_weights(log, target)
    r = log.rewards
    dm = (target * q_hat).sum(axis=1)
    psi = dm + w * (r - q_hat[rows, log.actions])
    info = {"ess": effective_sample_size(w), "max_weight": float(w.max()) if log.n else 0.0}
    return np.column_stack([w * r, w, psi, r]), info


def _estimators(sums: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Estimates from column sums of the row terms ([..., 4])."""
    s_wr, s_w, s_psi, s_r = (sums[..., j] for j in range(4))
    with np.errstate(invalid="ignore", divide="ignore"):
        logging = s_r / n
        cand = {"ips": s_wr / n, "snips": np.where(s_w > 0, s_wr / s_w, np.nan), "dr": s_psi / n}
        out = {f"value_{k}": v for k, v in cand.items()}
        out["logging"] = logging
        for k, v in cand.items():
            out[f"diff_{k}"] = v - logging
            out[f"rel_{k}"] = np.where(logging > 0, (v - logging) / logging, np.nan)
    return out


def _bootstrap_sums(stats: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, m] column sums of row-resampled stats (the ordinary, multinomial bootstrap)."""
    rng = np.random.default_rng(seed)
    n = len(stats)
    out = np.empty((n_boot, stats.shape[1]))
    # One resample at a time: its counts vector stays in cache, which beats batching them.
    for b in range(n_boot):
        out[b] = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(float) @ stats
    return out


def _interval(point: float, draws: np.ndarray, confidence: float) -> Estimate:
    tail = (1 - confidence) / 2
    ok = draws[np.isfinite(draws)]
    if not len(ok) or not math.isfinite(point):
        return Estimate(float(point), math.nan, math.nan)
    lo, hi = np.quantile(ok, [tail, 1 - tail])
    return Estimate(float(point), float(lo), float(hi))


def compare_to_logging(
    log: BanditLog,
    target: np.ndarray,
    *,
    q_hat: np.ndarray | None = None,
    confidence: float = 0.95,
    n_boot: int = 500,
    seed: int = 0,
) -> PolicyComparison:
    """Value of the candidate (`target`: its [n, K] action probabilities on the logged
    contexts) by IPS, SNIPS and DR, and its paired difference to the logging policy.

    `q_hat` ([n, K] predicted rewards) defaults to `fit_reward_model(log)`. The bootstrap
    resamples rows with the reward model held fixed, so DR intervals ignore the model's own
    fitting noise (small next to the importance-weighted residuals at CTR levels).
    """
    if log.n == 0:
        raise ValueError("cannot evaluate a policy on an empty log")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 2:
        raise ValueError("n_boot must be >= 2")
    target = check_probabilities(target, log.eligible)
    if q_hat is None:
        q_hat = fit_reward_model(log).predict(log.contexts)
    if np.shape(q_hat) != target.shape:
        raise ValueError(f"q_hat must be [n, K] = {target.shape}, got {np.shape(q_hat)}")
    stats, info = _row_stats(log, target, np.asarray(q_hat, dtype=float))
    point = _estimators(stats.sum(axis=0), log.n)
    boot = _estimators(_bootstrap_sums(stats, n_boot, seed), log.n)

    def est(key: str) -> Estimate:
        return _interval(float(point[key]), boot[key], confidence)

    candidate = OPEResult(
        estimates={k: est(f"value_{k}") for k in ESTIMATORS},
        ess=info["ess"],
        n=log.n,
        max_weight=info["max_weight"],
        confidence=confidence,
        n_boot=n_boot,
    )
    return PolicyComparison(
        candidate=candidate,
        logging=est("logging"),
        difference={k: est(f"diff_{k}") for k in ESTIMATORS},
        relative={k: est(f"rel_{k}") for k in ESTIMATORS},
    )


def evaluate_policy(
    log: BanditLog,
    target: np.ndarray,
    *,
    q_hat: np.ndarray | None = None,
    confidence: float = 0.95,
    n_boot: int = 500,
    seed: int = 0,
) -> OPEResult:
    """IPS, SNIPS and DR estimates of the candidate's value with bootstrap intervals."""
    return compare_to_logging(
        log, target, q_hat=q_hat, confidence=confidence, n_boot=n_boot, seed=seed
    ).candidate
