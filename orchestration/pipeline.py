"""Run the foundation in-process the way the sensors chain it: events for a range of arrival
days, then, only if they landed and passed their gate, everything downstream."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dagster as dg

from orchestration.jobs import (
    creative_loop_job,
    ingest_and_transform_job,
    ingest_events_job,
    measure_and_plan_job,
)
from orchestration.sensors import partition_range_tags


@dataclass
class PipelineRun:
    events: dg.ExecuteInProcessResult
    transform: dg.ExecuteInProcessResult | None  # None when the events run failed its gate

    @property
    def success(self) -> bool:
        return self.events.success and self.transform is not None and self.transform.success

    @property
    def results(self) -> list[dg.ExecuteInProcessResult]:
        return [r for r in (self.events, self.transform) if r is not None]

    def events_of(self, event_type: str) -> list:
        return [e for r in self.results for e in r.all_events if e.event_type_value == event_type]

    def materialized(self) -> set[str]:
        return {e.asset_key.to_user_string() for e in self.events_of("ASSET_MATERIALIZATION")}

    def check_evaluations(self) -> list:
        return [e.event_specific_data for e in self.events_of("ASSET_CHECK_EVALUATION")]


def run_foundation(
    first: date, last: date, instance: dg.DagsterInstance | None = None, log_level: str = "DEBUG"
) -> PipelineRun:
    """`log_level` sets the console; the run's full event log is stored either way."""
    from orchestration.definitions import defs

    instance = instance or dg.DagsterInstance.ephemeral()
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    events = defs.resolve_job_def(ingest_events_job.name).execute_in_process(
        instance=instance,
        tags=partition_range_tags(first, last),
        run_config=run_config,
        raise_on_error=False,
    )
    transform = None
    if events.success:
        transform = defs.resolve_job_def(ingest_and_transform_job.name).execute_in_process(
            instance=instance, run_config=run_config, raise_on_error=False
        )
    return PipelineRun(events=events, transform=transform)


def run_measure_and_plan(
    instance: dg.DagsterInstance | None = None,
    log_level: str = "DEBUG",
    op_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """Experiments, MMMs, attribution, triangulation and the budget plan, on the marts as they
    are. `op_config` maps asset names to their config (e.g. sampler settings for tests)."""
    return run_job(measure_and_plan_job.name, instance, log_level, op_config)


def run_creative_loop(
    instance: dg.DagsterInstance | None = None,
    log_level: str = "DEBUG",
    op_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """Embeddings, retrieval, fatigue, moderated LLM variants and OPE-gated traffic splits, on
    the marts as they are."""
    return run_job(creative_loop_job.name, instance, log_level, op_config)


def run_job(
    name: str, instance: dg.DagsterInstance | None, log_level: str, op_config: dict | None
) -> dg.ExecuteInProcessResult:
    """Run one job of the code location in this process; `op_config` maps op names (asset
    keys joined with `__`) to their config."""
    from orchestration.definitions import defs

    run_config: dict = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if op_config:
        run_config["ops"] = {name: {"config": cfg} for name, cfg in op_config.items()}
    return defs.resolve_job_def(name).execute_in_process(
        instance=instance or dg.DagsterInstance.ephemeral(),
        run_config=run_config,
        raise_on_error=False,
    )
