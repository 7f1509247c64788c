"""The data-quality gate: a landing file corrupted beyond tolerance stops everything downstream."""

import json
import shutil

import duckdb
import pytest

from models.ingestion.sources import SOURCES, received_date
from tests.e2e.conftest import run_pipeline

pytestmark = pytest.mark.slow


def test_corrupt_events_block_staging_and_marts_and_say_why(simulated_market, tmp_path, env_paths):
    landing_src, _truth = simulated_market
    landing = tmp_path / "landing"
    shutil.copytree(landing_src, landing)
    files = SOURCES["tracking_events"].files(landing)
    victim = files[len(files) // 2]
    day = received_date(victim)
    lines = victim.read_text().splitlines()
    corrupted = []
    for i, line in enumerate(lines):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            corrupted.append(line)
            continue
        if (
            i % 2 == 0
        ):  # half the events get a type the tracker does not send: far beyond mostly=0.99
            event["event_type"] = "pageview_v0"
        corrupted.append(json.dumps(event))
    victim.write_text("\n".join(corrupted) + "\n")

    warehouse = tmp_path / "warehouse.duckdb"
    env_paths(warehouse, landing)
    run = run_pipeline(landing, day, day)

    assert not run.events.success
    assert run.transform is None  # the events run failed its gate: nothing downstream is requested
    evaluations = run.check_evaluations()
    gate = next(e for e in evaluations if e.check_name == "great_expectations_raw_events")
    assert not gate.passed
    summary = gate.metadata["summary"].value
    assert "expect_column_values_to_be_in_set(event_type)" in summary and "pageview_v0" in summary

    materialized = run.materialized()
    assert (
        "raw/tracking_events" in materialized
    )  # the bad data is in raw, visible, and went no further
    assert not any(k.split("/")[0] in ("staging", "intermediate", "marts") for k in materialized)
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        schemas = {
            r[0]
            for r in conn.execute(
                "select distinct table_schema from information_schema.tables"
            ).fetchall()
        }
    assert "marts" not in schemas
