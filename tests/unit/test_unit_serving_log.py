"""The simulator's creative-serving log against its truth, its own RNG stream, and its contract."""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from models.bandits.truth import serving_truth, true_click_probabilities
from models.ingestion.loader import QUARANTINE_TABLE, load_files
from models.ingestion.sources import SOURCES
from models.simulation.config import CHANNEL_PLATFORM, SimulationConfig
from models.simulation.generator import (
    SERVING_DEVICES,
    SERVING_EPSILON,
    SERVING_LOG_DIR,
    SERVING_LOG_FILE,
    simulate,
)

COLUMNS = ["impression_id", "served_on", "campaign_id", "creative_id", "channel", "geo",
           "device", "propensity", "clicked", "logging_policy"]  # fmt: skip


def _log(sim) -> pd.DataFrame:
    return pd.read_csv(sim.landing_dir / SERVING_LOG_DIR / SERVING_LOG_FILE, dtype=str)


@pytest.fixture(scope="module")
def log(sim) -> pd.DataFrame:
    return _log(sim)


def test_log_has_the_contract_columns_and_the_configured_size(sim, sim_config, log):
    assert list(log.columns) == COLUMNS
    assert (
        len(log)
        == sim_config.serving_log_impressions
        == sim.truth["creative_serving"]["impressions"]
    )
    assert log["impression_id"].is_unique
    assert int(log["clicked"].astype(int).sum()) == sim.truth["creative_serving"]["clicks"]
    assert set(log["clicked"]) <= {"0", "1"}
    assert set(log["device"]) == set(SERVING_DEVICES)


def test_log_stays_under_100_bytes_per_impression(sim, log):
    size = (sim.landing_dir / SERVING_LOG_DIR / SERVING_LOG_FILE).stat().st_size
    assert size / len(log) < 100  # 100k impressions (the default) stay under 10 MB


def test_only_digital_campaigns_are_logged_and_creatives_belong_to_them(sim, log):
    assert set(log["channel"]) == {"search", "social", "display", "video"}
    ref = pd.read_csv(sim.landing_dir / "reference" / "creatives.csv", dtype=str)
    owner = dict(zip(ref["creative_id"], ref["campaign_id"], strict=True))
    assert (log["creative_id"].map(owner) == log["campaign_id"]).all()
    platforms = {CHANNEL_PLATFORM[c] for c in log["channel"].unique()}
    assert platforms == {"google_ads", "meta"}


def test_propensities_are_the_truths_logging_probabilities_with_a_floor(sim, log):
    t = sim.truth["creative_serving"]
    expected = [
        t["creatives"][c]["logging_probability"][d]
        for c, d in zip(log["creative_id"], log["device"], strict=True)
    ]
    p = log["propensity"].astype(float).to_numpy()
    assert np.allclose(p, expected, atol=1e-6)
    k = sim.truth["config"]["creatives_per_campaign"]
    assert p.min() >= SERVING_EPSILON / k - 1e-6
    assert p.max() <= 1.0


def test_logging_policy_is_a_distribution_that_depends_on_the_device(sim):
    st = serving_truth(sim.truth)
    assert np.allclose(st.logging_probability.sum(axis=1), 1.0)
    assert st.weights.sum() == pytest.approx(1.0)
    t = sim.truth["creative_serving"]["creatives"]
    spread = [max(c["logging_probability"].values()) - min(c["logging_probability"].values())
              for c in t.values()]  # fmt: skip
    assert max(spread) > 0.05  # not the same split on every device


def test_best_creative_differs_by_device_somewhere(sim):
    st = serving_truth(sim.truth)
    best = {}
    for (camp, _device), rows in st.contexts.groupby(["campaign_id", "device"]).groups.items():
        best.setdefault(camp, set()).add(int(st.click_probability[rows[0]].argmax()))
    assert any(len(b) > 1 for b in best.values())


def test_clicks_match_the_true_click_probabilities(sim, log):
    st = serving_truth(sim.truth)
    q = true_click_probabilities(st, log, st.arms)
    col = {a: i for i, a in enumerate(st.arms)}
    expected = q[np.arange(len(log)), log["creative_id"].map(col).to_numpy()]
    clicks = log["clicked"].astype(int).to_numpy()
    assert abs(clicks.sum() - expected.sum()) < 4 * np.sqrt(expected.sum())
    by_channel = (
        pd.DataFrame({"ch": log["channel"], "c": clicks, "e": expected}).groupby("ch").sum()
    )
    assert (abs(by_channel["c"] - by_channel["e"]) < 4 * np.sqrt(by_channel["e"]) + 1).all()


def test_contexts_follow_delivery_not_holdouts(sim, sim_config, log):
    start = date.fromisoformat(sim.truth["config"]["start_date"])
    days = {(start + timedelta(days=d)).isoformat() for d in range(sim_config.days)}
    assert set(log["served_on"]) <= days
    for exp in sim.truth["experiments"]:
        dark = (
            (log["channel"] == exp["channel"])
            & log["geo"].isin(exp["treatment_geos"])
            & (log["served_on"] >= exp["start_date"])
            & (log["served_on"] <= exp["end_date"])
        )
        assert not dark.any(), exp["experiment_id"]
    shares = pd.DataFrame(sim.truth["creative_serving"]["contexts"])
    assert shares["share"].sum() == pytest.approx(1.0)
    observed = log.groupby(["campaign_id", "geo"]).size() / len(log)
    merged = shares.set_index(["campaign_id", "geo"])["share"]
    assert np.allclose(observed.reindex(merged.index, fill_value=0), merged, atol=0.01)


def test_serving_log_has_its_own_random_stream(tmp_path, sim_config, sim):
    """Changing the serving log's size changes no other file: it draws from its own stream."""
    other = simulate(replace(sim_config, serving_log_impressions=0), tmp_path, log=lambda _m: None)
    root_a, root_b = sim.landing_dir, other.landing_dir
    files = sorted(p.relative_to(root_a) for p in root_a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(root_b) for p in root_b.rglob("*") if p.is_file())
    serving = Path(SERVING_LOG_DIR) / SERVING_LOG_FILE
    for f in files:
        if f != serving:
            assert (root_a / f).read_bytes() == (root_b / f).read_bytes(), f
    with (root_b / serving).open() as fh:
        assert list(csv.reader(fh)) == [COLUMNS]  # header only
    assert other.truth["creative_serving"]["impressions"] == 0
    assert (
        other.truth["creative_serving"]["creatives"] == sim.truth["creative_serving"]["creatives"]
    )


def test_negative_size_is_refused():
    with pytest.raises(ValueError, match="serving_log_impressions"):
        SimulationConfig(serving_log_impressions=-1)


def test_the_loader_quarantines_bad_serving_rows(tmp_path):
    landing = tmp_path / "landing"
    folder = landing / SERVING_LOG_DIR
    folder.mkdir(parents=True)
    good = "imp-1,2024-01-01,21,210,search,US-CA,mobile,0.25,1,v1"
    lines = [
        ",".join(COLUMNS),
        good,
        "imp-2,2024-01-01,21,210,search,US-CA,mobile,0,0,v1",  # propensity 0
        "imp-3,2024-01-01,21,210,search,US-CA,mobile,1.5,0,v1",  # propensity > 1
        "imp-4,2024-01-01,21,210,search,US-CA,mobile,0.25,2,v1",  # clicked 2
        ",2024-01-01,21,210,search,US-CA,mobile,0.25,0,v1",  # no impression id
        "imp-6,2024-13-01,21,210,search,US-CA,mobile,0.25,0,v1",  # no such date
        "imp-7,2024-01-01,21,210,search,US-CA,mobile,0.25",  # short row
    ]
    (folder / "serving_log.csv").write_text("\n".join(lines) + "\n")
    source = SOURCES["creative_serving"]
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as conn:
        report = load_files(conn, source, source.files(landing), landing)
        reasons = [
            r
            for (r,) in conn.execute(
                f"select reason from {QUARANTINE_TABLE} order by line_number"
            ).fetchall()
        ]
        loaded = conn.execute(
            "select impression_id, propensity, clicked from raw.creative_serving"
        ).fetchall()
    assert report.rows_loaded == 1 and report.rows_quarantined == 6
    assert loaded == [("imp-1", 0.25, 1)]
    assert reasons[0] == reasons[1] == "propensity outside (0, 1]"
    assert reasons[2] == "clicked is not 0 or 1"
    assert reasons[3] == "missing required field impression_id"
    assert reasons[4].startswith("served_on is not a valid date")
    assert reasons[5].startswith("expected 10 fields")
