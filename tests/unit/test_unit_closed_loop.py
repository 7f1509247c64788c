"""The closed loop: the simulator continues its market week by week from platform budgets."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

import models.simulation as simulation
from connectors.warehouse import connect
from models.budget import BudgetPolicy, optimize_budget
from models.ingestion.loader import load_files
from models.ingestion.sources import SOURCES
from models.simulation.closed_loop import (
    GOOGLE_BUDGET_ID0,
    META_ADSET_ID0,
    RECENT_WEEKS,
    ClosedLoopError,
    budget_targets,
    extend_simulation,
    load_market,
    load_market_state,
    true_response_curves,
    true_weekly_contribution,
)
from models.simulation.config import DirtRates, SimulationConfig
from models.simulation.generator import MARKET_STATE_FILE, TRUTH_FILE, simulate

CONFIG = SimulationConfig(
    seed=5,
    weeks=10,
    geos=3,
    events=3_000,
    campaigns_per_channel=2,
    creatives_per_campaign=2,
    serving_log_impressions=2_000,
)
DIRTY = SimulationConfig(
    seed=6,
    weeks=6,
    geos=2,
    events=3_000,
    campaigns_per_channel=1,
    creatives_per_campaign=2,
    serving_log_impressions=500,
    dirt=DirtRates(malformed_lines=0.05, negative_spend_rows=0.05, missing_spend_rows=0.05),
)


def _quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def base_sim(tmp_path_factory) -> Path:
    """The simulated history; tests extend copies of it."""
    out = tmp_path_factory.mktemp("closed_loop_base")
    simulate(CONFIG, out, log=_quiet)
    return out


@pytest.fixture
def sim_dir(base_sim, tmp_path) -> Path:
    return Path(shutil.copytree(base_sim, tmp_path / "sim"))


def _copy(base: Path, dest: Path) -> Path:
    return Path(shutil.copytree(base, dest))


def _files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _changed(budgets: list[dict], **changes) -> list[dict]:
    """Budgets with `changes` {'channel|geo': factor or 'PAUSED'} applied."""
    out = []
    for b in budgets:
        b = dict(b)
        change = changes.get(f"{b['channel']}|{b['geo']}", changes.get(b["channel"]))
        if change == "PAUSED":
            b["status"] = "PAUSED"
        elif change is not None:
            step = 10_000 if b["platform"] == "google_ads" else 1
            b["amount"] = round(b["amount"] * change / step) * step
        out.append(b)
    return out


def _rows(paths) -> list[dict]:
    rows = []
    for p in paths:
        with open(p, newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


def _campaign_channel(landing: Path) -> dict[str, str]:
    return {r["campaign_id"]: r["channel"] for r in _rows([landing / "reference/campaigns.csv"])}


def _week_spend(landing: Path, tag: str) -> dict[tuple[str, str], float]:
    """Clean spend per (channel, geo) in the week's files, in each file's own currency."""
    channel = _campaign_channel(landing)
    out: dict[tuple[str, str], float] = defaultdict(float)
    google = landing / f"google_ads/ad_performance_{tag}.csv"
    for r in _rows([google] if google.exists() else []):
        if r["metrics.cost_micros"] and int(r["metrics.cost_micros"]) > 0:
            key = (channel[r["campaign.id"]], r["segments.geo_target_region"])
            out[key] += int(r["metrics.cost_micros"])
    meta = landing / f"meta_ads/insights_{tag}.json"
    for r in json.loads(meta.read_text())["data"] if meta.exists() else []:
        if "spend" in r and not r["spend"].startswith("-"):
            out[(channel[r["campaign_id"]], r["region"])] += round(float(r["spend"]) * 100)
    for r in _rows([landing / f"offline_media/spend_{tag}.csv"]):
        if r["spend"] and not r["spend"].startswith("-"):
            out[(r["channel"], r["geo"])] += round(float(r["spend"]) * 100)
    return dict(out)


# --- budget targets ----------------------------------------------------------------------------


def test_budget_targets_are_the_sandbox_seed(base_sim):
    targets = budget_targets(base_sim)
    state = load_market_state(base_sim)
    geos = CONFIG.geo_codes
    assert [(t["channel"], t["geo"]) for t in targets] == [
        (ch, g) for ch in ("search", "social", "display", "video") for g in geos
    ]
    google = [t for t in targets if t["platform"] == "google_ads"]
    meta = [t for t in targets if t["platform"] == "meta"]
    assert [t["target_id"] for t in google] == [str(GOOGLE_BUDGET_ID0 + i) for i in range(9)]
    assert [t["target_id"] for t in meta] == [str(META_ADSET_ID0 + i) for i in range(3)]
    assert {t["account_id"] for t in google} == {"4815162342"}
    assert {t["account_id"] for t in meta} == {"1029384756"}
    assert {t["currency"] for t in google} == {"USD"}
    assert {t["currency"] for t in meta} == {CONFIG.meta_account_currency}
    assert targets[0]["name"] == f"Search | {geos[0]}"
    assert {t["status"] for t in targets} == {"ENABLED"}
    assert set(targets[0]) == {"platform", "account_id", "target_id", "channel", "geo",
                               "currency", "name", "amount", "status"}  # fmt: skip
    recent = np.asarray(state["weekly_spend_usd"])[-RECENT_WEEKS:].mean(axis=0)
    eur = state["fx_last"]["EUR"]
    for t in targets:
        assert isinstance(t["amount"], int)
        usd = recent[geos.index(t["geo"]), CONFIG.channels.index(t["channel"])] / 7
        if t["platform"] == "google_ads":
            assert t["amount"] % 10_000 == 0
            assert t["amount"] / 1e6 == pytest.approx(usd, abs=0.005)
        else:
            assert t["amount"] / 100 == pytest.approx(usd / eur, abs=0.005)
    assert budget_targets(base_sim / TRUTH_FILE) == targets  # truth.json's path works too
    with pytest.raises(ClosedLoopError, match="spend history"):
        budget_targets(json.loads((base_sim / TRUTH_FILE).read_text()))


def test_package_exports_the_closed_loop():
    assert simulation.extend_simulation is extend_simulation
    assert simulation.budget_targets is budget_targets
    assert simulation.simulate is simulate
    assert {"WeekResult", "true_response_curves", "true_weekly_contribution"} <= set(
        simulation.__all__
    )


# --- one week from the budgets ------------------------------------------------------------------


def test_budgets_set_the_week_spend_exactly(sim_dir):
    budgets = _changed(budget_targets(sim_dir), search=2.0, display=0.5, **{"social|US-TX": 1.7})
    state = load_market_state(sim_dir)
    result = extend_simulation(sim_dir, budgets, log=_quiet)
    start = CONFIG.start_date + timedelta(weeks=CONFIG.weeks)
    assert result.created and result.week_index == CONFIG.weeks and result.week_start == start
    assert result.days == tuple(start + timedelta(days=d) for d in range(7))
    landing = sim_dir / "landing"
    got = _week_spend(landing, f"week_{start}")
    for b in budgets:
        key = (b["channel"], b["geo"])
        if b["platform"] == "google_ads":
            assert got.get(key, 0) == 7 * b["amount"]  # micros, exactly
            assert result.spend_usd[b["channel"]][b["geo"]] == pytest.approx(
                7 * b["amount"] / 1e6, abs=1e-6
            )
        else:
            assert got.get(key, 0) == 7 * b["amount"]  # EUR cents, exactly
            fx = [r for r in _rows([landing / f"fx/fx_rates_week_{start}.csv"])]
            eur = np.array([float(r["usd_per_unit"]) for r in fx if r["currency"] == "EUR"])
            usd = result.truth["spend_reported_usd"][b["channel"]][b["geo"]]
            assert eur.min() * 7 * b["amount"] / 100 <= usd + 0.01
            assert usd <= eur.max() * 7 * b["amount"] / 100 + 0.01
            assert result.spend_usd["social"][b["geo"]] == pytest.approx(usd, abs=0.05)
    # Offline media keep the mean of the last weeks, to the cent.
    recent = np.asarray(state["weekly_spend_usd"])[-RECENT_WEEKS:].mean(axis=0)
    for ch in ("tv", "email"):
        for g, geo in enumerate(CONFIG.geo_codes):
            cents = round(recent[g, CONFIG.channels.index(ch)] * 100)
            assert got.get((ch, geo), 0) == cents
            assert result.spend_usd[ch][geo] == pytest.approx(cents / 100, abs=1e-9)


def test_paused_budgets_spend_nothing(sim_dir):
    budgets = _changed(budget_targets(sim_dir), social="PAUSED", **{"search|US-TX": "PAUSED"})
    result = extend_simulation(sim_dir, budgets, log=_quiet)
    tag = f"week_{result.week_start}"
    got = _week_spend(sim_dir / "landing", tag)
    assert got.get(("search", "US-TX"), 0) == 0
    assert got[("search", "US-CA")] > 0
    assert all(got.get(("social", g), 0) == 0 for g in CONFIG.geo_codes)
    assert not (sim_dir / "landing" / f"meta_ads/insights_{tag}.json").exists()
    assert result.spend_usd["search"]["US-TX"] == 0
    assert all(v == 0 for v in result.spend_usd["social"].values())
    # Clicks follow the week's spend: nobody clicks an ad of a channel that bought nothing.
    social_campaigns = {
        c for c, ch in _campaign_channel(sim_dir / "landing").items() if ch == "social"
    }
    for day in result.days:
        for line in (
            (sim_dir / "landing" / f"events/date={day}/events.jsonl").read_text().splitlines()
        ):
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            assert event["campaign_id"] not in social_campaigns


def test_same_budgets_give_byte_identical_weeks(base_sim, tmp_path):
    budgets = _changed(budget_targets(base_sim), video=1.3)
    a, b = _copy(base_sim, tmp_path / "a"), _copy(base_sim, tmp_path / "b")
    for d in (a, b):
        extend_simulation(d, budgets, log=_quiet)
        extend_simulation(d, budgets, log=_quiet)
    assert _files(a) == _files(b)


def test_existing_files_stay_untouched(sim_dir):
    before = _files(sim_dir / "landing")
    result = extend_simulation(sim_dir, budget_targets(sim_dir), log=_quiet)
    after = _files(sim_dir / "landing")
    assert {k: after[k] for k in before} == before
    new = {f.relative_to(sim_dir / "landing").as_posix() for f in result.files}
    assert set(after) - set(before) == new
    tag = f"week_{result.week_start}"
    assert {f"google_ads/ad_performance_{tag}.csv", f"meta_ads/insights_{tag}.json",
            f"offline_media/spend_{tag}.csv", f"crm/orders_{tag}.csv",
            f"fx/fx_rates_{tag}.csv"} <= new  # fmt: skip
    assert {f"events/date={d}/events.jsonl" for d in result.days} <= new


def test_every_new_file_is_picked_up_by_a_source(sim_dir):
    result = extend_simulation(sim_dir, budget_targets(sim_dir), log=_quiet)
    landing = sim_dir / "landing"
    globbed = {p for s in SOURCES.values() for p in s.files(landing)}
    assert set(result.files) <= globbed


def test_ids_continue_without_collisions(sim_dir):
    extend_simulation(sim_dir, budget_targets(sim_dir), log=_quiet)
    extend_simulation(sim_dir, budget_targets(sim_dir), log=_quiet)
    landing = sim_dir / "landing"
    orders = [r["order_id"] for r in _rows(sorted((landing / "crm").glob("*.csv")))]
    assert len(orders) == len(set(orders))
    truth = json.loads((sim_dir / TRUTH_FILE).read_text())
    completed = [o for o in orders if not o.startswith("ORD-C")]
    assert len(completed) == truth["counts"]["orders_completed"]
    assert max(completed) == f"ORD-{truth['counts']['orders_completed']:08d}"
    event_ids, sessions = set(), defaultdict(set)
    for p in sorted((landing / "events").glob("date=*/events.jsonl")):
        for line in p.read_text().splitlines():
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue
            event_ids.add(e["event_id"])
            sessions[e["session_id"]].add(e["anonymous_id"])
    assert len(event_ids) == truth["counts"]["events_unique"]
    assert all(len(users) == 1 for users in sessions.values())


def test_adstock_carries_spend_over_into_later_weeks(base_sim, tmp_path):
    a, b = _copy(base_sim, tmp_path / "a"), _copy(base_sim, tmp_path / "b")
    budgets = budget_targets(base_sim)
    more_search = _changed(budgets, search=3.0)
    wa = extend_simulation(a, budgets, log=_quiet)
    wb = extend_simulation(b, more_search, log=_quiet)
    # Same week, same noise: revenue differs by exactly the response to search.
    assert wb.contribution["search"] > wa.contribution["search"]
    assert wb.expected_revenue - wa.expected_revenue == pytest.approx(
        wb.contribution["search"] - wa.contribution["search"], rel=1e-9
    )
    for ch in ("social", "display", "video", "tv", "email"):
        assert wb.contribution[ch] == pytest.approx(wa.contribution[ch], rel=1e-12)
    # The next week with the same budgets in both: search still earns more where it spent more.
    na = extend_simulation(a, budgets, log=_quiet)
    nb = extend_simulation(b, budgets, log=_quiet)
    assert na.spend_usd == nb.spend_usd
    assert nb.contribution["search"] > na.contribution["search"]
    assert nb.contribution["search"] - na.contribution["search"] < (
        wb.contribution["search"] - wa.contribution["search"]
    )
    for ch in ("social", "display", "video", "tv", "email"):
        assert nb.contribution[ch] == pytest.approx(na.contribution[ch], rel=1e-12)
    # Orders follow revenue.
    orders_a = len(_rows([a / f"landing/crm/orders_week_{wa.week_start}.csv"]))
    orders_b = len(_rows([b / f"landing/crm/orders_week_{wb.week_start}.csv"]))
    assert orders_b > orders_a


def test_week_truth_is_the_market_on_the_spend_history(sim_dir):
    budgets = _changed(budget_targets(sim_dir), social=0.4, search=1.5)
    result = extend_simulation(sim_dir, budgets, log=_quiet)
    market = load_market(sim_dir)
    spend = market.planned_spend  # every week so far, the new one last
    assert spend.shape == (CONFIG.weeks + 1, CONFIG.geos, len(CONFIG.channels))
    response = market.response(spend)[-1]
    for c, ch in enumerate(CONFIG.channels):
        assert result.contribution[ch] == pytest.approx(response[:, c].sum(), rel=1e-9)
        for g, geo in enumerate(CONFIG.geo_codes):
            assert result.spend_usd[ch][geo] == spend[-1, g, c]
    expected = market.baseline[-1].sum() + response.sum()
    assert result.expected_revenue == pytest.approx(expected, rel=1e-12)
    # The baseline continues its trend and season: no jump from the history's last week.
    truth = json.loads((sim_dir / TRUTH_FILE).read_text())
    week = truth["closed_loop"]["weeks"][-1]
    assert week["baseline_revenue"] == pytest.approx(market.baseline[-1].sum())
    assert week["baseline_revenue"] == pytest.approx(market.baseline[-2].sum(), rel=0.05)
    realized = (market.baseline[-1] + response.sum(axis=1)) * market.noise[-1]
    assert week["realized_expected_revenue"] == pytest.approx(realized.sum(), rel=1e-12)
    # The state reproduces the history's truth too.
    W = CONFIG.weeks
    assert market.baseline[:W].sum() == pytest.approx(truth["baseline_revenue"], rel=1e-12)
    history = market.baseline[:W] + market.response(spend[:W]).sum(axis=2)
    assert history.sum() == pytest.approx(truth["expected_revenue"], rel=1e-12)


def test_truth_stays_cumulative_and_reconciles_with_the_files(base_sim, tmp_path):
    d = _copy(base_sim, tmp_path / "sim")
    before = json.loads((d / TRUTH_FILE).read_text())
    w1 = extend_simulation(d, _changed(budget_targets(d), search=1.2), log=_quiet)
    w2 = extend_simulation(d, _changed(budget_targets(d), video="PAUSED"), log=_quiet)
    truth = json.loads((d / TRUTH_FILE).read_text())
    weeks = truth["closed_loop"]["weeks"]
    assert [w["week_start"] for w in weeks] == [str(w1.week_start), str(w2.week_start)]
    for ch, t in truth["channels"].items():
        added = sum(w["channels_spend_reported_usd"][ch] for w in weeks)
        assert t["spend_reported_usd"] == pytest.approx(
            before["channels"][ch]["spend_reported_usd"] + added, rel=1e-12
        )
        per_geo = sum(sum(w["spend_reported_usd"][ch].values()) for w in weeks)
        assert added == pytest.approx(per_geo, rel=1e-9, abs=1e-6)
        assert t["true_roas"] == before["channels"][ch]["true_roas"]  # the history's truth
    for k in ("orders_completed", "orders_cancelled", "events_unique"):
        assert truth["counts"][k] == before["counts"][k] + sum(w["counts"][k] for w in weeks)
    assert truth["counts"]["days"] == before["counts"]["days"] + 14
    assert truth["counts"]["days"] == len(list((d / "landing/events").glob("date=*")))
    # USD platforms report what the truth says, file by file.
    landing = d / "landing"
    channel = _campaign_channel(landing)
    google = defaultdict(float)
    for r in _rows(sorted((landing / "google_ads").glob("*.csv"))):
        if r["metrics.cost_micros"] and int(r["metrics.cost_micros"]) > 0:
            google[channel[r["campaign.id"]]] += int(r["metrics.cost_micros"]) / 1e6
    for ch in ("search", "display", "video"):
        assert google[ch] == pytest.approx(truth["channels"][ch]["spend_reported_usd"], rel=1e-9)
    completed = sum(
        float(r["order_total"])
        for r in _rows([landing / f"crm/orders_week_{w1.week_start}.csv"])
        if r["status"] == "completed" and r["currency"] == "USD"
    )
    assert 0 < completed <= weeks[0]["revenue_completed_reporting_usd"]


# --- idempotency ---------------------------------------------------------------------------------


def test_re_extending_a_week_with_its_budgets_changes_nothing(sim_dir):
    budgets = _changed(budget_targets(sim_dir), display=1.4)
    first = extend_simulation(sim_dir, budgets, log=_quiet)
    files = _files(sim_dir)
    again = extend_simulation(sim_dir, budgets, week_start=first.week_start, log=_quiet)
    assert not again.created
    assert again.truth == first.truth
    assert again.files == first.files
    assert _files(sim_dir) == files
    # Naming the next week is the same as not naming it.
    nxt = extend_simulation(
        sim_dir, budgets, week_start=first.week_start + timedelta(weeks=1), log=_quiet
    )
    assert nxt.created and nxt.week_index == first.week_index + 1


def test_a_simulated_week_refuses_other_budgets(sim_dir):
    budgets = budget_targets(sim_dir)
    first = extend_simulation(sim_dir, budgets, log=_quiet)
    files = _files(sim_dir)
    with pytest.raises(ClosedLoopError, match="is history"):
        extend_simulation(
            sim_dir, _changed(budgets, search=1.1), week_start=first.week_start, log=_quiet
        )
    with pytest.raises(ClosedLoopError, match="simulated history"):
        extend_simulation(sim_dir, budgets, week_start=CONFIG.start_date, log=_quiet)
    with pytest.raises(ClosedLoopError, match="next week starts on"):
        extend_simulation(
            sim_dir, budgets, week_start=first.week_start + timedelta(weeks=3), log=_quiet
        )
    assert _files(sim_dir) == files


def test_budgets_must_cover_every_actuated_unit(sim_dir):
    budgets = budget_targets(sim_dir)
    files = _files(sim_dir)
    with pytest.raises(ClosedLoopError, match="no budget for display in US-TX"):
        extend_simulation(
            sim_dir,
            [b for b in budgets if (b["channel"], b["geo"]) != ("display", "US-TX")],
            log=_quiet,
        )
    bad = [
        ([*budgets, dict(budgets[0])], "two budgets for search in US-CA"),
        ([*budgets, {**budgets[0], "channel": "tv"}], "not a budget this market actuates"),
        ([{**budgets[0], "currency": "EUR"}, *budgets[1:]], "account currency is USD"),
        ([{**budgets[0], "amount": -1}, *budgets[1:]], "whole number"),
        ([{**budgets[0], "amount": 1.5}, *budgets[1:]], "whole number"),
        ([{**budgets[0], "status": "REMOVED"}, *budgets[1:]], "ENABLED or PAUSED"),
        ([{**budgets[0], "platform": "meta"}, *budgets[1:]], "expected 'google_ads'"),
    ]
    for case, message in bad:
        with pytest.raises(ClosedLoopError, match=message):
            extend_simulation(sim_dir, case, log=_quiet)
    assert _files(sim_dir) == files


def test_a_simulation_without_market_state_is_refused(sim_dir):
    (sim_dir / MARKET_STATE_FILE).unlink()
    with pytest.raises(ClosedLoopError, match="simulate again"):
        budget_targets(sim_dir)


# --- dirt ----------------------------------------------------------------------------------------


def test_injected_dirt_of_the_week_is_what_the_loader_quarantines(tmp_path):
    d = tmp_path / "dirty"
    simulate(DIRTY, d, log=_quiet)
    result = extend_simulation(d, _changed(budget_targets(d), search=1.5), log=_quiet)
    week = result.truth["expected_quarantine"]
    assert week["tracking_events"] > 0 and week["google_ads"] + week["offline_media"] > 0
    truth = json.loads((d / TRUTH_FILE).read_text())
    landing = d / "landing"
    with connect(tmp_path / "wh.duckdb") as conn:
        for source in SOURCES.values():
            load_files(conn, source, source.files(landing), landing)
        got = dict(
            conn.execute(
                "select source, count(*) from quarantine.rejected_rows group by 1"
            ).fetchall()
        )
        (raw,) = conn.execute("select count(*) from raw.tracking_events").fetchone()
    assert got == {k: v for k, v in truth["expected_quarantine"].items() if v}
    events = truth["dirt"]["tracking_events"]
    assert raw == events["events_written"] + events["duplicate_lines"]


# --- truth for decisions -------------------------------------------------------------------------


def test_true_curves_match_the_market_at_steady_state(base_sim):
    curves = true_response_curves(base_sim)
    market = load_market(base_sim)
    G, C = CONFIG.geos, len(CONFIG.channels)
    assert curves.n_draws == 1 and curves.n_units == G * C
    assert curves.units[0] == f"search|{CONFIG.geo_codes[0]}"
    rng = np.random.default_rng(0)
    for level in (0.3, 1.0, 4.0):
        weekly = rng.uniform(0.5, 1.5, (G, C)) * level * market.kappa[None, :] / 4
        steady = market.response(np.repeat(weekly[None], 12, axis=0))[-1]  # [G, C]
        spend = np.array([weekly[CONFIG.geo_codes.index(g), CONFIG.channels.index(c)]
                          for c, g in zip(curves.channel, curves.geo, strict=True)])  # fmt: skip
        want = np.array([steady[CONFIG.geo_codes.index(g), CONFIG.channels.index(c)]
                         for c, g in zip(curves.channel, curves.geo, strict=True)])  # fmt: skip
        np.testing.assert_allclose(curves.contribution(spend)[0], want, rtol=1e-9)
        plan = {(c, g): s for c, g, s in zip(curves.channel, curves.geo, spend, strict=True)}
        assert true_weekly_contribution(base_sim, plan) == pytest.approx(want.sum(), rel=1e-9)
    assert true_response_curves(base_sim / TRUTH_FILE, channels=["tv"]).n_units == G
    with pytest.raises(ClosedLoopError, match="unknown unit"):
        true_weekly_contribution(base_sim, {"radio|US-CA": 1.0})


def test_the_optimizer_finds_the_true_optimum_on_the_true_curves(base_sim):
    truth = json.loads((base_sim / TRUTH_FILE).read_text())
    curves = true_response_curves(truth)
    recent = np.asarray(load_market_state(base_sim)["weekly_spend_usd"])[-RECENT_WEEKS:].mean(0)
    current = np.array([recent[CONFIG.geo_codes.index(g), CONFIG.channels.index(c)] + 100.0
                        for c, g in zip(curves.channel, curves.geo, strict=True)])  # fmt: skip
    plan = optimize_budget(
        curves, current, BudgetPolicy(version="test", max_change_per_period=None)
    )
    proposed = plan.table["proposed_spend"].to_numpy()
    assert proposed.sum() == pytest.approx(current.sum(), rel=1e-6)
    value = {u: s for u, s in zip(curves.units, proposed, strict=True)}
    now = {u: s for u, s in zip(curves.units, current, strict=True)}
    assert true_weekly_contribution(truth, value) >= true_weekly_contribution(truth, now)
    assert true_weekly_contribution(truth, value) == pytest.approx(
        plan.expected_contribution_proposed, rel=1e-9
    )


def test_history_simulation_writes_its_market_state(base_sim):
    state = load_market_state(base_sim)
    truth = json.loads((base_sim / TRUTH_FILE).read_text())
    assert "closed_loop" not in truth
    assert state["history_weeks"] == CONFIG.weeks and state["extensions"] == []
    assert SimulationConfig.from_dict(state["config"]) == CONFIG
    assert SimulationConfig.from_dict(truth["config"]) == CONFIG
    spend = np.asarray(state["weekly_spend_usd"])
    for c, ch in enumerate(CONFIG.channels):
        assert spend[:, :, c].sum() == pytest.approx(truth["channels"][ch]["spend_usd"], rel=1e-12)
        assert state["beta"][c] == truth["channels"][ch]["saturation"]["beta"]
    assert state["orders_completed"] == truth["counts"]["orders_completed"]
    assert date.fromisoformat(truth["config"]["start_date"]) == CONFIG.start_date
