"""Creative wear-out in the simulator: a share of digital creatives lose click rate with
cumulative exposure, by thinning clicks from their own random stream, so nothing else moves."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from models.simulation.config import SimulationConfig
from models.simulation.generator import simulate


def _google_rows(landing) -> pd.DataFrame:
    frames = [pd.read_csv(p, dtype=str) for p in sorted((landing / "google_ads").glob("*.csv"))]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, sim_config):
    worn = simulate(
        replace(sim_config, fatigued_creative_share=1.0),
        tmp_path_factory.mktemp("worn"),
        log=lambda _m: None,
    )
    fresh = simulate(
        replace(sim_config, fatigued_creative_share=0.0),
        tmp_path_factory.mktemp("fresh"),
        log=lambda _m: None,
    )
    return worn, fresh


def test_only_delivery_clicks_and_conversions_change(pair):
    worn, fresh = pair
    a, b = worn.landing_dir, fresh.landing_dir
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    changed = [f for f in files if (a / f).read_bytes() != (b / f).read_bytes()]
    assert changed and all(f.parts[0] in ("google_ads", "meta_ads") for f in changed), changed
    g_worn, g_fresh = _google_rows(a), _google_rows(b)
    same = [c for c in g_fresh.columns if c not in ("metrics.clicks", "metrics.conversions",
                                                     "metrics.conversions_value")]  # fmt: skip
    pd.testing.assert_frame_equal(g_worn[same], g_fresh[same])
    clicks = g_worn["metrics.clicks"].astype(float), g_fresh["metrics.clicks"].astype(float)
    conv = g_worn["metrics.conversions"].astype(float)
    assert (clicks[0] <= clicks[1]).all() and (conv <= clicks[0]).all()
    assert clicks[0].sum() < clicks[1].sum()


def test_truth_names_the_worn_creatives_and_their_decay(pair, sim):
    worn, fresh = pair
    digital = {c: t for c, t in worn.truth["creatives"].items() if "fatigued" in t}
    assert digital and all(t["fatigued"] for t in digital.values())
    decays = [t["ctr_decay_over_history"] for t in digital.values()]
    assert all(0.3 - 1e-9 <= d <= 0.6 + 1e-9 for d in decays)
    assert not any(t.get("fatigued") for t in fresh.truth["creatives"].values())
    share = np.mean([t.get("fatigued", False) for t in sim.truth["creatives"].values()
                     if "fatigued" in t])  # fmt: skip
    assert 0 < share < 1  # the default config wears out some, not all
    json.dumps(worn.truth)  # the truth stays plain JSON


def test_an_invalid_share_is_refused():
    with pytest.raises(ValueError, match="fatigued_creative_share"):
        SimulationConfig(fatigued_creative_share=1.5)
