"""Shapley attribution over channel coalitions (Dalessandro et al. 2012; Zhao et al. 2018).

The coalition value v(S) is the value (conversions or revenue) of the converting paths whose
channel set is a subset of S. That game is a sum of unanimity games, one per path, so its
Shapley value splits each path's value equally among its distinct channels; the exact
subset sum below computes the same numbers and takes any other coalition value too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MAX_EXACT_CHANNELS = 12  # 2^12 coalitions; beyond that the closed form is used


def channel_masks(paths: Sequence[Sequence[str]], channels: Sequence[str]) -> np.ndarray:
    """Bitmask of each path's distinct channels (bit i = channels[i])."""
    bit = {c: 1 << i for i, c in enumerate(channels)}
    masks = np.zeros(len(paths), dtype=np.int64)
    for k, path in enumerate(paths):
        m = 0
        for c in path:
            m |= bit[c]
        masks[k] = m
    return masks


def coalition_values(masks: np.ndarray, value: np.ndarray, n_channels: int) -> np.ndarray:
    """v[S] = sum of `value` over paths whose channel set is a subset of S, for all 2^n S."""
    v = np.zeros(1 << n_channels)
    np.add.at(v, masks, value)
    # Sum over subsets, one bit at a time (zeta transform): O(n 2^n).
    for i in range(n_channels):
        view = v.reshape(-1, 2, 1 << i)
        view[:, 1, :] += view[:, 0, :]
    return v


def shapley_from_coalitions(v: np.ndarray) -> np.ndarray:
    """Exact Shapley values of the n players of a game given as v[bitmask] for all 2^n masks."""
    size = len(v)
    n = size.bit_length() - 1
    if size < 2 or size != 1 << n:
        raise ValueError(f"coalition values need 2^n entries with n >= 1, got {size}")
    masks = np.arange(size, dtype=np.int64)
    sizes = np.bitwise_count(masks).astype(int)
    # |S|! (n - |S| - 1)! / n! for a coalition S that leaves the player out.
    weight = np.array(
        [math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in range(n)]
    )
    phi = np.zeros(n)
    for i in range(n):
        without = masks[(masks >> i) & 1 == 0]
        phi[i] = float(np.sum(weight[sizes[without]] * (v[without | (1 << i)] - v[without])))
    return phi


def equal_split(masks: np.ndarray, value: np.ndarray, n_channels: int) -> np.ndarray:
    """Closed form of the same Shapley values: each path's value split over its channels."""
    phi = np.zeros(n_channels)
    sizes = np.bitwise_count(masks).astype(float)
    share = np.divide(value, sizes, out=np.zeros_like(value, dtype=float), where=sizes > 0)
    for i in range(n_channels):
        phi[i] = float(share[(masks >> i) & 1 == 1].sum())
    return phi


def shapley_attribution(
    paths: Sequence[Sequence[str]],
    value: np.ndarray,
    channels: Sequence[str],
    max_exact_channels: int = MAX_EXACT_CHANNELS,
) -> np.ndarray:
    """Shapley credit per channel (order of `channels`) of the paths' `value`."""
    n = len(channels)
    if n == 0:
        return np.zeros(0)
    if n > 62:
        raise ValueError(f"at most 62 channels fit a bitmask, got {n}")
    masks = channel_masks(paths, channels)
    value = np.asarray(value, dtype=float)
    if n <= max_exact_channels:
        return shapley_from_coalitions(coalition_values(masks, value, n))
    return equal_split(masks, value, n)
