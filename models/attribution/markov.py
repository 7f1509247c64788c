"""First-order Markov-chain attribution by removal effect (Anderl et al. 2016), solved exactly.

States are `start`, the channels, and the absorbing `conversion` and `null`. Consecutive
repeats of a channel are collapsed: a self-loop only delays absorption, so absorption
probabilities, and hence removal effects, are the same with or without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

START, CONVERSION, NULL = "start", "conversion", "null"


@dataclass(frozen=True, eq=False)
class MarkovResult:
    states: tuple[str, ...]  # start, channels..., conversion, null
    transitions: np.ndarray  # [S, S] row-stochastic; absorbing rows are identity
    conversion_probability: float  # P(reach conversion from start)
    removal_conversion_probability: dict[str, float]  # channel -> P(conversion) without it
    removal_effects: dict[str, float]  # channel -> 1 - P(conv | removed) / P(conv)


def collapse_repeats(path: Sequence[str]) -> tuple[str, ...]:
    return tuple(c for i, c in enumerate(path) if i == 0 or c != path[i - 1])


def transition_matrix(
    paths: Sequence[Sequence[str]], converted: np.ndarray, channels: Sequence[str]
) -> np.ndarray:
    """Row-stochastic transitions over (start, *channels, conversion, null) from path counts."""
    n_ch = len(channels)
    index = {c: i + 1 for i, c in enumerate(channels)}
    conv, null = n_ch + 1, n_ch + 2
    src: list[int] = []
    dst: list[int] = []
    for path, conv_flag in zip(paths, converted, strict=True):
        states = [0, *(index[c] for c in collapse_repeats(path)), conv if conv_flag else null]
        src.extend(states[:-1])
        dst.extend(states[1:])
    counts = np.zeros((n_ch + 3, n_ch + 3))
    np.add.at(counts, (np.asarray(src, dtype=int), np.asarray(dst, dtype=int)), 1.0)
    counts[conv, conv] = counts[null, null] = 1.0
    totals = counts.sum(axis=1, keepdims=True)
    # With no paths at all, start leads nowhere; send it to null rather than divide by zero.
    if totals[0, 0] == 0:
        counts[0, null] = totals[0, 0] = 1.0
    return counts / totals


def absorption_probability(transitions: np.ndarray, removed: int | None = None) -> float:
    """P(conversion | start) via the fundamental matrix: solve (I - Q) x = R[:, conversion]."""
    n = transitions.shape[0] - 2  # transient states: start and the channels
    q = transitions[:n, :n].copy()
    r = transitions[:n, n].copy()
    if removed is not None:
        # A removed channel absorbs into null: every path through it is lost.
        q[removed, :] = 0.0
        r[removed] = 0.0
    x = np.linalg.solve(np.eye(n) - q, r)
    return float(x[0])


def markov_attribution(
    paths: Sequence[Sequence[str]], converted: np.ndarray, channels: Sequence[str]
) -> MarkovResult:
    """Removal effect of every channel in `channels` on the chain built from `paths`."""
    transitions = transition_matrix(paths, np.asarray(converted, dtype=bool), channels)
    p_conv = absorption_probability(transitions)
    removed_p = {c: absorption_probability(transitions, i + 1) for i, c in enumerate(channels)}
    # Removal can only lose conversions; the clip drops round-off below zero.
    effects = {c: max(0.0, 1.0 - p / p_conv) if p_conv > 0 else 0.0 for c, p in removed_p.items()}
    return MarkovResult(
        states=(START, *channels, CONVERSION, NULL),
        transitions=transitions,
        conversion_probability=p_conv,
        removal_conversion_probability=removed_p,
        removal_effects=effects,
    )
