"""The approvals sensor: run requests for new approvals, skips otherwise, and its seq cursor."""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg
import pytest

from assets.resources import Warehouse
from connectors.warehouse.decisions_store import DecisionsStore
from models.policy import (
    ActionProposal,
    evaluate,
    load_actuation_policy,
    proposal_row,
    sign_approval,
)
from orchestration.approval_sensors import (
    APPROVALS_SEQ_TAG,
    PROPOSALS_TAG,
    build_approvals_sensor,
)

TODAY = date(2026, 11, 10)
POLICY = load_actuation_policy()
KEY = b"0123456789abcdef-test-key"


def proposal(target: str, proposer: str = "budget_optimizer") -> ActionProposal:
    return ActionProposal(
        action_type="budget_change", platform="google_ads", account_id="acc-1", target_id=target,
        channel="search", current_value=1000.0, proposed_value=1150.0, unit="usd_per_day",
        proposer=proposer, created_for=TODAY,
    )  # fmt: skip


def approve(store: DecisionsStore, p: ActionProposal, who: str, decision: str = "approve", minute: int = 0):  # fmt: skip
    at = datetime(2026, 11, 10, 9, minute, tzinfo=UTC)
    a = sign_approval(p.proposal_hash, decision, who, KEY, signed_at=at)
    return store.append_approval(a.to_row())


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    store = DecisionsStore(path)
    props = [proposal("cmp-1"), proposal("cmp-2"), proposal("cmp-3", proposer="marketing-lead")]
    rows = [proposal_row(p, evaluate(p, POLICY, today=TODAY), source="test") for p in props]
    assert {r["verdict"] for r in rows} == {"needs_approval"}
    store.upsert_proposals(rows)
    return path, store, props


def tick(path, cursor):
    sensor = build_approvals_sensor("actuate")
    ctx = dg.build_sensor_context(cursor=cursor, resources={"warehouse": Warehouse(path=str(path))})
    return sensor.evaluate_tick(ctx)


def test_the_sensor_definition():
    sensor = build_approvals_sensor("actuate")
    assert isinstance(sensor, dg.SensorDefinition)
    assert sensor.name == "approvals_sensor" and sensor.job_name == "actuate"
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED


def test_new_approvals_request_one_run_then_the_cursor_holds(warehouse):
    path, store, (p1, p2, _) = warehouse
    approve(store, p1, "marketing-lead")
    approve(store, p2, "growth-analyst")

    first = tick(path, None)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.run_key == "approvals-through-seq-2" and first.cursor == "2"
    assert request.tags[APPROVALS_SEQ_TAG] == "2"
    assert request.tags[PROPOSALS_TAG] == ",".join(sorted([p1.proposal_hash[:12], p2.proposal_hash[:12]]))  # fmt: skip

    second = tick(path, first.cursor)
    assert not second.run_requests and second.cursor == "2"
    assert "no new approvals after seq 2" in second.skip_message

    approve(store, p1, "growth-analyst", minute=5)
    third = tick(path, second.cursor)
    assert [r.run_key for r in third.run_requests] == ["approvals-through-seq-3"]
    assert third.cursor == "3"


def test_rows_that_cannot_count_advance_the_cursor_without_a_run(warehouse):
    path, store, (p1, _, p3) = warehouse
    approve(store, p1, "growth-analyst", decision="reject")  # a rejection actuates nothing
    approve(store, p3, "marketing-lead")  # the proposer approving their own
    approve(store, p1, "search-manager")  # not an approver of budget changes
    data = tick(path, None)
    assert not data.run_requests and data.cursor == "3"
    assert "none an approve that could count" in data.skip_message


def test_an_empty_warehouse_skips(tmp_path):
    data = tick(tmp_path / "none.duckdb", None)
    assert not data.run_requests and data.cursor == "0"
