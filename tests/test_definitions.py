"""Snapshot of the definitions: asset keys, checks, jobs, schedules and sensors.

Renames must be deliberate: regenerate with ADLOOP_UPDATE_SNAPSHOTS=1 and review the diff.
"""

import json
import os
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def current() -> dict:
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    return {
        "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
        "asset_checks": sorted(
            f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys
        ),
        "jobs": sorted(j.name for j in defs.jobs or []),
        "schedules": sorted(s.name for s in defs.schedules or []),
        "sensors": sorted(s.name for s in defs.sensors or []),
    }


def test_definitions_load():
    from orchestration.definitions import defs

    dg.Definitions.validate_loadable(defs)


def test_definitions_match_snapshot():
    snap = current()
    if os.environ.get("ADLOOP_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(snap, indent=2) + "\n")
    assert SNAPSHOT.exists(), "no snapshot yet: run with ADLOOP_UPDATE_SNAPSHOTS=1"
    assert snap == json.loads(SNAPSHOT.read_text())


def test_blocking_quality_gates_exist():
    snap = current()
    for check in (
        "raw/tracking_events:great_expectations_raw_events",
        "intermediate/int_ad_spend__conformed:great_expectations_conformed_spend",
        "marts/mart_mmm_weekly_panel:great_expectations_mmm_panel",
    ):
        assert check in snap["asset_checks"]
