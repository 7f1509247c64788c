"""The off-policy gate: a candidate creative policy is proposed only if the log shows, at the
given confidence, that it beats the logging policy by more than a minimum improvement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.bandits.logs import BanditLog
from models.bandits.ope import ESTIMATORS, Estimate, compare_to_logging

DEFAULT_MIN_ESS = 1_000.0


@dataclass(frozen=True)
class GateDecision:
    proposed: bool
    reasons: tuple[str, ...]
    estimator: str
    candidate_value: Estimate
    logging_value: Estimate
    improvement: Estimate  # candidate - logging, relative to logging when `relative`
    relative: bool
    min_improvement: float
    confidence: float
    ess: float
    min_ess: float
    n: int


def _fmt(x: float, relative: bool) -> str:
    return f"{x:+.2%}" if relative else f"{x:+.6f}"


def ope_gate(
    log: BanditLog,
    candidate: np.ndarray,
    *,
    min_improvement: float = 0.0,
    relative: bool = True,
    confidence: float = 0.95,
    min_ess: float = DEFAULT_MIN_ESS,
    estimator: str = "dr",
    q_hat: np.ndarray | None = None,
    n_boot: int = 1_000,
    seed: int = 0,
) -> GateDecision:
    """Propose `candidate` ([n, K] action probabilities on the logged contexts) only if the
    lower bound of its improvement over the logging policy, from a paired bootstrap at
    `confidence` (two-sided), is above `min_improvement`, and the importance weights leave an
    effective sample size of at least `min_ess` logged rows.

    With `relative`, improvement and `min_improvement` are fractions of the logging policy's
    value (0.02 = +2% CTR); otherwise they are in reward units.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    cmp = compare_to_logging(
        log, candidate, q_hat=q_hat, confidence=confidence, n_boot=n_boot, seed=seed
    )
    improvement = (cmp.relative if relative else cmp.difference)[estimator]
    level = f"{confidence:.0%}"
    reasons: list[str] = []
    if cmp.candidate.ess < min_ess:
        reasons.append(
            f"effective sample size {cmp.candidate.ess:,.0f} is below the minimum {min_ess:,.0f}: "
            "the candidate rarely takes the actions the log holds, so the log says too little "
            "about it"
        )
    unit = "relative improvement" if relative else "improvement"
    if not np.isfinite(improvement.lower) or improvement.lower <= min_improvement:
        reasons.append(
            f"the lower end of the {level} interval of the {unit} by {estimator} "
            f"({_fmt(improvement.lower, relative)}, point {_fmt(improvement.value, relative)}) "
            f"is not above the minimum {_fmt(min_improvement, relative)}"
        )
    proposed = not reasons
    if proposed:
        reasons.append(
            f"the {level} interval of the {unit} by {estimator} "
            f"[{_fmt(improvement.lower, relative)}, {_fmt(improvement.upper, relative)}] lies above "
            f"the minimum {_fmt(min_improvement, relative)}, with an effective sample size of "
            f"{cmp.candidate.ess:,.0f}"
        )
    return GateDecision(
        proposed=proposed,
        reasons=tuple(reasons),
        estimator=estimator,
        candidate_value=cmp.candidate.estimates[estimator],
        logging_value=cmp.logging,
        improvement=improvement,
        relative=relative,
        min_improvement=min_improvement,
        confidence=confidence,
        ess=cmp.candidate.ess,
        min_ess=min_ess,
        n=cmp.candidate.n,
    )
