"""The simulator's landing files against its truth.json: determinism, truth and injected dirt."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from models.simulation.config import CHANNEL_PLATFORM
from models.simulation.generator import LANDING_DIR, TRUTH_FILE


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _csv_rows(paths) -> list[dict[str, str]]:
    rows = []
    for p in sorted(paths):
        with p.open(newline="") as fh:
            rows.extend(csv.DictReader(fh))
    return rows


def _event_lines(landing: Path):
    """(folder date, line) for every line of every events file."""
    for p in sorted((landing / "events").glob("date=*/events.jsonl")):
        day = date.fromisoformat(p.parent.name.removeprefix("date="))
        for line in p.read_text().splitlines():
            yield day, line


def _parsed_events(landing: Path):
    out = []
    for day, line in _event_lines(landing):
        try:
            out.append((day, line, json.loads(line)))
        except json.JSONDecodeError:
            continue
    return out


def _fx(landing: Path) -> dict[tuple[str, str], float]:
    return {
        (r["date"], r["currency"]): float(r["usd_per_unit"])
        for r in _csv_rows([landing / "fx" / "fx_rates.csv"])
    }


# --- determinism --------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(sim, sim_same_seed):
    a, b = _files(sim.out_dir), _files(sim_same_seed.out_dir)
    assert sorted(a) == sorted(b)
    assert TRUTH_FILE in a
    assert any(k.startswith(f"{LANDING_DIR}/events/") for k in a)
    different = [k for k in a if a[k] != b[k]]
    assert different == []
    assert sim.truth == sim_same_seed.truth


def test_other_seed_gives_other_data(sim, sim_other_seed):
    a, b = _files(sim.out_dir), _files(sim_other_seed.out_dir)
    for name in ("landing/crm/orders_2024-01.csv", "landing/fx/fx_rates.csv"):
        assert a[name] != b[name]
    a_events = b"".join(v for k, v in a.items() if "/events/" in k)
    b_events = b"".join(v for k, v in b.items() if "/events/" in k)
    assert a_events != b_events
    assert sim.truth["channels"] != sim_other_seed.truth["channels"]
    assert sim.truth["config"]["seed"] != sim_other_seed.truth["config"]["seed"]


def test_truth_file_is_the_returned_truth(sim):
    assert json.loads(sim.truth_path.read_text()) == json.loads(json.dumps(sim.truth, default=str))


# --- truth --------------------------------------------------------------------------------------


def test_true_roas_is_the_configured_roas(sim, sim_config):
    for ch in sim_config.channels:
        t = sim.truth["channels"][ch]
        want = sim_config.channel_truth[ch].roas
        assert t["true_roas"] == pytest.approx(want, rel=1e-6), ch
        assert t["true_contribution"] / t["spend_usd"] == pytest.approx(want, rel=1e-6), ch


def test_channels_carry_their_platform_and_true_parameters(sim, sim_config):
    assert set(sim.truth["channels"]) == set(sim_config.channels)
    for ch, t in sim.truth["channels"].items():
        assert t["platform"] == CHANNEL_PLATFORM[ch]
        assert t["adstock"]["alpha"] == sim_config.channel_truth[ch].adstock_alpha
        assert t["saturation"]["lambda"] == sim_config.channel_truth[ch].saturation_lambda
        assert t["spend_usd"] > 0
        assert t["saturation"]["beta"] > 0


def test_experiment_truth_is_a_positive_lift(sim, sim_config):
    (exp,) = sim.truth["experiments"]
    plan = sim_config.experiments[0]
    assert exp["channel"] == plan.channel
    assert len(exp["treatment_geos"]) == plan.n_treatment_geos
    assert set(exp["treatment_geos"]).isdisjoint(exp["control_geos"])
    assert set(exp["treatment_geos"]) | set(exp["control_geos"]) == set(sim_config.geo_codes)
    assert exp["start_date"] == "2024-01-29"  # week 4 of a series starting Monday 2024-01-01
    assert exp["end_date"] == "2024-02-25"
    assert exp["true_counterfactual_revenue"] > 0
    assert exp["true_incremental_revenue"] > 0
    assert exp["true_lift_pct"] > 0
    assert exp["true_lift_pct"] == pytest.approx(
        exp["true_incremental_revenue"] / exp["true_counterfactual_revenue"]
    )


def test_experiment_reference_file_matches_truth(sim):
    (row,) = _csv_rows([sim.landing_dir / "reference" / "experiments.csv"])
    (exp,) = sim.truth["experiments"]
    assert row["experiment_id"] == exp["experiment_id"]
    assert row["treatment_geos"].split(";") == exp["treatment_geos"]
    assert (row["start_date"], row["end_date"]) == (exp["start_date"], exp["end_date"])


def test_holdout_geos_report_no_spend_for_the_channel(sim):
    (exp,) = sim.truth["experiments"]
    doc_rows = []
    for p in sorted((sim.landing_dir / "meta_ads").glob("*.json")):
        doc_rows.extend(json.loads(p.read_text())["data"])
    in_window = [
        r
        for r in doc_rows
        if exp["start_date"] <= r["date_start"] <= exp["end_date"]
        and r["region"] in exp["treatment_geos"]
    ]
    assert in_window == []
    assert any(r["region"] in exp["control_geos"] for r in doc_rows)


# --- dirt in the event files --------------------------------------------------------------------


def test_event_line_total_matches_truth(sim):
    dirt = sim.truth["dirt"]["tracking_events"]
    lines = list(_event_lines(sim.landing_dir))
    assert len(lines) == dirt["lines_total"]


def test_malformed_line_count_matches_truth(sim):
    dirt = sim.truth["dirt"]["tracking_events"]
    bad = 0
    for _, line in _event_lines(sim.landing_dir):
        try:
            json.loads(line)
        except json.JSONDecodeError:
            bad += 1
    assert dirt["malformed_lines"] > 0
    assert bad == dirt["malformed_lines"]


def test_malformed_lines_are_cut_short_copies_of_delivered_events(sim):
    for p in sorted((sim.landing_dir / "events").glob("date=*/events.jsonl")):
        good, bad = [], []
        for line in p.read_text().splitlines():
            try:
                json.loads(line)
                good.append(line)
            except json.JSONDecodeError:
                bad.append(line)
        for b in bad:
            assert any(g.startswith(b) for g in good), (p, b)


def test_duplicate_count_matches_truth(sim):
    dirt = sim.truth["dirt"]["tracking_events"]
    ids = Counter(rec["event_id"] for _, _, rec in _parsed_events(sim.landing_dir))
    assert dirt["duplicate_lines"] > 0
    assert sum(n - 1 for n in ids.values()) == dirt["duplicate_lines"]
    assert len(ids) == dirt["events_written"] == sim.truth["counts"]["events_unique"]


def test_duplicates_are_byte_identical(sim):
    by_id: dict[str, set[str]] = {}
    for _, line, rec in _parsed_events(sim.landing_dir):
        by_id.setdefault(rec["event_id"], set()).add(line)
    assert all(len(lines) == 1 for lines in by_id.values())


def test_extra_field_count_matches_truth(sim):
    dirt = sim.truth["dirt"]["tracking_events"]
    with_extra = {
        rec["event_id"] for _, _, rec in _parsed_events(sim.landing_dir) if "sdk_debug" in rec
    }
    assert dirt["extra_field_events"] > 0
    assert len(with_extra) == dirt["extra_field_events"]


def test_late_event_count_matches_truth(sim):
    dirt = sim.truth["dirt"]["tracking_events"]
    late = set()
    for folder_day, _, rec in _parsed_events(sim.landing_dir):
        utc_day = datetime.fromisoformat(rec["event_ts"]).astimezone(UTC).date()
        if utc_day < folder_day:
            late.add(rec["event_id"])
    assert dirt["late_events"] > 0
    assert len(late) == dirt["late_events"]


def test_no_event_arrives_before_it_happened(sim, sim_config):
    for folder_day, _, rec in _parsed_events(sim.landing_dir):
        utc_day = datetime.fromisoformat(rec["event_ts"]).astimezone(UTC).date()
        assert utc_day <= folder_day or folder_day == sim_config.start_date


def test_every_day_has_an_events_file(sim, sim_config):
    folders = sorted((sim.landing_dir / "events").glob("date=*"))
    assert len(folders) == sim_config.days


def _completed_orders(landing: Path) -> list[dict[str, str]]:
    return [r for r in _csv_rows((landing / "crm").glob("*.csv")) if r["status"] == "completed"]


def _purchases(landing: Path) -> dict[str, dict]:
    return {
        rec["event_id"]: rec
        for _, _, rec in _parsed_events(landing)
        if rec["event_type"] == "purchase"
    }


def test_each_purchase_event_has_a_crm_order_at_the_same_moment(sim):
    """Tracked purchases are a sample of CRM orders: same instant, geo, currency and amount."""
    by_moment = {}
    for r in _completed_orders(sim.landing_dir):
        by_moment.setdefault(datetime.fromisoformat(r["ordered_at"]), []).append(r)
    purchases = _purchases(sim.landing_dir)
    assert purchases
    for rec in purchases.values():
        candidates = by_moment[datetime.fromisoformat(rec["event_ts"])]
        assert any(
            (o["currency"], o["geo"]) == (rec["currency"], rec["geo"])
            and float(o["order_total"]) == pytest.approx(rec["revenue"])
            for o in candidates
        )


def test_purchase_events_carry_the_matching_crm_order(sim):
    """A tracked purchase names its CRM order: same amount, currency, geo and moment."""
    orders = {r["order_id"]: r for r in _completed_orders(sim.landing_dir)}
    purchases = _purchases(sim.landing_dir)
    assert purchases
    for rec in purchases.values():
        order = orders[rec["order_id"]]
        assert (rec["currency"], rec["geo"]) == (order["currency"], order["geo"])
        assert rec["revenue"] == pytest.approx(float(order["order_total"]))
        assert datetime.fromisoformat(rec["event_ts"]) == datetime.fromisoformat(
            order["ordered_at"]
        )


# --- spend --------------------------------------------------------------------------------------


def _is_missing(value) -> bool:
    return value is None or value == ""


def _is_negative(value) -> bool:
    return not _is_missing(value) and str(value).startswith("-")


def test_reported_spend_reconstructs_truth(sim, sim_config):
    landing = sim.landing_dir
    fx = _fx(landing)
    campaign_channel = {
        r["campaign_id"]: r["channel"] for r in _csv_rows([landing / "reference" / "campaigns.csv"])
    }
    spend = dict.fromkeys(sim_config.channels, 0.0)
    for r in _csv_rows((landing / "google_ads").glob("*.csv")):
        v = r["metrics.cost_micros"]
        if _is_missing(v) or _is_negative(v):
            continue
        spend[campaign_channel[r["campaign.id"]]] += int(v) / 1e6
    for p in sorted((landing / "meta_ads").glob("*.json")):
        for r in json.loads(p.read_text())["data"]:
            v = r.get("spend")
            if _is_missing(v) or _is_negative(v):
                continue
            assert r["account_currency"] == sim_config.meta_account_currency
            spend[campaign_channel[r["campaign_id"]]] += float(v) * fx[(r["date_start"], "EUR")]
    for r in _csv_rows((landing / "offline_media").glob("*.csv")):
        v = r["spend"]
        if _is_missing(v) or _is_negative(v):
            continue
        assert r["currency"] == "USD"
        spend[r["channel"]] += float(v)
    for ch in sim_config.channels:
        want = sim.truth["channels"][ch]["spend_reported_usd"]
        assert spend[ch] == pytest.approx(want, rel=1e-9), ch


def test_usd_platforms_report_the_true_spend(sim, sim_config):
    for ch in sim_config.channels:
        t = sim.truth["channels"][ch]
        if CHANNEL_PLATFORM[ch] == "meta":
            # Converted to EUR strings of 2 decimals and back: close, not equal.
            assert t["spend_reported_usd"] == pytest.approx(t["spend_usd"], rel=1e-3)
        else:
            assert t["spend_reported_usd"] == pytest.approx(t["spend_usd"], rel=1e-9), ch


def test_spend_dirt_counts_match_truth(sim):
    landing = sim.landing_dir
    dirt = sim.truth["dirt"]
    google = [r["metrics.cost_micros"] for r in _csv_rows((landing / "google_ads").glob("*.csv"))]
    meta = [
        r.get("spend")
        for p in sorted((landing / "meta_ads").glob("*.json"))
        for r in json.loads(p.read_text())["data"]
    ]
    offline = [r["spend"] for r in _csv_rows((landing / "offline_media").glob("*.csv"))]
    for key, values in (("google_ads", google), ("meta_ads", meta), ("offline_media", offline)):
        assert sum(map(_is_negative, values)) == dirt[key]["negative_spend_rows"], key
        assert sum(map(_is_missing, values)) == dirt[key]["missing_spend_rows"], key
    assert dirt["google_ads"]["negative_spend_rows"] > 0
    assert dirt["google_ads"]["missing_spend_rows"] > 0


def test_meta_omits_missing_spend_rather_than_sending_null(sim):
    for p in sorted((sim.landing_dir / "meta_ads").glob("*.json")):
        for r in json.loads(p.read_text())["data"]:
            assert r.get("spend", "") is not None


def test_expected_quarantine_is_the_sum_of_injected_dirt(sim):
    dirt, expected = sim.truth["dirt"], sim.truth["expected_quarantine"]
    assert expected["tracking_events"] == dirt["tracking_events"]["malformed_lines"]
    for key in ("google_ads", "meta_ads", "offline_media"):
        assert expected[key] == dirt[key]["negative_spend_rows"] + dirt[key]["missing_spend_rows"]


def test_completed_revenue_in_usd_matches_crm_file(sim):
    fx = _fx(sim.landing_dir)
    total = 0.0
    n = 0
    for r in _csv_rows((sim.landing_dir / "crm").glob("*.csv")):
        if r["status"] != "completed":
            continue
        n += 1
        day = datetime.fromisoformat(r["ordered_at"]).astimezone(UTC).date().isoformat()
        total += float(r["order_total"]) * fx[(day, r["currency"])]
    assert n == sim.truth["counts"]["orders_completed"]
    assert total == pytest.approx(sim.truth["revenue_completed_reporting_usd"], rel=1e-9)
