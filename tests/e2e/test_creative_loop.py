"""The creative loop through the real graph on the small simulated market: brand documents and
creatives embedded by the local MiniLM and indexed in DuckDB, fatigue against the simulator's
truth, variants written by the local LLM server (SmolLM2 over the OpenAI API) and moderated,
and traffic splits proposed only after off-policy evaluation, also judged against the truth."""

import json

import duckdb
import pandas as pd
import pytest

from models.bandits.truth import policy_from_shares, true_policy_value, truth_logging_policy
from models.creative.moderation import STAGES
from orchestration.pipeline import run_creative_loop
from tests.e2e.conftest import environment

pytestmark = pytest.mark.slow

SMALL = {"decisions__creative_variants": {"config": {"max_briefs": 2, "n_variants": 2}}}


def _run(graph_run, **env):
    values = {
        "ADLOOP_WAREHOUSE_PATH": str(graph_run.warehouse),
        "ADLOOP_LANDING_PATH": str(graph_run.landing),
        **env,
    }
    with environment(values):
        return run_creative_loop(log_level="WARNING", op_config=_plain(SMALL))


def _plain(config: dict) -> dict:
    return {name: cfg["config"] for name, cfg in config.items()}


def _tables(warehouse) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return {
            name: conn.execute(f"select * from {name} order by all").df()
            for name in (
                "features.brand_passages",
                "features.creative_embeddings",
                "measurement.creative_fatigue",
                "decisions.creative_variants",
                "features.creative_bandit_stats",
                "decisions.creative_traffic_split",
            )
        }


@pytest.fixture(scope="module")
def creative(graph_run):
    assert graph_run.run.success
    first = _run(graph_run)
    tables = _tables(graph_run.warehouse)
    second = _run(graph_run)
    return {"first": first, "second": second, "tables": tables, "graph": graph_run}


def _checks(result):
    return [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]


def test_the_creative_job_succeeds_with_every_check_green(creative):
    result = creative["first"]
    checks = _checks(result)
    assert result.success
    assert {c.check_name for c in checks} == {
        "retrieval_finds_labelled_passages",
        "every_variant_moderated",
        "proposed_variants_labelled",
        "proposed_only_after_ope",
    }
    assert all(c.passed for c in checks), [(c.check_name, c.metadata) for c in checks]


def test_brand_passages_and_creatives_are_embedded_and_indexed(creative):
    t = creative["tables"]
    passages, embedded = t["features.brand_passages"], t["features.creative_embeddings"]
    assert len(passages) >= 20 and passages["chunk_id"].is_unique
    assert set(passages["doc_id"]) == {"guidelines", "product_facts", "claims", "promotions"}
    with duckdb.connect(str(creative["graph"].warehouse), read_only=True) as conn:
        n_vectors = conn.execute("select count(*) from features.vectors__brand_passages").fetchall()
        n_creatives = conn.execute("select count(*) from features.vectors__creatives").fetchall()
        dims = conn.execute(
            "select distinct len(vector) from features.vectors__brand_passages"
        ).fetchall()
        cached = conn.execute("select count(*) from features.embedding_cache").fetchall()
    assert n_vectors[0][0] == len(passages) and dims == [(384,)]
    assert n_creatives[0][0] == len(embedded) > 0
    # Every distinct text embedded once, whatever the number of runs.
    assert cached[0][0] >= len(passages) + embedded["text_sha256"].nunique()


def test_the_second_run_embeds_nothing_again(creative):
    events = [
        e
        for e in creative["second"].all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
        and e.asset_key.path[-1] in ("brand_passages", "creative_embeddings")
    ]
    assert len(events) == 2
    for e in events:
        meta = e.event_specific_data.materialization.metadata
        assert meta["embedded_now"].value == 0, e.asset_key
        assert meta["from_cache"].value > 0


def test_every_variant_is_kept_with_its_status_verdicts_and_provenance(creative):
    variants = creative["tables"]["decisions.creative_variants"]
    assert len(variants) > 0
    assert set(variants["status"]) <= {"proposed", "rejected", "duplicate"}
    for row in variants.itertuples():
        stages = json.loads(row.stage_verdicts)
        assert [s["stage"] for s in stages] == list(STAGES)
        reasons = json.loads(row.reasons)
        assert (row.status == "proposed") == (not reasons), row
        if row.status == "proposed":
            assert all(s["passed"] for s in stages)
            label = json.loads(row.ai_label)
            assert label["ai_generated"] is True
        assert row.prompt_version.startswith("creative_variants@v")
        assert row.model == "smollm2-135m-instruct-q4_1"
        assert json.loads(row.retrieved_passage_ids), "every variant is grounded on passages"
        assert row.policy_sha256 and len(row.policy_sha256) == 64


def test_llm_calls_are_recorded_for_cost_and_audit(creative):
    with duckdb.connect(str(creative["graph"].warehouse), read_only=True) as conn:
        calls = conn.execute("select * from decisions.llm_calls").df()
    assert calls["run_id"].nunique() == 2  # one set per run, both kept
    assert (calls["tokens_in"] > 0).all() and (calls["latency_s"] > 0).all()
    assert (calls["cost_usd"] == 0).all()  # the local model is free
    assert set(calls["model"]) == {"smollm2-135m-instruct-q4_1"}
    assert not calls.astype(str).apply(lambda c: c.str.contains("Bearer|sk-")).any().any()


def test_reruns_are_deterministic(creative):
    again = _tables(creative["graph"].warehouse)
    for name, table in creative["tables"].items():
        pd.testing.assert_frame_equal(table, again[name], obj=name)


def test_fatigue_flags_the_creatives_the_simulator_wore_out(creative):
    fatigue = creative["tables"]["measurement.creative_fatigue"]
    truth = creative["graph"].truth["creatives"]
    judged = fatigue[fatigue["status"] != "insufficient_data"]
    assert len(judged) >= 10
    truly = judged["creative_id"].map(lambda c: truth[c].get("fatigued", False))
    flagged = judged["status"] == "fatigued"
    assert truly.any(), "the small market has no worn-out creative with enough data"
    assert (flagged & truly).sum() == truly.sum(), "a worn-out creative was missed"
    assert (flagged & ~truly).sum() <= 1, "more than one false fatigue flag"
    for row in judged[flagged & truly].itertuples():
        true_decay = truth[row.creative_id]["ctr_decay_over_history"]
        assert abs(row.decay - true_decay) < 0.1, (row.creative_id, row.decay, true_decay)


def _policy_from_rows(rows: pd.DataFrame):
    return policy_from_shares(
        {
            (r.campaign_id, json.loads(r.context).get("device"), r.creative_id): r.proposed_share
            for r in rows.itertuples()
        }
    )


def test_traffic_splits_are_judged_off_policy_and_against_the_truth(creative):
    split = creative["tables"]["decisions.creative_traffic_split"]
    truth = creative["graph"].truth
    assert set(split["candidate"]) == {"thompson", "linucb"}
    logging_value = true_policy_value(truth, truth_logging_policy(truth))
    for name, rows in split.groupby("candidate"):
        true_value = true_policy_value(truth, _policy_from_rows(rows))
        est = rows.iloc[0]
        # The doubly robust 95% interval of the candidate's click rate covers its true value.
        assert est["estimated_ctr_low"] <= true_value <= est["estimated_ctr_high"], (
            name, est["estimated_ctr_low"], true_value, est["estimated_ctr_high"],
        )  # fmt: skip
        if est["gate_passed"]:
            assert true_value > logging_value, f"{name} passed the gate but is truly worse"
    proposed = split[split["proposed"]]
    assert proposed["candidate"].nunique() <= 1
    assert proposed["gate_passed"].all()


def test_a_missing_local_model_fails_the_variants_step_with_a_clear_error(graph_run, tmp_path):
    with environment(
        {
            "ADLOOP_WAREHOUSE_PATH": str(graph_run.warehouse),
            "ADLOOP_LANDING_PATH": str(graph_run.landing),
            "ADLOOP_LLM_MODEL_PATH": str(tmp_path / "missing.gguf"),
        }
    ):
        result = run_creative_loop(log_level="CRITICAL", op_config=_plain(SMALL))
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["decisions__creative_variants"]
    message = str(failures[0].event_specific_data.error)
    assert "missing.gguf" in message and "ADLOOP_LLM_MODEL_PATH" in message
