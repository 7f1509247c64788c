"""The adloop code location: assembles assets, checks, jobs, schedules, sensors and resources."""

from __future__ import annotations

import dagster as dg

from assets import all_asset_checks, all_assets
from orchestration.approval_sensors import build_approvals_sensor
from orchestration.jobs import (
    actuate_job,
    creative_loop_job,
    decision_backtest_job,
    ingest_and_transform_job,
    ingest_events_job,
    ingest_events_schedule,
    measure_and_plan_job,
    weekly_budget_job,
    weekly_budget_schedule,
)
from orchestration.monitoring_sensors import build_spend_anomaly_sensor
from orchestration.resources import build_resources
from orchestration.sensors import landing_sensor, transform_after_events

defs = dg.Definitions(
    assets=all_assets(),
    asset_checks=all_asset_checks(),
    jobs=[
        ingest_events_job,
        ingest_and_transform_job,
        measure_and_plan_job,
        creative_loop_job,
        weekly_budget_job,
        actuate_job,
        decision_backtest_job,
    ],
    schedules=[ingest_events_schedule, weekly_budget_schedule],
    sensors=[
        landing_sensor,
        transform_after_events,
        build_approvals_sensor(actuate_job.name),
        build_spend_anomaly_sensor(actuate_job.name),
    ],
    resources=build_resources(),
)
