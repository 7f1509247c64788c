"""The landing sensor: run requests for exactly the days new files touch, and its cursor."""

import json
import os
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from assets.resources import LandingZone
from orchestration.sensors import contiguous_ranges, landing_sensor


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def landing(tmp_path) -> Path:
    root = tmp_path / "landing"
    for day in ("2024-01-01", "2024-01-02", "2024-01-03", "2024-01-07"):
        _write(root / "events" / f"date={day}" / "events.jsonl", '{"event_id": "x"}\n')
    _write(root / "reference" / "campaigns.csv", "campaign_id,platform,channel\nc1,meta,social\n")
    return root


def _tick(landing: Path, cursor: str | None):
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(
            cursor=cursor, instance=instance, resources={"landing": LandingZone(path=str(landing))}
        )
        return landing_sensor.evaluate_tick(ctx)


def _ranges(data) -> list[tuple[str, str, str]]:
    return [
        (
            r.job_name,
            r.tags.get(ASSET_PARTITION_RANGE_START_TAG),
            r.tags.get(ASSET_PARTITION_RANGE_END_TAG),
        )
        for r in data.run_requests
    ]


def test_contiguous_ranges():
    from datetime import date

    d = date.fromisoformat
    assert contiguous_ranges(
        [d("2024-01-03"), d("2024-01-01"), d("2024-01-02"), d("2024-01-07")]
    ) == [
        (d("2024-01-01"), d("2024-01-03")),
        (d("2024-01-07"), d("2024-01-07")),
    ]
    assert contiguous_ranges([]) == []


def test_first_tick_requests_one_run_per_contiguous_range(landing):
    data = _tick(landing, None)
    assert sorted(_ranges(data)) == [
        ("ingest_events", "2024-01-01", "2024-01-03"),
        ("ingest_events", "2024-01-07", "2024-01-07"),
    ]
    cursor = json.loads(data.cursor)
    assert "events/date=2024-01-07/events.jsonl" in cursor and "reference/campaigns.csv" in cursor


def test_nothing_new_means_no_runs_and_a_stable_cursor(landing):
    first = _tick(landing, None)
    second = _tick(landing, first.cursor)
    assert second.run_requests == [] or second.run_requests is None
    assert second.skip_message and "no new" in second.skip_message
    assert json.loads(second.cursor) == json.loads(first.cursor)


def test_a_late_correction_requests_only_its_day(landing):
    first = _tick(landing, None)
    f = landing / "events" / "date=2024-01-02" / "events.jsonl"
    f.write_text('{"event_id": "x"}\n{"event_id": "y"}\n')
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    _write(landing / "events" / "date=2024-01-09" / "events.jsonl", '{"event_id": "z"}\n')
    data = _tick(landing, first.cursor)
    assert sorted(_ranges(data)) == [
        ("ingest_events", "2024-01-02", "2024-01-02"),
        ("ingest_events", "2024-01-09", "2024-01-09"),
    ]
    # The same file versions always give the same run keys: a re-evaluated tick is deduplicated.
    again = _tick(landing, first.cursor)
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in data.run_requests]


def test_only_a_reference_file_changed_requests_ingest_sources(landing):
    first = _tick(landing, None)
    _write(
        landing / "reference" / "campaigns.csv",
        "campaign_id,platform,channel\nc1,meta,social\nc2,meta,social\n",
    )
    data = _tick(landing, first.cursor)
    assert _ranges(data) == [("ingest_and_transform", None, None)]


def test_missing_landing_folder_says_what_to_do(tmp_path):
    with pytest.raises(Exception, match="adloop simulate"):
        _tick(tmp_path / "nope", None)


def test_landed_events_request_the_transform_job():
    from orchestration.sensors import transform_after_events

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [_noop], instance=instance
        )  # any finished run stands in for ingest_events
        ctx = dg.build_run_status_sensor_context(
            sensor_name=transform_after_events.name,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=result.get_run_success_event(),
        )
        request = transform_after_events(ctx)
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == f"after:{result.run_id}"
    assert transform_after_events.job_name == "ingest_and_transform"


@dg.asset
def _noop() -> None:
    return None
