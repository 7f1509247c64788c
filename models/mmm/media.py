"""The media response in plain numpy: geometric adstock then logistic saturation, evaluated on
posterior draws. One implementation serves contributions, ROAS, marginal ROAS and curves, so
every backend's numbers are computed the same way."""

from __future__ import annotations

import numpy as np


def adstock_weights(alpha: np.ndarray, l_max: int, normalize: bool) -> np.ndarray:
    """Weights [..., l_max] of geometric adstock for decay `alpha` (any shape)."""
    w = np.asarray(alpha)[..., None] ** np.arange(l_max)
    return w / w.sum(axis=-1, keepdims=True) if normalize else w


def geometric_adstock(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Adstock of `x` [..., week, unit] with weights [..., unit, l_max] broadcast over `...`."""
    out = np.zeros(np.broadcast_shapes(x.shape, weights.shape[:-2] + x.shape[-2:]))
    weeks = x.shape[-2]
    for lag in range(weights.shape[-1]):
        if lag >= weeks:
            break
        w = weights[..., None, :, lag]
        if lag == 0:
            out = out + w * x
        else:
            out[..., lag:, :] += w * x[..., :-lag, :]
    return out


def logistic(x: np.ndarray) -> np.ndarray:
    e = np.exp(-x)
    return (1 - e) / (1 + e)


def contributions(
    spend: np.ndarray,
    alpha: np.ndarray,
    lam: np.ndarray,
    beta: np.ndarray,
    channel_scale: np.ndarray,
    target_scale: np.ndarray,
    l_max: int,
    normalize: bool = True,
) -> np.ndarray:
    """Contribution [draw, week, unit] in revenue units of spend [week, unit].

    Parameters are per draw and unit ([draw, unit]); scales per unit. A unit is a channel, or
    a (geo, channel) pair flattened: the shapes only have to agree."""
    x = spend[None] / channel_scale[None, None, :]
    ad = geometric_adstock(x, adstock_weights(alpha, l_max, normalize))
    return beta[:, None, :] * logistic(lam[:, None, :] * ad) * target_scale[None, None, :]


def contribution_totals(
    spend: np.ndarray, step: float = 0.01, **params
) -> tuple[np.ndarray, np.ndarray]:
    """Total contribution [draw, unit] over the period at the spend given and with every week's
    spend raised by `step`: their difference over `step` x spend is the marginal ROAS."""
    base = contributions(spend, **params).sum(axis=1)
    more = contributions(spend * (1 + step), **params).sum(axis=1)
    return base, more
