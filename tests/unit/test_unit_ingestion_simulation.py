"""Loading a whole small simulation: every line accounted for, quarantine equal to the truth."""

from __future__ import annotations

import pytest

from connectors.warehouse import connect
from models.ingestion.loader import file_hash
from models.ingestion.sources import SOURCES

SPEND_SOURCES = ("google_ads", "meta_ads", "offline_media")


@pytest.fixture
def wh(loaded_warehouse):
    with connect(loaded_warehouse.path, read_only=True) as conn:
        yield conn


def test_every_source_found_files(loaded_warehouse):
    for name, report in loaded_warehouse.first.items():
        assert report.files, name
        assert report.files_loaded == len(report.files), name


def test_every_file_accounts_for_every_line(loaded_warehouse):
    for name, report in loaded_warehouse.first.items():
        for f in report.files:
            assert f.lines_read == f.rows_loaded + f.rows_quarantined, (name, f)


def test_quarantine_matches_truth_per_source(loaded_warehouse, sim):
    expected = sim.truth["expected_quarantine"]
    for name, report in loaded_warehouse.first.items():
        assert report.rows_quarantined == expected.get(name, 0), name
    assert all(expected[s] > 0 for s in ("tracking_events", *SPEND_SOURCES))


def test_quarantine_table_matches_reports(loaded_warehouse, wh):
    for name, report in loaded_warehouse.first.items():
        n = wh.execute(
            "select count(*) from quarantine.rejected_rows where source = ? and run_id = 'run-1'",
            [name],
        ).fetchone()[0]
        assert n == report.rows_quarantined, name


def test_event_quarantine_is_only_malformed_json(wh, sim):
    reasons = dict(
        wh.execute(
            "select reason, count(*) from quarantine.rejected_rows "
            "where source = 'tracking_events' group by 1"
        ).fetchall()
    )
    assert reasons == {"malformed JSON": sim.truth["dirt"]["tracking_events"]["malformed_lines"]}


def test_spend_quarantine_reasons_match_injected_dirt(wh, sim):
    spend_column = {
        "google_ads": "metrics_cost_micros",
        "meta_ads": "spend",
        "offline_media": "spend",
    }
    for name in SPEND_SOURCES:
        reasons = dict(
            wh.execute(
                "select reason, count(*) from quarantine.rejected_rows where source = ? group by 1",
                [name],
            ).fetchall()
        )
        dirt = sim.truth["dirt"][name]
        assert reasons == {
            "negative spend": dirt["negative_spend_rows"],
            f"missing required field {spend_column[name]}": dirt["missing_spend_rows"],
        }, name


def test_events_loaded_include_duplicates_and_late_arrivals(wh, sim):
    dirt = sim.truth["dirt"]["tracking_events"]
    total, unique, with_extra = wh.execute(
        "select count(*), count(distinct event_id), "
        "count(distinct event_id) filter (where extra_fields is not null) from raw.tracking_events"
    ).fetchone()
    assert total == dirt["lines_total"] - dirt["malformed_lines"]
    assert unique == dirt["events_written"]
    assert with_extra == dirt["extra_field_events"]
    late = wh.execute(
        "select count(distinct event_id) from raw.tracking_events "
        "where cast(cast(event_ts as timestamptz) as date) < _received_date"
    ).fetchone()[0]
    assert late == dirt["late_events"]


def test_loaded_spend_reconstructs_reported_truth(wh, sim):
    channels = sim.truth["channels"]
    google = dict(
        wh.execute(
            """select c.channel, sum(g.metrics_cost_micros) / 1e6
               from raw.google_ads_ad_performance g join raw.campaigns c using (campaign_id)
               group by 1"""
        ).fetchall()
    )
    offline = dict(
        wh.execute("select channel, sum(spend) from raw.offline_media_spend group by 1").fetchall()
    )
    (meta,) = wh.execute(
        """select sum(cast(m.spend as double) * f.usd_per_unit)
           from raw.meta_ads_insights m
           join raw.fx_rates f on f.date = m.date_start and f.currency = m.account_currency"""
    ).fetchone()
    for ch in ("search", "display", "video"):
        assert google[ch] == pytest.approx(channels[ch]["spend_reported_usd"], rel=1e-9), ch
    for ch in ("tv", "email"):
        assert offline[ch] == pytest.approx(channels[ch]["spend_reported_usd"], rel=1e-9), ch
    assert meta == pytest.approx(channels["social"]["spend_reported_usd"], rel=1e-9)


def test_manifest_records_every_file_with_its_hash(wh, sim):
    landing = sim.landing_dir
    manifest = {
        (source, path): h
        for source, path, h in wh.execute(
            "select source, source_file, content_hash from raw.load_manifest"
        ).fetchall()
    }
    expected = {
        (name, p.relative_to(landing).as_posix()): file_hash(p)
        for name, source in SOURCES.items()
        for p in source.files(landing)
    }
    assert manifest == expected


def test_second_load_changes_nothing(loaded_warehouse):
    for name, report in loaded_warehouse.second.items():
        assert report.files_loaded == 0, name
        assert report.files_unchanged == len(loaded_warehouse.first[name].files), name
        assert report.rows_loaded == report.rows_quarantined == 0, name
    assert loaded_warehouse.counts_after_second == loaded_warehouse.counts_after_first


def test_raw_counts_match_first_load(loaded_warehouse):
    for name, (raw, quarantined, manifest) in loaded_warehouse.counts_after_first.items():
        report = loaded_warehouse.first[name]
        assert raw == report.rows_loaded, name
        assert quarantined == report.rows_quarantined, name
        assert manifest == len(report.files), name
