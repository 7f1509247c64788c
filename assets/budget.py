"""Next week's budget plan: the calibrated MMM's response curves, optimised within the budget
policy (`policies/budget.yaml`). It proposes; nothing here touches an ad platform."""

import hashlib
from pathlib import Path

import dagster as dg
import numpy as np

from assets.metadata import markdown_table
from assets.mmm import PRIMARY_MMM, RUN_RATE_WEEKS, load_primary_fit, read_panel
from assets.resources import Warehouse
from connectors.warehouse import replace_table
from models.budget import DEFAULT_POLICY_PATH, load_budget_policy, optimize_budget
from models.mmm.artifacts import load_result

BUDGET_PLAN = dg.AssetKey(["decisions", "budget_plan"])


class BudgetPlanConfig(dg.Config):
    policy_path: str = str(DEFAULT_POLICY_PATH)
    current_weeks: int = RUN_RATE_WEEKS  # the run-rate the plan starts from
    total_budget: float | None = None  # default: the current run-rate's total
    objective: str | None = None  # max_revenue | target_roas; default: the policy's
    target_roas: float | None = None
    max_draws: int = 1000
    seed: int = 0


@dg.asset(
    key=BUDGET_PLAN,
    deps=[dg.AssetKey(["measurement", PRIMARY_MMM])],
    group_name="decisions",
    kinds={"python", "duckdb"},
)
def budget_plan(
    context: dg.AssetExecutionContext, config: BudgetPlanConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    """`decisions.budget_plan`: one row per channel and geo with the current weekly run-rate,
    the proposed spend, the change, and the expected weekly effect with its interval, within the
    policy's bounds, minimum contract spends and step limit. Refuses to plan from a model that
    failed its diagnostics gates or was fitted on other data than the current panel."""
    fit, result_path = load_primary_fit(warehouse)
    if not bool(fit["gates_passed"].iloc[0]):
        raise dg.Failure(
            f"no plan: {PRIMARY_MMM} failed its diagnostics gates ({fit['gate_failures'].iloc[0]})"
        )
    panel = read_panel(warehouse)
    if fit["panel_fingerprint"].iloc[0] != panel.fingerprint():
        raise dg.Failure(
            f"no plan: {PRIMARY_MMM} was fitted on another panel than the current one; refit it"
        )
    result = load_result(result_path)
    if result.curves is None:
        raise dg.Failure(f"no plan: {result_path} holds no response curves")
    curves = result.curves
    recent = panel.frame[panel.frame["week_start"] >= panel.weeks[-config.current_weeks]]
    by_geo = recent.groupby("geo")[list(panel.spend_columns)].sum() / config.current_weeks
    current = np.array(
        [by_geo.loc[g, f"spend_{ch}"] for ch, g in zip(curves.channel, curves.geo, strict=True)]
    )
    policy = load_budget_policy(Path(config.policy_path))
    plan = optimize_budget(
        curves, current, policy, total_budget=config.total_budget, objective=config.objective,
        target_roas=config.target_roas, seed=config.seed, max_draws=config.max_draws,
        on_infeasible="closest",
    )  # fmt: skip
    plan_id = hashlib.sha256(
        f"{fit['fit_id'].iloc[0]}|{plan.policy_hash}|{np.round(current, 2).tolist()}|{config.model_dump_json()}".encode()
    ).hexdigest()[:16]
    table = plan.table.copy()
    table.insert(0, "plan_id", plan_id)
    table["week_of"] = (panel.weeks[-1] + np.timedelta64(7, "D")).date()
    table["fit_id"] = fit["fit_id"].iloc[0]
    table["policy_version"] = str(plan.policy_version)
    table["policy_hash"] = plan.policy_hash
    with warehouse.connect() as conn:
        replace_table(conn, "decisions.budget_plan", table)
    if not plan.feasible:
        context.log.warning(plan.message)
    by_channel = (
        table.groupby("channel")[["current_spend", "proposed_spend", "expected_effect"]]
        .sum()
        .reset_index()
    )
    by_channel["change_pct"] = by_channel["proposed_spend"] / by_channel["current_spend"] - 1
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "plan_id": plan_id,
            "objective": plan.objective,
            "total_current": plan.total_current,
            "total_proposed": plan.total_proposed,
            "expected_weekly_lift": plan.expected_lift,
            "expected_weekly_lift_interval": dg.MetadataValue.json(
                [plan.lift_ci_low, plan.lift_ci_high]
            ),
            "prob_beats_current": plan.prob_beats_current,
            "expected_roas_current": plan.expected_roas_current,
            "expected_roas_proposed": plan.expected_roas_proposed,
            "feasible": plan.feasible,
            "message": plan.message or "",
            "policy_version": str(plan.policy_version),
            "policy_hash": plan.policy_hash,
            "by_channel": dg.MetadataValue.md(
                markdown_table(list(by_channel.columns), by_channel.itertuples(index=False))
            ),
        }
    )
