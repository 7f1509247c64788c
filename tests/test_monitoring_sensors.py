"""The spend-anomaly sensor: a spike beyond the stop-loss rule requests one actuation run that
pauses that budget; normal pacing requests nothing; the cursor keeps a trigger from firing twice."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import duckdb
import pandas as pd

from assets.resources import Warehouse
from models.policy import load_actuation_policy
from orchestration.monitoring_sensors import build_spend_anomaly_sensor, stop_loss_triggers

WEEK = date(2026, 1, 5)


def _budgets() -> pd.DataFrame:
    rows = []
    for phase, usd in (("before", 100.0), ("after", 120.0)):
        for geo in ("US-CA", "US-TX"):
            rows.append({
                "created_for": WEEK, "phase": phase, "run_id": "r", "target_key": f"google_ads:1:{geo}",
                "channel": "search", "geo": geo, "amount": int(usd * 1e6), "status": "ENABLED",
                "usd_per_day": usd,
            })  # fmt: skip
    return pd.DataFrame(rows)


def _spend(ca_daily: float) -> pd.DataFrame:
    days = [WEEK + timedelta(days=d) for d in range(3)]
    return pd.DataFrame(
        [{"channel": "search", "geo": "US-CA", "date_day": d, "spend_usd": ca_daily} for d in days]
        + [{"channel": "search", "geo": "US-TX", "date_day": d, "spend_usd": 121.0} for d in days]
        + [
            {
                "channel": "search",
                "geo": "US-CA",
                "date_day": WEEK - timedelta(days=1),
                "spend_usd": 9e9,
            }
        ]
    )


def test_a_spend_spike_beyond_the_rule_triggers_the_policy_action():
    policy = load_actuation_policy()
    overspend = next(r for r in policy.stop_loss if r.metric == "spend_pace")
    spike = 120.0 * (1 + overspend.threshold) * 1.1
    triggers = stop_loss_triggers(_budgets(), _spend(spike), policy)
    assert [(t["target_key"], t["rule_id"], t["action"]) for t in triggers] == [
        ("google_ads:1:US-CA", overspend.id, overspend.action)
    ]
    # Pacing within the tolerance, and spend before the budget was set, trigger nothing.
    assert (
        stop_loss_triggers(_budgets(), _spend(120.0 * (1 + overspend.threshold) * 0.9), policy)
        == []
    )


def test_the_sensor_requests_one_stop_loss_run_per_anomaly(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.register("budgets", _budgets())
        conn.register("spend", _spend(500.0))
        for schema in ("decisions", "marts"):
            conn.execute(f"create schema {schema}")
        conn.execute("create table decisions.platform_budgets as select * from budgets")
        conn.execute("create table marts.mart_channel_geo_daily as select * from spend")
    sensor = build_spend_anomaly_sensor("actuate")
    with dg.instance_for_test() as instance:

        def tick(cursor):
            ctx = dg.build_sensor_context(
                cursor=cursor, instance=instance, resources={"warehouse": Warehouse(path=str(path))}
            )
            return sensor.evaluate_tick(ctx)

        first = tick(None)
        assert len(first.run_requests) == 1
        request = first.run_requests[0]
        (trigger,) = request.run_config["ops"]["decisions__actuation_results"]["config"][
            "stop_loss"
        ]
        assert trigger["target_key"] == "google_ads:1:US-CA" and trigger["action"] == "pause"
        second = tick(first.cursor)
        assert second.run_requests == [] and "within" in (second.skip_message or "")
