"""Sensors: new landing files request runs for exactly what they touch, and landed events
refresh everything downstream of them."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from assets.partitions import events_partitions
from assets.resources import LandingZone
from models.ingestion.sources import SOURCES, received_date
from orchestration.jobs import ingest_and_transform_job, ingest_events_job


def _signature(path: Path) -> str:
    st = path.stat()
    return f"{st.st_mtime_ns}:{st.st_size}"


def contiguous_ranges(days: list[date]) -> list[tuple[date, date]]:
    """[2024-01-01, 2024-01-02, 2024-01-05] -> [(01-01, 01-02), (01-05, 01-05)]."""
    ranges: list[tuple[date, date]] = []
    for d in sorted(set(days)):
        if ranges and d == ranges[-1][1] + timedelta(days=1):
            ranges[-1] = (ranges[-1][0], d)
        else:
            ranges.append((d, d))
    return ranges


def partition_range_tags(first: date, last: date) -> dict[str, str]:
    return {
        ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
    }


@dg.sensor(
    jobs=[ingest_events_job, ingest_and_transform_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Watches the landing folder. New or changed event files request an ingest_events "
    "run per contiguous range of arrival days; other new or changed files request an "
    "ingest_and_transform run. The cursor holds each file's mtime and size.",
)
def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingZone) -> dg.SensorResult:
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    root = landing.root
    current: dict[str, str] = {}
    new_days: list[date] = []
    other_changed: list[str] = []
    changed: list[tuple[str, str]] = []
    for source in SOURCES.values():
        for path in source.files(root):
            rel = path.relative_to(root).as_posix()
            sig = current[rel] = _signature(path)
            if seen.get(rel) == sig:
                continue
            changed.append((rel, sig))
            if source.partitioned_by_day:
                new_days.append(received_date(path))
            else:
                other_changed.append(rel)

    keys = set(events_partitions.get_partition_keys(dynamic_partitions_store=context.instance))
    outside = sorted({d for d in new_days if d.isoformat() not in keys})
    if outside:
        context.log.warning(
            f"event files for days outside the partitions, not requested: {outside[:5]}"
        )
    # Run keys name the exact file versions, so a re-evaluated tick never requests twice.
    digest = hashlib.sha256(json.dumps(sorted(changed)).encode()).hexdigest()[:16]
    runs = [
        dg.RunRequest(
            job_name=ingest_events_job.name,
            run_key=f"events:{first}..{last}:{digest}",
            tags=partition_range_tags(first, last),
        )
        for first, last in contiguous_ranges([d for d in new_days if d.isoformat() in keys])
    ]
    if other_changed and not runs:
        # With events requested, the transform that follows them loads the changed sources too.
        runs.append(
            dg.RunRequest(job_name=ingest_and_transform_job.name, run_key=f"sources:{digest}")
        )
    cursor = json.dumps(current, sort_keys=True)
    if not runs:
        return dg.SensorResult(
            skip_reason=dg.SkipReason("no new or changed landing files"), cursor=cursor
        )
    context.log.info(
        f"{len(new_days)} new event files, {len(other_changed)} other files: {len(runs)} run(s)"
    )
    return dg.SensorResult(run_requests=runs, cursor=cursor)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[ingest_events_job],
    request_job=ingest_and_transform_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When events have landed and passed their gate, rebuild the models and marts that read them.",
)
def transform_after_events(context: dg.RunStatusSensorContext):
    return dg.RunRequest(run_key=f"after:{context.dagster_run.run_id}")
