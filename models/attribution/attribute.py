"""Channel credit by first touch, last touch, Markov removal effect and Shapley, side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.attribution.markov import markov_attribution
from models.attribution.paths import PathSet, prepare_paths
from models.attribution.shapley import MAX_EXACT_CHANNELS, shapley_attribution

METHODS: tuple[str, ...] = ("first_touch", "last_touch", "markov", "shapley")

CAVEAT = (
    "Attribution is associational, not causal: it shares out the conversions of users who "
    "clicked, by where channels sit on their paths. It cannot see what those users would have "
    "done without the ads, so it credits channels that reach people who would have bought "
    "anyway and misses effects without clicks (TV, views). Read it beside the experiment and "
    "MMM estimates, which are built to measure incremental effects."
)


def touch_credit(paths: PathSet, position: int) -> np.ndarray:
    """Credit per channel when each path's value goes to the channel at `position` (0 or -1)."""
    index = {c: i for i, c in enumerate(paths.channels)}
    credit = np.zeros(len(paths.channels))
    at = np.array([index[p[position]] for p in paths.paths], dtype=int)
    np.add.at(credit, at, paths.value)
    return credit


def attribute(
    paths: pd.DataFrame,
    value: str = "revenue_usd",
    *,
    path_col: str | None = None,
    max_exact_channels: int = MAX_EXACT_CHANNELS,
) -> pd.DataFrame:
    """One row per channel: credit of `value` under each method, and each method's shares.

    `paths` has one row per user: a path column (`path`, or the dbt model's `channel_path`: a
    list or array of channels in time order), `converted` and, for revenue, `revenue_usd`.
    Rows with an empty or null path are left out and counted in `attrs["n_empty_paths"]`;
    converters with null revenue count as 0 and are counted in `attrs["n_missing_revenue"]`.
    Each method's credits sum to the total value; Markov shares also apply to revenue, as
    the chain itself only sees conversions. `attrs` also carries the caveat, to show with it.
    """
    ps = prepare_paths(paths, value=value, path_col=path_col)
    channels = ps.channels
    total = ps.total
    n = len(channels)

    if n:
        first = touch_credit(ps, 0)
        last = touch_credit(ps, -1)
        markov = markov_attribution(ps.paths, ps.converted, channels)
        effects = np.array([markov.removal_effects[c] for c in channels])
        markov_credit = effects / effects.sum() * total if effects.sum() > 0 else np.zeros(n)
        shapley = shapley_attribution(ps.paths, ps.value, channels, max_exact_channels)
        p_conv = markov.conversion_probability
    else:
        first = last = markov_credit = shapley = effects = np.zeros(0)
        p_conv = 0.0

    touched = {c: 0 for c in channels}
    touched_conv = {c: 0 for c in channels}
    for path, conv in zip(ps.paths, ps.converted, strict=True):
        for c in set(path):
            touched[c] += 1
            touched_conv[c] += int(conv)

    out = pd.DataFrame(
        {
            "channel": list(channels),
            "first_touch": first,
            "last_touch": last,
            "markov": markov_credit,
            "shapley": shapley,
        }
    )
    for method in METHODS:
        out[f"{method}_share"] = out[method] / total if total > 0 else 0.0
    out["markov_removal_effect"] = effects
    out["paths"] = [touched[c] for c in channels]
    out["converting_paths"] = [touched_conv[c] for c in channels]
    out.attrs.update(
        {
            "value": value,
            "total": total,
            "n_paths": len(ps),
            "n_converting_paths": int(ps.converted.sum()),
            "n_empty_paths": ps.n_empty,
            "n_missing_revenue": ps.n_missing_revenue,
            "markov_conversion_probability": p_conv,
            "caveat": CAVEAT,
        }
    )
    return out
