"""Pictures of a fit for the Dagster UI and analysts: response curves and contributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.mmm.base import MMMResult


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers
    import matplotlib.pyplot as plt

    return plt


def response_curves_png(result: MMMResult, current_weekly: dict[str, float], path: Path) -> Path:
    """Weekly steady-state contribution per channel against weekly spend, mean and 94% band,
    summed over geos with spend split as it is now; a dot marks the current spend."""
    plt = _pyplot()
    curves = result.curves
    if curves is None:
        raise ValueError(f"{result.backend} gave no response-curve draws to plot")
    channels = list(result.channels["channel"])
    fig, axes = plt.subplots(2, (len(channels) + 1) // 2, figsize=(12, 6), squeeze=False)
    for ax, ch in zip(axes.flat, channels, strict=False):
        idx = [i for i, c in enumerate(curves.channel) if c == ch]
        split = np.array([current_weekly.get(curves.units[i], 0.0) for i in idx])
        total = split.sum()
        shares = split / total if total > 0 else np.full(len(idx), 1 / len(idx))
        top = max(total * 2.5, 1.0)
        grid = np.linspace(0, top, 60)
        spend = np.zeros((len(grid), len(curves.units)))
        spend[:, idx] = grid[:, None] * shares[None, :]
        draws = curves.contribution(spend)[:, :, idx].sum(axis=2)  # [draw, grid]
        lo, mid, hi = np.quantile(draws, [0.03, 0.5, 0.97], axis=0)
        ax.fill_between(grid, lo, hi, alpha=0.25)
        ax.plot(grid, mid)
        cur = curves.contribution(spend[[np.argmin(np.abs(grid - total))]])[:, 0, idx].sum(axis=1)
        ax.plot([total], [float(np.median(cur))], "o")
        ax.set_title(ch)
        ax.set_xlabel("weekly spend (USD)")
        ax.set_ylabel("weekly contribution (USD)")
    for ax in list(axes.flat)[len(channels) :]:
        ax.axis("off")
    fig.suptitle(f"{result.backend}: response curves (median, 94% band)")
    fig.tight_layout()
    return _save(fig, plt, path)


def roas_png(result: MMMResult, path: Path, truth: dict[str, float] | None = None) -> Path:
    """ROAS per channel with its interval (and the truth, on simulated data)."""
    plt = _pyplot()
    t = result.channels
    y = np.arange(len(t))
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(t) + 1.5))
    ax.errorbar(
        t["roas_mean"], y,
        xerr=[t["roas_mean"] - t["roas_low"], t["roas_high"] - t["roas_mean"]],
        fmt="o", capsize=3, label=f"{result.backend} ({result.settings.ci:.0%} interval)",
    )  # fmt: skip
    if truth:
        ax.plot([truth.get(c, np.nan) for c in t["channel"]], y, "kx", label="simulator truth")
    ax.set_yticks(y, t["channel"])
    ax.set_xlabel("ROAS (revenue per dollar)")
    ax.legend(loc="best")
    fig.tight_layout()
    return _save(fig, plt, path)


def contributions_png(result: MMMResult, path: Path) -> Path:
    """Revenue each channel contributed over the panel, with its interval, beside its spend."""
    plt = _pyplot()
    t = result.channels
    x = np.arange(len(t))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(x - 0.2, t["spend"], 0.4, label="spend", color="0.7")
    ax.bar(
        x + 0.2, t["contribution_mean"], 0.4,
        yerr=[t["contribution_mean"] - t["contribution_low"], t["contribution_high"] - t["contribution_mean"]],
        capsize=3, label=f"contribution ({result.settings.ci:.0%} interval)",
    )  # fmt: skip
    ax.set_xticks(x, t["channel"])
    ax.set_ylabel("USD over the panel")
    ax.set_title(f"{result.backend}: revenue contributed by each channel")
    ax.legend(loc="best")
    fig.tight_layout()
    return _save(fig, plt, path)


def _save(fig, plt, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path
