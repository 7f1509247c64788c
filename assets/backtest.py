"""The decision backtest: what each week's applied budgets were worth under the simulator's
true response, against the budgets they replaced and the true optimum for the same spend.

Only a simulator knows the true response curves, so this runs on simulated markets; on real
data its place is taken by holdout experiments. Values are steady-state weekly contributions
(revenue caused by media at that weekly spend, held constant), in USD.
"""

from dataclasses import replace
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from assets.actuation import ACTUATION_RESULTS, PLATFORM_BUDGETS
from assets.metadata import markdown_table
from assets.resources import LandingZone, Warehouse
from connectors.warehouse import replace_table
from models.budget import DEFAULT_POLICY_PATH, ResponseCurves, load_budget_policy, optimize_budget
from models.simulation.closed_loop import true_response_curves
from models.simulation.generator import TRUTH_FILE

DECISION_BACKTEST = dg.AssetKey(["decisions", "decision_backtest"])


class BacktestConfig(dg.Config):
    truth_path: str | None = None  # default: truth.json beside the landing folder
    budget_policy_path: str = str(DEFAULT_POLICY_PATH)


def subset(curves: ResponseCurves, units: list[str]) -> ResponseCurves:
    idx = [curves.units.index(u) for u in units]
    return replace(
        curves, units=tuple(units), channel=tuple(curves.channel[i] for i in idx),
        geo=tuple(curves.geo[i] for i in idx), beta=curves.beta[:, idx], lam=curves.lam[:, idx],
        alpha=curves.alpha[:, idx], scale=curves.scale[idx],
    )  # fmt: skip


def _optimum(curves: ResponseCurves, spend: np.ndarray, policy) -> float:
    """The true contribution of the best allocation of `spend`'s total."""
    plan = optimize_budget(
        curves, spend, policy, total_budget=float(spend.sum()), on_infeasible="closest"
    )
    return float(plan.expected_contribution_proposed)


def without_step_limits(policy):
    """The budget policy's floors and caps without its step limits: the long-run optimum."""
    channels = {ch: replace(lim, max_change_per_period=None) for ch, lim in policy.channels.items()}
    return replace(policy, max_change_per_period=None, channels=channels)


@dg.asset(
    key=DECISION_BACKTEST,
    deps=[ACTUATION_RESULTS],
    group_name="actuation",
    kinds={"python", "duckdb"},
)
def decision_backtest(
    context: dg.AssetExecutionContext,
    config: BacktestConfig,
    warehouse: Warehouse,
    landing: LandingZone,
) -> dg.MaterializeResult:
    """`decisions.decision_backtest`, one row per week acted on: the true weekly media
    contribution of the budgets before the run and after it; for each, the true optimum for
    the same total spend (within the budget policy's floors and caps, without step limits) and
    the regret (optimum minus actual); and the true change in contribution net of spend."""
    truth_path = Path(config.truth_path) if config.truth_path else landing.root.parent / TRUTH_FILE
    if not truth_path.is_file():
        raise dg.Failure(
            f"no simulator truth at {truth_path}: the decision backtest needs the true response "
            "curves, which only a simulated market has"
        )
    curves = true_response_curves(truth_path)
    with warehouse.connect(read_only=True) as conn:
        snaps = conn.execute(
            f"select * from {PLATFORM_BUDGETS} order by created_for, phase, channel, geo"
        ).df()
    policy = without_step_limits(load_budget_policy(Path(config.budget_policy_path)))
    rows = []
    for week, snap in snaps.groupby("created_for", sort=True):
        spend = {
            ph: s.set_index(s["channel"] + "|" + s["geo"])["usd_per_day"] * 7
            for ph, s in snap.groupby("phase")
        }
        units = sorted(spend["before"].index)
        cv = subset(curves, units)
        before = spend["before"].reindex(units).to_numpy()
        after = spend["after"].reindex(units).to_numpy()
        c_before = float(cv.contribution(before).sum())
        c_after = float(cv.contribution(after).sum())
        # Each set of budgets against the true optimum for its own total: spend moves too (a
        # plan may cut a channel), and comparing contributions at different totals would
        # credit or blame the allocation for the spend.
        opt_before = _optimum(cv, before, policy)
        opt_after = _optimum(cv, after, policy)
        s_before, s_after = float(before.sum()), float(after.sum())
        rows.append({
            "week_of": pd.Timestamp(week).date(), "units": len(units),
            "spend_before": s_before, "spend_after": s_after,
            "true_contribution_before": c_before, "true_contribution_after": c_after,
            "true_optimum_before": opt_before, "true_optimum_after": opt_after,
            "regret_before": opt_before - c_before, "regret_after": opt_after - c_after,
            "true_net_change": (c_after - s_after) - (c_before - s_before),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    with warehouse.connect() as conn:
        replace_table(conn, "decisions.decision_backtest", table)
    shown = [
        (r.week_of, f"{r.spend_before:,.0f}", f"{r.spend_after:,.0f}", f"{r.regret_before:,.0f}",
         f"{r.regret_after:,.0f}", f"{r.true_net_change:+,.0f}")
        for r in table.itertuples()
    ]  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "weeks": len(table),
            "latest_regret": float(table["regret_after"].iloc[-1]) if len(table) else 0.0,
            "backtest": dg.MetadataValue.md(
                markdown_table(
                    ["week", "spend/week", "true before", "true after", "true optimum", "regret"],
                    shown,
                )
            ),
        }
    )
