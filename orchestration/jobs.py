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

# Event staging converts revenue with the day's exchange rate, so the (small) fx table loads with it.
EVENT_ASSETS = dg.AssetSelection.assets(
    dg.AssetKey(["raw", "tracking_events"]),
    dg.AssetKey(["raw", "fx_rates"]),
    dg.AssetKey(["staging", "stg_tracking__events"]),
)

ingest_events_job = dg.define_asset_job(
    name="ingest_events",
    selection=EVENT_ASSETS,
    executor_def=dg.in_process_executor,
    tags=WAREHOUSE_TAG,
    description="Load the tracking-event files of the selected arrival days (and changed exchange rates) "
    "into raw, quarantining bad lines, gate them with the raw-events expectations, and stage them incrementally with dbt.",
)

ingest_and_transform_job = dg.define_asset_job(
    name="ingest_and_transform",
    selection=dg.AssetSelection.groups(*FOUNDATION_GROUPS) - EVENT_ASSETS,
    executor_def=dg.in_process_executor,
    tags=WAREHOUSE_TAG,
    description="Load changed ad-platform reports, CRM orders and reference files into raw, then build "
    "staging, intermediate and marts with dbt, gated by the conformed-spend and panel expectations.",
)

measure_and_plan_job = dg.define_asset_job(
    name="measure_and_plan",
    selection=dg.AssetSelection.groups(*MEASUREMENT_GROUPS),
    executor_def=dg.in_process_executor,
    tags=WAREHOUSE_TAG,
    description="Estimate the geo experiments, fit the MMMs (calibrated with the experiments), attribute, "
    "triangulate, and plan next week's budget from the calibrated MMM if it passed its diagnostics gates.",
)

creative_loop_job = dg.define_asset_job(
    name="creative_loop",
    selection=dg.AssetSelection.groups(*CREATIVE_GROUPS),
    executor_def=dg.in_process_executor,
    tags=WAREHOUSE_TAG,
    description="Embed and index the brand documents and creatives, measure creative fatigue, write "
    "moderated ad-copy variants with the LLM grounded in retrieved brand facts, and propose bandit "
    "traffic splits that passed off-policy evaluation.",
)

ingest_events_schedule = dg.build_schedule_from_partitioned_job(
    ingest_events_job, hour_of_day=2, minute_of_hour=0
)
