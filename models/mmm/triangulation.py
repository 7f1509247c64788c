"""Triangulation: every causal estimate of a channel's ROAS side by side (each MMM backend,
each experiment), with the channels where two of them disagree beyond their intervals, and
the associational attribution shares beside them for context, never as evidence."""

from __future__ import annotations

from itertools import combinations

import pandas as pd

COLUMNS = [
    "channel", "source", "kind", "roas_mean", "roas_low", "roas_high", "calibrated_with", "gates_passed",
]  # fmt: skip


def triangulate(
    mmm: pd.DataFrame, experiments: pd.DataFrame, attribution: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per (channel, source).

    `mmm`: rows with `source` (the model), `channel`, `roas_mean/low/high`, `calibrated_with`
    (experiment ids the model was calibrated on) and `contribution_share`. `experiments`: rows
    with `experiment_id`, `channel`, `iroas`, `iroas_low`, `iroas_high`. `attribution`: the
    attribution table (`channel`, `<method>_share`).

    `disagrees_with` lists the causal sources whose interval does not overlap this one's. A
    model calibrated on an experiment is not compared with that experiment: it was made to
    agree with it, and a model that failed its diagnostics gates is shown but compared with
    nothing. `channel_verdict` is `disagree` when any pair of sources for the channel
    disagrees, `agree` when there are two or more and none do, `single source` otherwise."""
    parts = []
    if len(mmm):
        m = mmm.assign(kind="mmm")
        if "gates_passed" not in m:
            m["gates_passed"] = True
        m["calibrated_with"] = m["calibrated_with"].apply(
            lambda v: ",".join(v) if isinstance(v, list | tuple) else (v or "")
        )
        parts.append(m)
    if len(experiments):
        e = experiments.rename(
            columns={"iroas": "roas_mean", "iroas_low": "roas_low", "iroas_high": "roas_high"}
        )
        e = e.assign(
            source=e["experiment_id"], kind="experiment", calibrated_with="", gates_passed=True
        )
        parts.append(e)
    if not parts:
        return pd.DataFrame(
            columns=[*COLUMNS, "contribution_share", "disagrees_with", "channel_verdict"]
        )
    rows = pd.concat(
        [p.reindex(columns=[*COLUMNS, "contribution_share"]) for p in parts], ignore_index=True
    )
    rows["disagrees_with"] = ""
    rows["channel_verdict"] = "single source"
    for _channel, idx in rows.groupby("channel").groups.items():
        sub = rows.loc[idx]
        flagged = False
        for a, b in combinations(sub.index, 2):
            if _calibrated_on(rows.loc[a], rows.loc[b]) or _calibrated_on(rows.loc[b], rows.loc[a]):
                continue
            if not (rows.at[a, "gates_passed"] and rows.at[b, "gates_passed"]):
                continue
            if not _overlap(rows.loc[a], rows.loc[b]):
                flagged = True
                for x, y in ((a, b), (b, a)):
                    prev = rows.at[x, "disagrees_with"]
                    rows.at[x, "disagrees_with"] = ",".join(
                        filter(None, [prev, rows.at[y, "source"]])
                    )
        if len(sub) > 1:
            rows.loc[idx, "channel_verdict"] = "disagree" if flagged else "agree"
    if attribution is not None and len(attribution):
        shares = [c for c in attribution.columns if c.endswith("_share")]
        rows = rows.merge(
            attribution[["channel", *shares]].rename(columns={c: f"attribution_{c}" for c in shares}),
            on="channel", how="left",
        )  # fmt: skip
    return rows.sort_values(["channel", "kind", "source"]).reset_index(drop=True)


def _overlap(a: pd.Series, b: pd.Series) -> bool:
    if pd.isna(a["roas_low"]) or pd.isna(b["roas_low"]):
        return True  # no interval, no evidence of disagreement
    return a["roas_low"] <= b["roas_high"] and b["roas_low"] <= a["roas_high"]


def _calibrated_on(model: pd.Series, other: pd.Series) -> bool:
    return model["kind"] == "mmm" and other["source"] in str(model["calibrated_with"]).split(",")
