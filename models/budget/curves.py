"""Steady-state response curves per unit (channel or channel × geo), as posterior draws.

A constant weekly spend s on a unit, through geometric adstock (carry-over A = sum_{l<l_max}
alpha^l, or 1 when normalised) and pymc-marketing's logistic saturation, contributes
beta * (1 - e^(-x)) / (1 + e^(-x)) with x = lam * s * A / scale, i.e. beta * tanh(x / 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

UNIT_SEPARATOR = "|"  # "search|US-CA" is channel search in geo US-CA


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class ResponseCurves:
    """Draws [d, u] of each unit's response parameters; `scale[u]` is its spend scale at fit."""

    units: tuple[str, ...]
    channel: tuple[str, ...]
    geo: tuple[str | None, ...]
    beta: np.ndarray  # [d, u] revenue at full saturation, >= 0
    lam: np.ndarray  # [d, u] saturation steepness, > 0
    alpha: np.ndarray  # [d, u] geometric adstock decay in [0, 1]
    scale: np.ndarray  # [u] spend scale used at fit time, > 0
    l_max: int = 8
    normalize: bool = False

    def __post_init__(self) -> None:
        n = len(self.units)
        if n == 0:
            raise ValueError("ResponseCurves needs at least one unit")
        if len(set(self.units)) != n:
            raise ValueError(f"units must be unique, got {list(self.units)}")
        for name in ("channel", "geo"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} units")
        object.__setattr__(self, "units", tuple(self.units))
        object.__setattr__(self, "channel", tuple(self.channel))
        object.__setattr__(self, "geo", tuple(self.geo))
        if not isinstance(self.l_max, int | np.integer) or self.l_max < 1:
            raise ValueError(f"l_max must be a positive integer, got {self.l_max!r}")
        shapes = {}
        for name in ("beta", "lam", "alpha"):
            a = np.asarray(getattr(self, name), dtype=float)
            if a.ndim != 2 or a.shape[1] != n or a.shape[0] < 1:
                raise ValueError(f"{name} must have shape [draws, {n}], got {a.shape}")
            if not np.isfinite(a).all():
                raise ValueError(f"{name} has non-finite values")
            shapes[name] = a.shape
            object.__setattr__(self, name, _readonly(a))
        if len(set(shapes.values())) != 1:
            raise ValueError(f"beta, lam and alpha need the same shape, got {shapes}")
        scale = np.asarray(self.scale, dtype=float)
        if scale.shape != (n,):
            raise ValueError(f"scale must have shape [{n}], got {scale.shape}")
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError("scale must be finite and > 0 for every unit")
        object.__setattr__(self, "scale", _readonly(scale))
        if (self.beta < 0).any():
            raise ValueError("beta must be >= 0")
        if (self.lam <= 0).any():
            raise ValueError("lam must be > 0")
        if ((self.alpha < 0) | (self.alpha > 1)).any():
            raise ValueError("alpha must be in [0, 1]")

    @classmethod
    def from_point(
        cls,
        units: Sequence[str],
        beta: Sequence[float],
        lam: Sequence[float],
        alpha: Sequence[float],
        scale: Sequence[float],
        *,
        channel: Sequence[str] | None = None,
        geo: Sequence[str | None] | None = None,
        l_max: int = 8,
        normalize: bool = False,
    ) -> ResponseCurves:
        """One draw from point parameters [u]; channel and geo default to 'channel|geo' names."""
        units = tuple(units)
        if channel is None:
            channel = tuple(u.split(UNIT_SEPARATOR, 1)[0] for u in units)
        if geo is None:
            geo = tuple(
                u.split(UNIT_SEPARATOR, 1)[1] if UNIT_SEPARATOR in u else None for u in units
            )

        def row(x: Sequence[float], name: str) -> np.ndarray:
            a = np.asarray(x, dtype=float)
            if a.ndim != 1:
                raise ValueError(f"{name} must be one value per unit, got shape {a.shape}")
            return a[None, :]

        return cls(
            units=units,
            channel=tuple(channel),
            geo=tuple(geo),
            beta=row(beta, "beta"),
            lam=row(lam, "lam"),
            alpha=row(alpha, "alpha"),
            scale=np.asarray(scale, dtype=float),
            l_max=l_max,
            normalize=normalize,
        )

    @property
    def n_draws(self) -> int:
        return self.beta.shape[0]

    @property
    def n_units(self) -> int:
        return len(self.units)

    @property
    def carryover(self) -> np.ndarray:
        """A[d, u]: steady-state adstock of a unit constant spend."""
        if self.normalize:
            return np.ones_like(self.alpha)
        return np.stack([self.alpha**lag for lag in range(self.l_max)]).sum(axis=0)

    @property
    def steepness(self) -> np.ndarray:
        """k[d, u] = lam * A / scale, so that contribution = beta * tanh(k * s / 2)."""
        return self.lam * self.carryover / self.scale[None, :]

    def _spend(self, spend: np.ndarray | Sequence[float]) -> np.ndarray:
        s = np.asarray(spend, dtype=float)
        if s.ndim not in (1, 2) or s.shape[-1] != self.n_units:
            raise ValueError(
                f"spend must have shape [{self.n_units}] or [k, {self.n_units}], got {s.shape}"
            )
        if not np.isfinite(s).all() or (s < 0).any():
            raise ValueError("spend must be finite and >= 0")
        return s

    def _broadcast(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k, beta = self.steepness, self.beta
        if s.ndim == 2:  # [k, u] -> draws [d, k, u]
            return beta[:, None, :], k[:, None, :], s[None, :, :]
        return beta, k, s[None, :]

    def contribution(self, spend: np.ndarray | Sequence[float]) -> np.ndarray:
        """Weekly contribution per draw: [d, u] for spend [u], [d, k, u] for spend [k, u]."""
        beta, k, s = self._broadcast(self._spend(spend))
        return beta * np.tanh(k * s / 2.0)

    def marginal(self, spend: np.ndarray | Sequence[float]) -> np.ndarray:
        """d(contribution)/d(spend) per draw, shaped like `contribution`."""
        beta, k, s = self._broadcast(self._spend(spend))
        # sech^2(y) written with e^(-2y), y >= 0: cosh would overflow for saturated units.
        e = np.exp(-k * s)
        return beta * k / 2.0 * 4.0 * e / (1.0 + e) ** 2

    def mean_curve(self, spend: np.ndarray | Sequence[float]) -> np.ndarray:
        """Posterior-mean contribution: [u] for spend [u], [k, u] for spend [k, u] (a grid)."""
        return self.contribution(spend).mean(axis=0)

    def mean_marginal(self, spend: np.ndarray | Sequence[float]) -> np.ndarray:
        return self.marginal(spend).mean(axis=0)
