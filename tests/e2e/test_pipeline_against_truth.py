"""End to end: the foundation graph on a simulated market reconciles with the simulator's truth."""

import duckdb
import pytest

from models.privacy.consent import MEASUREMENT_PURPOSES, ConsentStringError, decode
from tests.e2e.conftest import run_pipeline

pytestmark = pytest.mark.slow

USER_LEVEL_MODELS = (
    "intermediate.int_consented_users",
    "intermediate.int_sessions",
    "intermediate.int_touchpoint_paths",
)


def q(run, sql, params=None):
    with duckdb.connect(str(run.warehouse), read_only=True) as conn:
        return conn.execute(sql, params or []).fetchall()


def test_run_succeeds_with_every_check_passing(graph_run):
    assert graph_run.run.success
    evaluations = graph_run.run.check_evaluations()
    failed = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations if not e.passed]
    assert failed == []
    names = {e.check_name for e in evaluations}
    assert {"great_expectations_raw_events", "great_expectations_conformed_spend", "great_expectations_mmm_panel",
            "every_line_accounted_for"} <= names  # fmt: skip
    assert len(evaluations) > 50  # dbt tests appear as checks too
    assert {
        "marts/mart_channel_geo_daily",
        "marts/mart_mmm_weekly_panel",
        "staging/stg_tracking__events",
    } <= (graph_run.run.materialized())


def test_spend_per_channel_equals_truth_after_currency_conversion(graph_run):
    got = dict(
        q(graph_run, "select channel, sum(spend_usd) from marts.mart_channel_geo_daily group by 1")
    )
    for channel, t in graph_run.truth["channels"].items():
        assert got[channel] == pytest.approx(t["spend_reported_usd"], rel=1e-9, abs=0.01), channel


def test_revenue_equals_truth_after_currency_conversion(graph_run):
    (revenue,) = q(graph_run, "select sum(revenue_usd) from marts.mart_geo_daily")[0]
    assert revenue == pytest.approx(
        graph_run.truth["revenue_completed_reporting_usd"], rel=1e-9, abs=0.01
    )
    (panel,) = q(graph_run, "select sum(revenue_usd) from marts.mart_mmm_weekly_panel")[0]
    assert panel == pytest.approx(revenue, rel=1e-9)


def test_quarantine_holds_exactly_the_injected_malformed_rows(graph_run):
    got = dict(q(graph_run, "select source, count(*) from quarantine.rejected_rows group by 1"))
    expected = {k: v for k, v in graph_run.truth["expected_quarantine"].items() if v}
    assert got == expected
    # Nothing silently dropped: each file's lines are in raw or in quarantine.
    (mismatch,) = q(
        graph_run,
        "select count(*) from raw.load_manifest where lines_read <> rows_loaded + rows_quarantined",
    )[0]
    assert mismatch == 0


def test_duplicates_removed_equal_duplicates_injected(graph_run):
    (raw_rows,) = q(graph_run, "select count(*) from raw.tracking_events")[0]
    (staged,) = q(graph_run, "select count(*) from staging.stg_tracking__events")[0]
    dirt = graph_run.truth["dirt"]["tracking_events"]
    assert raw_rows - staged == dirt["duplicate_lines"]
    assert staged == graph_run.truth["counts"]["events_unique"]


def test_late_events_land_in_their_event_day_not_their_arrival_day(graph_run):
    (late,) = q(
        graph_run,
        "select count(*) from staging.stg_tracking__events where event_date < received_date",
    )[0]
    assert late == graph_run.truth["dirt"]["tracking_events"]["late_events"]


def test_no_raw_email_or_ip_outside_raw(graph_run):
    with duckdb.connect(str(graph_run.warehouse), read_only=True) as conn:
        conn.execute(
            """create temp table pii as
               select distinct email as v from raw.tracking_events where email is not null
               union select distinct ip from raw.tracking_events where ip is not null
               union select distinct email from raw.crm_orders where email is not null"""
        )
        assert conn.execute("select count(*) from pii").fetchone()[0] > 10
        columns = conn.execute(
            """select table_schema, table_name, column_name from information_schema.columns
               where table_schema in ('staging', 'intermediate', 'marts') and data_type = 'VARCHAR'"""
        ).fetchall()
        assert columns
        leaks = []
        for schema, table, column in columns:
            assert column not in ("email", "ip"), (
                f"{schema}.{table} has a plaintext {column} column"
            )
            n = conn.execute(
                f'select count(*) from {schema}.{table} where "{column}" in (select v from pii)'
            ).fetchone()[0]
            if n:
                leaks.append((schema, table, column, n))
        assert leaks == []


def test_users_without_consent_never_reach_user_level_models(graph_run):
    rows = q(
        graph_run,
        "select distinct coalesce(user_id, anonymous_id), consent_string from raw.tracking_events",
    )

    def allowed(s):
        try:
            return s is not None and decode(s).allows(*MEASUREMENT_PURPOSES)
        except ConsentStringError:
            return False

    denied = {user for user, s in rows if not allowed(s)}
    assert denied, "the simulated market must contain users without consent"
    for model in USER_LEVEL_MODELS:
        keys = {r[0] for r in q(graph_run, f"select distinct user_key from {model}")}
        assert keys, model
        assert not keys & denied, f"{model} holds users without measurement consent"


def test_tracked_ad_clicks_count_consented_unique_clicks(graph_run):
    rows = q(
        graph_run,
        """select distinct e.event_id, e.consent_string from raw.tracking_events e
           join raw.campaigns c using (campaign_id) where e.event_type = 'ad_click'""",
    )

    def measured(s):
        try:
            return s is not None and decode(s).allows(*MEASUREMENT_PURPOSES)
        except ConsentStringError:
            return False

    expected = sum(measured(s) for _, s in rows)
    (got,) = q(graph_run, "select sum(tracked_ad_clicks) from marts.mart_channel_geo_daily")[0]
    assert 0 < expected < len(rows)  # some clicks come from users without consent
    assert got == expected


def test_models_carry_row_counts_and_marts_a_preview(graph_run):
    materialized = {
        e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
        for e in graph_run.run.events_of("ASSET_MATERIALIZATION")
    }
    (n,) = q(graph_run, "select count(*) from marts.mart_mmm_weekly_panel")[0]
    panel = materialized["marts/mart_mmm_weekly_panel"]
    assert panel["dagster/row_count"].value == n > 0
    assert "week_start" in panel["preview"].value
    assert (
        materialized["staging/stg_tracking__events"]["dagster/row_count"].value
        == graph_run.truth["counts"]["events_unique"]
    )


def test_rerunning_the_same_days_changes_nothing(graph_run, env_paths):
    def snapshot():
        return (
            q(graph_run, "select count(*), sum(lines_read) from raw.load_manifest"),
            q(graph_run, "select count(*) from raw.tracking_events"),
            q(graph_run, "select count(*) from quarantine.rejected_rows"),
            q(graph_run, "select count(*) from staging.stg_tracking__events"),
            q(
                graph_run,
                "select channel, round(sum(spend_usd), 2) from marts.mart_channel_geo_daily group by 1 order by 1",
            ),
        )

    before = snapshot()
    env_paths(graph_run.warehouse, graph_run.landing)
    again = run_pipeline(graph_run.landing)
    assert again.success
    loaded = [
        e.event_specific_data.materialization.metadata["files_loaded"].value
        for e in again.events_of("ASSET_MATERIALIZATION")
        if e.asset_key.path[0] == "raw"
    ]
    assert loaded and all(n == 0 for n in loaded)
    assert snapshot() == before
