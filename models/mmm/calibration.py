"""Experiments in the MMM's terms: geo-holdout estimates become lift tests on the response
curve (`LiftTest`), so the calibrated model agrees with what the experiments measured."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.experiments.holdouts import CARRYOVER_METRIC, withheld_weekly_spend
from models.mmm.base import DATE, GEO, LiftTest, MMMPanel


def lift_tests_from_experiments(
    estimates: pd.DataFrame, registry: pd.DataFrame, panel: MMMPanel, method: str
) -> tuple[LiftTest, ...]:
    """One `LiftTest` per holdout experiment estimated with `method`.

    `estimates` are rows of `measurement.incrementality`; `registry` the experiments (with
    `experiment_id, channel, treatment_geos, start_date, end_date`). The spend a holdout took
    away per geo and week is `withheld_weekly_spend`'s; the revenue change per dark week and
    its standard error come from the estimate (with cool-down) and its interval."""
    rows = estimates[(estimates["method"] == method) & (estimates["metric"] == CARRYOVER_METRIC)]
    rows = rows.sort_values(
        "experiment_id"
    )  # the model's graph, hence its draws, follow this order
    frame = panel.frame.assign(**{DATE: pd.to_datetime(panel.frame[DATE])})
    tests = []
    for est in rows.itertuples():
        exp = registry.loc[registry["experiment_id"] == est.experiment_id]
        if exp.empty or exp.iloc[0]["channel"] not in panel.channels:
            continue
        exp = exp.iloc[0]
        start, end = pd.Timestamp(exp["start_date"]), pd.Timestamp(exp["end_date"])
        geos = tuple(g for g in exp["treatment_geos"] if g in set(frame[GEO]))
        spend = withheld_weekly_spend(frame, exp["channel"], geos, start, end)
        x = tuple(spend.get(g, 0.0) for g in geos)
        if not geos or sum(x) <= 0:
            continue
        dark_weeks = int(est.dark_weeks)
        z = _z(est.ci_level)
        sigma = (est.incremental_ci_high - est.incremental_ci_low) / (2 * z) / dark_weeks
        tests.append(
            LiftTest(
                experiment_id=est.experiment_id,
                channel=exp["channel"],
                geos=geos,
                x=x,
                delta_x=tuple(-v for v in x),
                delta_y=float(est.incremental) / dark_weeks,
                sigma=float(max(sigma, 1e-6)),
            )
        )
    return tuple(tests)


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2)) if 0 < level < 1 else float(np.nan)
