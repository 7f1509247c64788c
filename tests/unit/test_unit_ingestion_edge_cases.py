"""The raw loader on small hand-made landing files: contracts, quarantine and idempotence."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

from connectors.warehouse import connect
from models.ingestion.loader import file_hash, load_files
from models.ingestion.sources import SOURCES, event_files_for_days, received_date

GOOD_EVENT = {
    "event_id": "e-1",
    "event_type": "page_view",
    "event_ts": "2024-01-02T10:00:00-05:00",
    "anonymous_id": "a-1",
    "session_id": "s-1",
    "geo": "US-NY",
}
GOOGLE_HEADER = (
    "segments.date,customer.id,customer.currency_code,campaign.id,campaign.name,ad_group.id,"
    "ad_group_ad.ad.id,segments.geo_target_region,metrics.cost_micros,metrics.impressions,"
    "metrics.clicks,metrics.conversions,metrics.conversions_value"
)


def google_row(
    cost="1500000", date_="2024-01-01", impressions="100", clicks="3", name="Search | A"
):
    return f"{date_},4815162342,USD,2100,{name},21001,210010,US-CA,{cost},{impressions},{clicks},1.0,80.0"


def event(**changes) -> str:
    rec = {**GOOD_EVENT, **changes}
    return json.dumps({k: v for k, v in rec.items() if v is not ...})


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def landing(tmp_path) -> Path:
    return tmp_path / "landing"


@pytest.fixture
def conn():
    c = duckdb.connect()
    c.execute("set TimeZone = 'UTC'")
    yield c
    c.close()


def quarantine(conn, source_file=None):
    sql = "select source_file, line_number, original_text, reason from quarantine.rejected_rows"
    params = []
    if source_file:
        sql += " where source_file = ?"
        params = [source_file]
    return conn.execute(sql + " order by source_file, line_number", params).fetchall()


def load_events(conn, landing, *lines, day="2024-01-02", name="events.jsonl", **kwargs):
    f = write(landing / "events" / f"date={day}" / name, "\n".join(lines) + "\n")
    return f, load_files(conn, SOURCES["tracking_events"], [f], landing, **kwargs)


# --- JSON Lines ---------------------------------------------------------------------------------


def test_malformed_json_is_quarantined_with_exact_text_file_and_line(conn, landing):
    broken = '{"event_id": "e-2", "event_ty'
    _, report = load_events(conn, landing, event(), broken, event(event_id="e-3"))
    assert (report.lines_read, report.rows_loaded, report.rows_quarantined) == (3, 2, 1)
    rel = "events/date=2024-01-02/events.jsonl"
    assert quarantine(conn) == [(rel, 2, broken, "malformed JSON")]
    assert conn.execute("select source, run_id from quarantine.rejected_rows").fetchall() == [
        ("tracking_events", "manual")
    ]


def test_json_array_line_is_not_an_object(conn, landing):
    _, report = load_events(conn, landing, json.dumps([GOOD_EVENT]), "5", "null")
    assert report.rows_quarantined == 3
    assert [r[3] for r in quarantine(conn)] == ["JSON value is not an object"] * 3


def test_missing_required_field_names_the_column(conn, landing):
    _, report = load_events(conn, landing, event(session_id=...), event(geo="   "))
    assert report.rows_quarantined == 2
    reasons = [r[3] for r in quarantine(conn)]
    assert reasons == ["missing required field session_id", "missing required field geo"]


def test_bad_type_names_the_column(conn, landing):
    _, report = load_events(conn, landing, event(revenue="abc"))
    assert report.rows_loaded == 0
    (row,) = quarantine(conn)
    assert "revenue" in row[3]
    assert row[3].startswith("revenue is not a valid double")


def test_rules_are_checked(conn, landing):
    load_events(conn, landing, event(event_ts="yesterday"), event(event_id="e-2", revenue=-1))
    assert [r[3] for r in quarantine(conn)] == [
        "event_ts is not an ISO 8601 timestamp",
        "revenue is negative",
    ]


def test_several_missing_fields_are_all_named(conn, landing):
    load_events(conn, landing, event(event_id=..., anonymous_id=...))
    (row,) = quarantine(conn)
    assert "missing required field event_id" in row[3]
    assert "missing required field anonymous_id" in row[3]


def test_numbers_given_as_json_numbers_or_strings_load(conn, landing):
    _, report = load_events(
        conn, landing, event(revenue=12.5), event(event_id="e-2", revenue="7.25", currency="EUR")
    )
    assert report.rows_quarantined == 0
    got = conn.execute("select event_id, revenue from raw.tracking_events order by 1").fetchall()
    assert got == [("e-1", 12.5), ("e-2", 7.25)]


def test_unknown_fields_are_kept_in_extra_fields(conn, landing):
    extra = {"sdk_debug": {"build": "7.3.1", "queue": 2}, "beta_flag": True}
    line = json.dumps({**GOOD_EVENT, **extra})
    _, report = load_events(conn, landing, line, event(event_id="e-2"))
    assert report.rows_loaded == 2
    rows = dict(conn.execute("select event_id, extra_fields from raw.tracking_events").fetchall())
    assert json.loads(rows["e-1"]) == extra
    assert rows["e-2"] is None


def test_loaded_rows_keep_lineage(conn, landing):
    load_events(conn, landing, event(), event(event_id="e-2"), day="2024-01-05")
    got = conn.execute(
        "select event_id, _source_file, _line_number, _received_date, _loaded_at is not null "
        "from raw.tracking_events order by _line_number"
    ).fetchall()
    rel = "events/date=2024-01-05/events.jsonl"
    assert got == [
        ("e-1", rel, 1, date(2024, 1, 5), True),
        ("e-2", rel, 2, date(2024, 1, 5), True),
    ]


def test_empty_line_in_jsonl_is_accounted_for(conn, landing):
    _, report = load_events(conn, landing, event(), "", event(event_id="e-2"))
    assert report.lines_read == 3
    assert report.rows_loaded + report.rows_quarantined == 3
    assert [r[1] for r in quarantine(conn)] == [2]


def test_unknown_key_with_a_double_quote_does_not_break_the_load(conn, landing):
    line = json.dumps({**GOOD_EVENT, 'we"ird': 1})
    _, report = load_events(conn, landing, line)
    assert report.rows_loaded + report.rows_quarantined == 1
    if report.rows_loaded:
        (extra,) = conn.execute("select extra_fields from raw.tracking_events").fetchone()
        assert json.loads(extra) == {'we"ird': 1}


# --- idempotence and corrected deliveries -------------------------------------------------------


def test_reloading_the_same_file_is_a_no_op(conn, landing):
    f, first = load_events(conn, landing, event(), "{bad", event(event_id="e-2"), run_id="r1")
    assert first.files_loaded == 1
    _, second = load_events(conn, landing, event(), "{bad", event(event_id="e-2"), run_id="r2")
    assert (second.files_loaded, second.files_unchanged) == (0, 1)
    assert (second.lines_read, second.rows_loaded, second.rows_quarantined) == (0, 0, 0)
    assert conn.execute("select count(*) from raw.tracking_events").fetchone()[0] == 2
    assert len(quarantine(conn)) == 1
    manifest = conn.execute(
        "select source_file, content_hash, run_id, lines_read from raw.load_manifest"
    ).fetchall()
    assert manifest == [("events/date=2024-01-02/events.jsonl", file_hash(f), "r1", 3)]


def test_changed_file_replaces_its_rows(conn, landing):
    load_events(conn, landing, event(), event(event_id="e-2"), "{bad", run_id="r1")
    f, report = load_events(
        conn, landing, event(), event(event_id="e-3"), event(event_id="e-4"), "[]", run_id="r2"
    )
    (fr,) = report.files
    assert fr.status == "reloaded"
    assert (fr.lines_read, fr.rows_loaded, fr.rows_quarantined) == (4, 3, 1)
    ids = [
        r[0] for r in conn.execute("select event_id from raw.tracking_events order by 1").fetchall()
    ]
    assert ids == ["e-1", "e-3", "e-4"]
    assert [(r[1], r[3]) for r in quarantine(conn)] == [(4, "JSON value is not an object")]
    manifest = conn.execute(
        "select content_hash, run_id, lines_read, rows_loaded, rows_quarantined from raw.load_manifest"
    ).fetchall()
    assert manifest == [(file_hash(f), "r2", 4, 3, 1)]


def test_only_the_changed_file_is_reloaded(conn, landing):
    a = write(landing / "events/date=2024-01-02/events.jsonl", event() + "\n")
    b = write(landing / "events/date=2024-01-03/events.jsonl", event(event_id="e-2") + "\n")
    src = SOURCES["tracking_events"]
    load_files(conn, src, [a, b], landing)
    write(b, event(event_id="e-2") + "\n" + event(event_id="e-5") + "\n")
    report = load_files(conn, src, [a, b], landing)
    assert [f.status for f in report.files] == ["unchanged", "reloaded"]
    ids = [
        r[0] for r in conn.execute("select event_id from raw.tracking_events order by 1").fetchall()
    ]
    assert ids == ["e-1", "e-2", "e-5"]
    assert conn.execute("select count(*) from raw.load_manifest").fetchone()[0] == 2


def test_small_batches_give_the_same_result(landing, tmp_path):
    files = [
        write(
            landing / f"events/date=2024-01-0{d}/events.jsonl",
            "\n".join([event(event_id=f"e-{d}-{i}") for i in range(3)] + ["{oops"]) + "\n",
        )
        for d in (1, 2, 3)
    ]
    results = []
    for batch_lines in (1, 10_000):
        c = duckdb.connect()
        r = load_files(c, SOURCES["tracking_events"], files, landing, batch_lines=batch_lines)
        rows = c.execute(
            "select event_id, _source_file, _line_number from raw.tracking_events order by all"
        ).fetchall()
        q = c.execute(
            "select source_file, line_number, reason from quarantine.rejected_rows order by all"
        ).fetchall()
        results.append((r.rows_loaded, r.rows_quarantined, rows, q))
        c.close()
    assert results[0] == results[1]
    assert results[0][:2] == (9, 3)


def test_loads_into_a_warehouse_file(tmp_path, landing):
    f = write(landing / "events/date=2024-01-02/events.jsonl", event() + "\n")
    db = tmp_path / "wh" / "warehouse.duckdb"
    with connect(db) as c:
        load_files(c, SOURCES["tracking_events"], [f], landing)
    with connect(db, read_only=True) as c:
        assert c.execute("select count(*) from raw.tracking_events").fetchone()[0] == 1
    with connect(db) as c:
        report = load_files(c, SOURCES["tracking_events"], [f], landing)
    assert report.files_unchanged == 1


# --- CSV ----------------------------------------------------------------------------------------


def load_google(conn, landing, *lines, header=GOOGLE_HEADER, name="ad_performance_2024-01.csv"):
    f = write(landing / "google_ads" / name, "\n".join([header, *lines]) + "\n")
    return load_files(conn, SOURCES["google_ads"], [f], landing)


def test_csv_good_rows_are_typed(conn, landing):
    report = load_google(conn, landing, google_row(), google_row(cost="0", name='"Search, quoted"'))
    assert (report.rows_loaded, report.rows_quarantined) == (2, 0)
    got = conn.execute(
        "select segments_date, campaign_name, metrics_cost_micros, _line_number "
        "from raw.google_ads_ad_performance order by _line_number"
    ).fetchall()
    assert got == [
        (date(2024, 1, 1), "Search | A", 1_500_000, 2),
        (date(2024, 1, 1), "Search, quoted", 0, 3),
    ]


def test_csv_wrong_field_count_and_empty_lines(conn, landing):
    short = "2024-01-01,4815162342,USD,2100"
    report = load_google(conn, landing, google_row(), short, "", google_row(), "   ")
    assert report.lines_read == 5
    assert (report.rows_loaded, report.rows_quarantined) == (2, 3)
    got = [(r[1], r[2], r[3]) for r in quarantine(conn)]
    assert got == [
        (3, short, "expected 13 fields, got 4"),
        (4, "", "empty line"),
        (6, "   ", "empty line"),
    ]


def test_csv_header_missing_required_columns_quarantines_every_row(conn, landing):
    header = GOOGLE_HEADER.replace("metrics.cost_micros,", "").replace("customer.id,", "")
    line = "2024-01-01,USD,2100,Search,21001,210010,US-CA,100,3,1.0,80.0"
    report = load_google(conn, landing, line, line, header=header)
    assert (report.lines_read, report.rows_loaded, report.rows_quarantined) == (2, 0, 2)
    reasons = {r[3] for r in quarantine(conn)}
    assert len(reasons) == 1
    (reason,) = reasons
    assert reason.startswith("header lacks required columns")
    assert "customer_id" in reason and "metrics_cost_micros" in reason
    assert conn.execute("select count(*) from raw.google_ads_ad_performance").fetchone()[0] == 0


def test_csv_negative_missing_and_invalid_values(conn, landing):
    report = load_google(
        conn,
        landing,
        google_row(cost="-1500000"),
        google_row(cost=""),
        google_row(date_="2024-02-30"),
        google_row(impressions="10", clicks="30"),
        google_row(impressions="many"),
    )
    assert (report.rows_loaded, report.rows_quarantined) == (0, 5)
    reasons = [r[3] for r in quarantine(conn)]
    assert reasons[0] == "negative spend"
    assert reasons[1] == "missing required field metrics_cost_micros"
    assert reasons[2].startswith("segments_date is not a valid date")
    assert reasons[3] == "clicks exceed impressions"
    assert reasons[4].startswith("metrics_impressions is not a valid bigint")


def test_csv_fractional_value_in_integer_column_is_quarantined(conn, landing):
    report = load_google(conn, landing, google_row(cost="1500000.5"))
    assert report.rows_quarantined == 1
    (row,) = quarantine(conn)
    assert row[3].startswith("metrics_cost_micros is not a valid bigint")


def test_csv_unknown_columns_are_ignored_and_values_trimmed(conn, landing):
    header = GOOGLE_HEADER + ",segments.device"
    line = google_row().replace("US-CA", " US-CA ") + ",MOBILE"
    report = load_google(conn, landing, line, header=header)
    assert report.rows_loaded == 1
    (geo,) = conn.execute(
        "select segments_geo_target_region from raw.google_ads_ad_performance"
    ).fetchone()
    assert geo == "US-CA"


def test_csv_header_only_file_loads_nothing(conn, landing):
    report = load_google(conn, landing)
    assert (report.lines_read, report.rows_loaded, report.rows_quarantined) == (0, 0, 0)
    assert report.files_loaded == 1
    assert conn.execute("select lines_read from raw.load_manifest").fetchall() == [(0,)]


def test_offline_negative_spend_is_quarantined(conn, landing):
    header = "date,channel,geo,vendor,campaign_id,spend,currency"
    f = write(
        landing / "offline_media/spend_2024-01.csv",
        f"{header}\n2024-01-01,tv,US-CA,Harbor,tv-001,-12.50,USD\n2024-01-01,tv,US-CA,Harbor,tv-001,12.50,USD\n",
    )
    report = load_files(conn, SOURCES["offline_media"], [f], landing)
    assert (report.rows_loaded, report.rows_quarantined) == (1, 1)
    assert [(r[1], r[3]) for r in quarantine(conn)] == [(2, "negative spend")]


# --- Meta insights ------------------------------------------------------------------------------


def meta_record(**changes):
    rec = {
        "date_start": "2024-01-01",
        "date_stop": "2024-01-01",
        "account_id": "1029384756",
        "account_currency": "EUR",
        "campaign_id": "2385",
        "campaign_name": "Social | A",
        "adset_id": "238501",
        "ad_id": "2385010",
        "region": "US-CA",
        "spend": "21.63",
        "impressions": "2602",
        "clicks": "39",
    }
    rec.update(changes)
    return {k: v for k, v in rec.items() if v is not ...}


def load_meta(conn, landing, text, name="insights_2024-01.json"):
    f = write(landing / "meta_ads" / name, text)
    return load_files(conn, SOURCES["meta_ads"], [f], landing)


def test_meta_invalid_json_file_is_one_quarantined_row(conn, landing):
    text = '{"data": [{"spend": "1.00"'
    report = load_meta(conn, landing, text)
    assert (report.lines_read, report.rows_loaded, report.rows_quarantined) == (1, 0, 1)
    ((source_file, line, original, reason),) = quarantine(conn)
    assert (source_file, line, original) == ("meta_ads/insights_2024-01.json", 0, text)
    assert reason.startswith("file is not valid JSON")


def test_meta_file_without_data_list(conn, landing):
    report = load_meta(conn, landing, json.dumps({"error": {"code": 190}}))
    assert report.rows_quarantined == 1
    assert quarantine(conn)[0][3] == 'file has no "data" list'


def test_meta_records_are_checked(conn, landing):
    doc = {
        "data": [
            meta_record(
                actions=[
                    {"action_type": "link_click", "value": "9"},
                    {"action_type": "purchase", "value": "2"},
                ],
                action_values=[{"action_type": "purchase", "value": "133.76"}],
            ),
            meta_record(spend="-21.63"),
            meta_record(spend=...),
            meta_record(spend="n/a"),
            "not a record",
        ]
    }
    report = load_meta(conn, landing, json.dumps(doc))
    assert (report.lines_read, report.rows_loaded, report.rows_quarantined) == (5, 1, 4)
    assert [(r[1], r[3]) for r in quarantine(conn)] == [
        (2, "negative spend"),
        (3, "missing required field spend"),
        (4, "spend is not a number"),
        (5, "record is not an object"),
    ]
    got = conn.execute(
        "select spend, actions_purchase, action_values_purchase, _line_number from raw.meta_ads_insights"
    ).fetchall()
    assert got == [("21.63", "2", "133.76", 1)]
    # The quarantined text is the record itself, as JSON.
    assert json.loads(quarantine(conn)[0][2]) == meta_record(spend="-21.63")


# --- sources ------------------------------------------------------------------------------------


def test_received_date_comes_from_the_folder():
    assert received_date(Path("landing/events/date=2024-03-09/events.jsonl")) == date(2024, 3, 9)
    with pytest.raises(ValueError, match="date=YYYY-MM-DD"):
        received_date(Path("landing/events/events.jsonl"))


def test_event_files_for_days_filters_by_arrival_day(landing):
    for d in ("2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"):
        write(landing / f"events/date={d}/events.jsonl", "")
    got = event_files_for_days(landing, date(2024, 1, 2), date(2024, 1, 3))
    assert [received_date(p) for p in got] == [date(2024, 1, 2), date(2024, 1, 3)]
