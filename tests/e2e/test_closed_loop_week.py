"""End to end: a week the simulator generates from changed platform budgets goes through the
real foundation graph, every check passes, and the marts spend what the budgets said."""

import json

import duckdb
import pytest

from models.ingestion.sources import event_days
from models.simulation.closed_loop import budget_targets, extend_simulation
from models.simulation.generator import simulate
from tests.e2e.conftest import SMALL_MARKET, run_pipeline

pytestmark = pytest.mark.slow


def q(warehouse, sql, params=None):
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute(sql, params or []).fetchall()


def _failed(run) -> list[str]:
    return [
        f"{e.asset_key.to_user_string()}:{e.check_name}"
        for e in run.check_evaluations()
        if not e.passed
    ]


def test_a_closed_loop_week_lands_in_the_marts_as_budgeted(tmp_path, env_paths):
    sim = tmp_path / "market"
    simulate(SMALL_MARKET, sim, log=lambda _m: None)
    landing = sim / "landing"
    warehouse = tmp_path / "warehouse.duckdb"
    env_paths(warehouse, landing)
    history = run_pipeline(landing)
    assert history.success and _failed(history) == []

    budgets = []
    for b in budget_targets(sim):
        b = dict(b)
        if (b["channel"], b["geo"]) == ("search", "US-CA"):
            b["amount"] = b["amount"] * 2
        elif (b["channel"], b["geo"]) == ("social", "US-TX"):
            b["status"] = "PAUSED"
        elif b["channel"] == "display":
            b["amount"] = b["amount"] // 20_000 * 10_000  # halved, in whole cents
        elif b["channel"] == "social":
            b["amount"] = b["amount"] + 12_345  # EUR cents
        budgets.append(b)
    week = extend_simulation(sim, budgets, log=lambda _m: None)
    first, last = week.days[0], week.days[-1]
    assert event_days(landing)[-7:] == list(week.days)

    run = run_pipeline(landing, first, last)
    assert run.success
    assert _failed(run) == []
    assert len(run.check_evaluations()) > 50
    assert "marts/mart_channel_geo_daily" in run.materialized()

    got = {
        (ch, geo): (float(spend), float(usd))
        for ch, geo, spend, usd in q(
            warehouse,
            """select channel, geo, sum(spend), sum(spend_usd) from intermediate.int_ad_spend__conformed
               where date_day between ? and ? group by 1, 2""",
            [first, last],
        )
    }
    mart = {
        (ch, geo): float(usd)
        for ch, geo, usd in q(
            warehouse,
            """select channel, geo, sum(spend_usd) from marts.mart_channel_geo_daily
               where date_day between ? and ? group by 1, 2""",
            [first, last],
        )
    }
    truth = week.truth
    for b in budgets:
        key = (b["channel"], b["geo"])
        spend, usd = got.get(key, (0.0, 0.0))
        want = 0 if b["status"] == "PAUSED" else 7 * b["amount"]
        # In the account's currency the week spends exactly the budget, to the cent.
        scale = 1e6 if b["platform"] == "google_ads" else 100
        assert spend == pytest.approx(want / scale, abs=1e-6), key
        assert mart.get(key, 0.0) == pytest.approx(usd, abs=1e-6), key
        assert usd == pytest.approx(truth["spend_reported_usd"][key[0]][key[1]], abs=0.01), key
    assert got.get(("social", "US-TX"), (0.0, 0.0)) == (0.0, 0.0)
    for ch in ("tv", "email"):
        for geo, usd in truth["spend_reported_usd"][ch].items():
            assert mart.get((ch, geo), 0.0) == pytest.approx(usd, abs=0.01)

    # The warehouse still reconciles with the cumulative truth: spend, revenue, quarantine.
    truth = json.loads((sim / "truth.json").read_text())
    week_truth = truth["closed_loop"]["weeks"][-1]
    assert week_truth["week_start"] == str(first)
    spend_by_channel = dict(
        q(warehouse, "select channel, sum(spend_usd) from marts.mart_channel_geo_daily group by 1")
    )
    for ch, t in truth["channels"].items():
        assert spend_by_channel[ch] == pytest.approx(t["spend_reported_usd"], rel=1e-9, abs=0.01)
    (revenue,) = q(warehouse, "select sum(revenue_usd) from marts.mart_geo_daily")[0]
    assert revenue == pytest.approx(truth["revenue_completed_reporting_usd"], rel=1e-9, abs=0.01)
    quarantined = dict(
        q(warehouse, "select source, count(*) from quarantine.rejected_rows group by 1")
    )
    assert quarantined == {k: v for k, v in truth["expected_quarantine"].items() if v}
    (staged,) = q(warehouse, "select count(*) from staging.stg_tracking__events")[0]
    assert staged == truth["counts"]["events_unique"]
    (weeks,) = q(
        warehouse,
        "select count(distinct week_start) from marts.mart_mmm_weekly_panel",
    )[0]
    assert weeks == SMALL_MARKET.weeks + 1
