"""Jobs and schedules. DuckDB has one writer, so jobs run their steps in one process and
runs are queued one at a time per warehouse (tag `adloop/warehouse`, see deploy/dagster.yaml)."""

from __future__ import annotations

import dagster as dg

from assets.partitions import events_partitions

FOUNDATION_GROUPS = ("ingestion", "staging", "intermediate", "marts")
WAREHOUSE_TAG = {"adloop/warehouse": "duckdb"}
_foundation = dg.AssetSelection.groups(*FOUNDATION_GROUPS)
_event_assets = dg.AssetSelection.assets(dg.AssetKey(["raw", "tracking_events"])) | dg.AssetSelection.assets(
    dg.AssetKey(["staging", "stg_tracking__events"])
)

ingest_and_transform_job = dg.define_asset_job(
    name="ingest_and_transform",
    selection=_foundation,
    partitions_def=events_partitions,
    executor_def=dg.in_process_executor,
    tags=WAREHOUSE_TAG,
    description="Load the landing files of the selected arrival days and every changed source file "
    "into raw, then build staging, intermediate and marts with dbt, gated by the quality checks.",
)

ingest_sources_job = dg.define_asset_job(
    name="ingest_sources",
    selection=_foundation - _event_assets,
    executor_def=dg.in_process_executor,
    tags=WAREHOUSE_TAG,
    description="Reload changed non-event sources (ad reports, CRM, reference files) and rebuild "
    "everything downstream of them; event partitions are left as they are.",
)

ingest_and_transform_schedule = dg.build_schedule_from_partitioned_job(
    ingest_and_transform_job, hour_of_day=2, minute_of_hour=0
)
