"""From the experiments registry and the weekly geo panel to incrementality rows: every
completed geo holdout estimated in its window and with its adstock cool-down, with the
channel's incremental ROAS implied by the spend the holdout withheld."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from models.experiments.geo import AUGMENTED_SYNTHETIC_CONTROL, estimate_geo_lift

WINDOW_METRIC = "revenue"  # the dark weeks only: what the experiment's own report reads
# Dark weeks + cool-down: the whole loss, which per dark week is the steady-state effect the
# MMM calibration needs.
CARRYOVER_METRIC = "revenue_with_carryover"


def weekly_outcomes(panel: pd.DataFrame, value: str = "revenue_usd") -> pd.DataFrame:
    """Weeks x geos of `value` from the weekly geo panel (complete weeks only)."""
    frame = panel[panel["n_days_observed"] == 7] if "n_days_observed" in panel else panel
    wide = frame.pivot(index="week_start", columns="geo", values=value)
    wide.index = pd.DatetimeIndex(wide.index)
    return wide.sort_index()


def completed_holdouts(registry: pd.DataFrame) -> pd.DataFrame:
    return registry[(registry["design"] == "geo_holdout") & (registry["status"] == "completed")]


def estimate_holdouts(
    registry: pd.DataFrame,
    panel: pd.DataFrame,
    methods: Sequence[str] = (AUGMENTED_SYNTHETIC_CONTROL,),
    alpha: float = 0.1,
    cooldown_weeks: int = 7,
    seed: int = 0,
    progress: Callable[[str], None] = lambda _m: None,
) -> tuple[pd.DataFrame, list[str]]:
    """One row per (completed geo holdout, method, metric), and the reasons any were skipped.

    `registry` is `staging.stg_adloop__experiments`; `panel` is `marts.mart_mmm_weekly_panel`.
    The spend withheld comes from `withheld_weekly_spend`, times the dark weeks; the
    incremental ROAS (`iroas`) is the revenue lost per dollar withheld."""
    y = weekly_outcomes(panel)
    weeks = y.index
    rows, skipped = [], []
    for exp in completed_holdouts(registry).sort_values("experiment_id").itertuples():
        start, end = pd.Timestamp(exp.start_date), pd.Timestamp(exp.end_date)
        treated = [g for g in exp.treatment_geos if g in y.columns]
        why = _not_estimable(exp, treated, y, start, end)
        if why:
            skipped.append(f"{exp.experiment_id}: {why}")
            continue
        dark_weeks = int(((weeks >= start) & (weeks <= end)).sum())
        tail_end = min(end + pd.Timedelta(weeks=cooldown_weeks), weeks[-1])
        by_geo = withheld_weekly_spend(panel, exp.channel, treated, start, end)
        withheld = float(sum(by_geo.values()) * dark_weeks) if by_geo else np.nan
        for method in methods:
            for metric, post_end in ((WINDOW_METRIC, end), (CARRYOVER_METRIC, tail_end)):
                progress(f"{exp.experiment_id} ({exp.channel}): {method}, {metric}")
                est = estimate_geo_lift(
                    y, treated, start, post_end, method=method, alpha=alpha,
                    experiment_id=exp.experiment_id, seed=seed, metric=metric,
                )  # fmt: skip
                row = est.to_record()
                lost = -np.array([est.incremental, est.incremental_ci_high, est.incremental_ci_low])
                iroas = lost / withheld if withheld and withheld > 0 else [np.nan] * 3
                row |= {
                    "channel": exp.channel,
                    "design": exp.design,
                    "start_date": start.date(),
                    "end_date": end.date(),
                    "post_end_date": post_end.date(),
                    "dark_weeks": dark_weeks,
                    "spend_withheld_usd": withheld,
                    "iroas": float(iroas[0]),
                    "iroas_low": float(iroas[1]),
                    "iroas_high": float(iroas[2]),
                }
                rows.append(row)
    return pd.DataFrame(rows), skipped


def withheld_weekly_spend(
    panel: pd.DataFrame, channel: str, treated: Sequence[str], start, end
) -> dict[str, float]:
    """What each treated geo would have spent per week on `channel` during the holdout: the
    control geos' spend in those weeks, scaled by each treated geo's ratio to them before it.
    Flighted channels (TV bursts) make the pre-period mean a poor guess; the controls follow
    the same flight schedule."""
    col = f"spend_{channel}"
    if col not in panel.columns:
        return {}
    p = panel.assign(week_start=pd.to_datetime(panel["week_start"]))
    controls = p[~p["geo"].isin(treated)]
    in_window = controls[(controls["week_start"] >= start) & (controls["week_start"] <= end)]
    pre = p[p["week_start"] < start]
    pre_controls = pre.loc[~pre["geo"].isin(treated), col].sum()
    weeks = in_window["week_start"].nunique()
    if pre_controls <= 0 or weeks == 0:
        return {}
    window_weekly = in_window[col].sum() / weeks
    pre_treated = pre[pre["geo"].isin(treated)].groupby("geo")[col].sum()
    return {g: float(window_weekly * pre_treated.get(g, 0.0) / pre_controls) for g in treated}


def _not_estimable(exp, treated: list[str], y: pd.DataFrame, start, end) -> str:
    if not treated:
        return f"none of its treatment geos {list(exp.treatment_geos)} are in the panel"
    if len(y.columns) - len(treated) < 2:
        return "fewer than 2 control geos"
    if end > y.index[-1]:
        return f"ends {end.date()}, after the last complete week in the data ({y.index[-1].date()})"
    if int((y.index < start).sum()) < 8:
        return f"fewer than 8 complete weeks before it started on {start.date()}"
    return ""
