"""Jobs and schedules. DuckDB has one writer, so jobs run their steps in one process and
runs are queued one at a time per warehouse (tag `adloop/warehouse`, see deploy/dagster.yaml).

Events and everything else run as two jobs: Dagster plans every asset of a partitioned run
once per partition, so a two-year events backfill that also carried the ~20 unpartitioned
models and their ~100 checks wrote tens of thousands of planning events before its first step.
"""

from __future__ import annotations

import dagster as dg

FOUNDATION_GROUPS = ("ingestion", "staging", "intermediate", "marts")
MEASUREMENT_GROUPS = ("measurement", "decisions")
CREATIVE_GROUPS = ("creative",)
WAREHOUSE_TAG = {"adloop/warehouse": "duckdb"}


def warehouse_job(name: str, selection, description: str):
    """An asset job that writes the warehouse: steps in one process, queued per warehouse."""
    return dg.define_asset_job(
        name=name,
        selection=selection,
        executor_def=dg.in_process_executor,
        tags=WAREHOUSE_TAG,
        description=description,
    )


# Event staging converts revenue with the day's exchange rate, so the (small) fx table loads with it.
EVENT_ASSETS = dg.AssetSelection.assets(
    dg.AssetKey(["raw", "tracking_events"]),
    dg.AssetKey(["raw", "fx_rates"]),
    dg.AssetKey(["staging", "stg_tracking__events"]),
)

ingest_events_job = warehouse_job(
    name="ingest_events",
    selection=EVENT_ASSETS,
    description="Load the tracking-event files of the selected arrival days (and changed exchange rates) "
    "into raw, quarantining bad lines, gate them with the raw-events expectations, and stage them incrementally with dbt.",
)

ingest_and_transform_job = warehouse_job(
    name="ingest_and_transform",
    selection=dg.AssetSelection.groups(*FOUNDATION_GROUPS) - EVENT_ASSETS,
    description="Load changed ad-platform reports, CRM orders and reference files into raw, then build "
    "staging, intermediate and marts with dbt, gated by the conformed-spend and panel expectations.",
)

measure_and_plan_job = warehouse_job(
    name="measure_and_plan",
    selection=dg.AssetSelection.groups(*MEASUREMENT_GROUPS),
    description="Estimate the geo experiments, fit the MMMs (calibrated with the experiments), attribute, "
    "triangulate, and plan next week's budget from the calibrated MMM if it passed its diagnostics gates.",
)

creative_loop_job = warehouse_job(
    name="creative_loop",
    selection=dg.AssetSelection.groups(*CREATIVE_GROUPS),
    description="Embed and index the brand documents and creatives, measure creative fatigue, write "
    "moderated ad-copy variants with the LLM grounded in retrieved brand facts, and propose bandit "
    "traffic splits that passed off-policy evaluation.",
)

ingest_events_schedule = dg.build_schedule_from_partitioned_job(
    ingest_events_job, hour_of_day=2, minute_of_hour=0
)

# --- decisions and actuation --------------------------------------------------------------------

ACTION_PROPOSALS = dg.AssetKey(["decisions", "action_proposals"])
ACTUATION_RESULTS = dg.AssetKey(["decisions", "actuation_results"])
DECISION_BACKTEST = dg.AssetKey(["decisions", "decision_backtest"])

# Refresh the measurement the plan rests on (experiments calibrate the MMM), plan, propose, gate
# and apply what is autonomous. Fresh data arrives through the landing sensor and the nightly
# events schedule before it.
weekly_budget_job = warehouse_job(
    name="weekly_budget_reallocation",
    selection=dg.AssetSelection.assets(
        dg.AssetKey(["measurement", "incrementality"]),
        dg.AssetKey(["measurement", "mmm_pymc_marketing"]),
        dg.AssetKey(["decisions", "budget_plan"]),
        ACTION_PROPOSALS,
        ACTUATION_RESULTS,
    ),
    description="Weekly budget reallocation: re-estimate the experiments, refit the calibrated MMM, "
    "plan next week's budgets, turn the plan into proposals judged by policies/actuation.yaml, and "
    "apply, through every gate, what is autonomous or approved. The rest waits for approval "
    "(adloop proposals list).",
)

actuate_job = warehouse_job(
    name="actuate",
    selection=dg.AssetSelection.assets(ACTUATION_RESULTS),
    description="Apply the latest proposals that passed every gate (requested by the approvals "
    "sensor when someone approves, and by the spend-anomaly sensor for stop-losses).",
)

decision_backtest_job = warehouse_job(
    name="decision_backtest",
    selection=dg.AssetSelection.assets(DECISION_BACKTEST),
    description="On a simulated market: what each week's applied budgets were worth under the "
    "true response, against the budgets they replaced and the true optimum (regret).",
)

# Stopped by default: turning it on is the decision to let adloop act every week.
weekly_budget_schedule = dg.ScheduleDefinition(
    job=weekly_budget_job,
    cron_schedule="0 6 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Mondays 06:00 UTC, after the nightly events ingest: the weekly budget reallocation.",
)
