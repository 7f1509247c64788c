"""The adloop code location: assembles assets, checks, jobs, schedules, sensors and resources."""

from __future__ import annotations

import dagster as dg

from assets import (
    attribution,
    bandits,
    budget,
    creatives,
    dbt,
    experiments,
    ingestion,
    mmm,
    quality,
)
from orchestration.jobs import (
    creative_loop_job,
    ingest_and_transform_job,
    ingest_events_job,
    ingest_events_schedule,
    measure_and_plan_job,
)
from orchestration.resources import build_resources
from orchestration.sensors import landing_sensor, transform_after_events

defs = dg.Definitions(
    assets=[
        ingestion.raw_tracking_events,
        *ingestion.raw_source_assets,
        dbt.dbt_event_models,
        dbt.dbt_staging_models,
        dbt.dbt_mart_models,
        experiments.incrementality,
        experiments.geo_test_design,
        attribution.attribution,
        mmm.mmm_pymc_marketing,
        mmm.mmm_pymc_marketing_uncalibrated,
        mmm.mmm_lightweight_mmm,
        mmm.mmm_triangulation,
        budget.budget_plan,
        creatives.brand_passages,
        creatives.creative_embeddings,
        creatives.creative_fatigue,
        creatives.creative_variants,
        bandits.creative_bandit_stats,
        bandits.creative_traffic_split,
    ],
    asset_checks=[*ingestion.reconciliation_checks, *quality.quality_checks],
    jobs=[ingest_events_job, ingest_and_transform_job, measure_and_plan_job, creative_loop_job],
    schedules=[ingest_events_schedule],
    sensors=[landing_sensor, transform_after_events],
    resources=build_resources(),
)
