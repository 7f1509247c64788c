"""The lightweight-mmm backend: inputs written for the runner, draws reduced to adloop's table,
a clear error without its environment and, where .venv-lwmmm is built, real fits."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.mmm import lightweight_backend as lw
from models.mmm.base import FitSettings, LiftTest, MMMPanel
from models.simulation.config import SimulationConfig
from models.simulation.market import build_market, calibrate_beta

CHANNELS = ("search", "social", "tv")


def _runner_module():
    spec = importlib.util.spec_from_file_location("lightweight_runner", lw.RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def simulated_panel(weeks: int = 78, geos: int = 4, seed: int = 11) -> tuple[MMMPanel, dict]:
    """A geo panel from the simulator's market (no experiments), and each channel's true ROAS."""
    config = SimulationConfig(seed=seed, weeks=weeks, geos=geos, channels=CHANNELS, experiments=())
    market = build_market(config, np.random.default_rng(seed))
    spend = market.actual_spend()
    calibrate_beta(market, spend)
    revenue = market.expected_revenue(spend) * market.noise
    weeks_idx = pd.date_range(config.start_date, periods=weeks, freq="7D")
    rows = []
    for w, week in enumerate(weeks_idx):
        for g, geo in enumerate(config.geo_codes):
            row = {"week_start": week, "geo": geo, "revenue_usd": revenue[w, g]}
            row |= {f"spend_{ch}": spend[w, g, c] for c, ch in enumerate(CHANNELS)}
            row["promo_days"] = market.promo_days[w]
            rows.append(row)
    panel = MMMPanel(pd.DataFrame(rows), CHANNELS, ("promo_days",))
    return panel, {ch: config.channel_truth[ch].roas for ch in CHANNELS}


@pytest.fixture(scope="module")
def panel() -> MMMPanel:
    return simulated_panel()[0]


# --- without the environment -------------------------------------------------------------------


def test_prepare_inputs_writes_what_the_runner_reads(panel, tmp_path):
    settings = FitSettings(draws=10, tune=10, chains=1, seed=3, holdout_weeks=6)
    input_path, args = lw.prepare_inputs(
        panel, settings, tmp_path, artifact_path=tmp_path / "m.pkl"
    )

    assert Path(args["input_path"]) == input_path and input_path.exists()
    assert args["channels"] == list(CHANNELS)
    assert Path(args["output_path"]).parent == tmp_path
    s = args["settings"]
    assert (s["draws"], s["tune"], s["chains"], s["seed"], s["holdout_weeks"]) == (10, 10, 1, 3, 6)
    assert s["model_name"] == "adstock" and s["controls"] == ["promo_share"]
    assert s["artifact_path"] == str(tmp_path / "m.pkl")
    json.dumps(args)  # Pipes extras must be JSON

    # The runner's own reader (stdlib + pandas, so it loads here too) accepts the file...
    runner = _runner_module()
    frame = runner.read_panel(input_path, args["channels"], s["controls"])
    # ...and it is the national panel: one row a week, geos summed, promo days as a share.
    national = panel.national()
    assert len(frame) == len(panel.weeks)
    np.testing.assert_allclose(frame["revenue_usd"], national.target()[:, 0])
    np.testing.assert_allclose(frame[[f"spend_{c}" for c in CHANNELS]], national.spend()[:, 0, :])
    np.testing.assert_allclose(frame["promo_share"], national.frame["promo_days"] / 7)
    assert "trend" not in frame.columns  # lightweight-mmm has its own trend term
    # The CLI form carries the same arguments.
    flags = lw.cli_args(args)
    assert json.loads(flags[flags.index("--settings") + 1]) == s


def _hand_made_result(panel: MMMPanel, path: Path) -> dict:
    spend = panel.national().spend()[:, 0, :].sum(axis=0)
    channels = []
    for c, ch in enumerate(panel.channels):
        roas = np.linspace(0.5, 1.5, 201) * (c + 1)
        channels.append(
            {
                "channel": ch,
                "spend": float(spend[c]),
                "contribution_draws": (roas * spend[c]).tolist(),
                "roas_draws": roas.tolist(),
                "mroas_draws": (roas / 2).tolist(),
                "adstock_alpha": 0.1 * (c + 1),
                "exponent": 0.9,
            }
        )
    raw = {
        "channels": channels,
        "diagnostics": {
            "rhat_max": 1.01,
            "ess_bulk_min": 400.0,
            "divergences": 0,
            "holdout_mape": None,
        },
        "versions": {"lightweight_mmm": "0.1.9", "jax": "0.4.23", "numpyro": "0.13.2"},
        "artifact": None,
    }
    path.write_text(json.dumps(raw))
    return raw


def test_read_result_reduces_draws_to_intervals(panel, tmp_path):
    settings = FitSettings(ci=0.9)
    raw = _hand_made_result(panel, tmp_path / "result.json")
    result = lw.read_result(tmp_path / "result.json", panel, settings)

    assert result.backend == "lightweight_mmm"
    assert result.panel_fingerprint == panel.fingerprint()  # the data given, before aggregating
    table = result.channels.set_index("channel")
    assert list(table.index) == list(CHANNELS)
    for c, ch in enumerate(CHANNELS):
        roas = np.linspace(0.5, 1.5, 201) * (c + 1)
        lo, hi = np.quantile(roas, [0.05, 0.95])
        assert table.loc[ch, "roas_mean"] == pytest.approx(roas.mean())
        assert table.loc[ch, "roas_low"] == pytest.approx(lo)
        assert table.loc[ch, "roas_high"] == pytest.approx(hi)
        assert table.loc[ch, "mroas_low"] == pytest.approx(lo / 2)
        spend = raw["channels"][c]["spend"]
        assert table.loc[ch, "spend"] == pytest.approx(spend)
        assert table.loc[ch, "contribution_high"] == pytest.approx(hi * spend)
        assert table.loc[ch, "adstock_alpha"] == pytest.approx(0.1 * (c + 1))
        assert np.isnan(table.loc[ch, "saturation_lam"])
    assert result.diagnostics["rhat_max"] == 1.01 and np.isnan(result.diagnostics["holdout_mape"])
    assert result.extra["versions"]["jax"] == "0.4.23"


def test_read_result_rejects_another_panels_result(panel, tmp_path):
    raw = _hand_made_result(panel, tmp_path / "result.json")
    raw["channels"][0]["spend"] *= 1.5
    (tmp_path / "result.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="another panel"):
        lw.read_result(tmp_path / "result.json", panel, FitSettings())


def test_missing_environment_says_how_to_build_it(panel, monkeypatch, tmp_path):
    monkeypatch.setenv(lw.LIGHTWEIGHT_PYTHON_ENV, str(tmp_path / "nowhere" / "python"))
    with pytest.raises(lw.LightweightMMMUnavailable, match="make lightweight-mmm"):
        lw.lightweight_python()
    with pytest.raises(lw.LightweightMMMUnavailable, match=lw.LIGHTWEIGHT_PYTHON_ENV):
        lw.LightweightMMMBackend().fit(panel, FitSettings())


# --- with the environment ----------------------------------------------------------------------


def _env_missing() -> str | None:
    """Why the lightweight-mmm environment cannot be used, or None when it can."""
    try:
        lw.lightweight_python()
    except lw.LightweightMMMUnavailable as e:
        return str(e)
    return None


needs_env = pytest.mark.skipif(
    _env_missing() is not None, reason=f"needs lightweight-mmm's environment: {_env_missing()}"
)


@pytest.mark.slow
@needs_env
def test_real_fit_recovers_roas_and_is_deterministic(tmp_path):
    panel, truth = simulated_panel()
    settings = FitSettings(draws=200, tune=200, chains=2, seed=5, holdout_weeks=6)
    lines: list[str] = []
    backend = lw.LightweightMMMBackend(progress=lines.append, timeout_s=900)
    lift = LiftTest("exp-1", "search", ("US-CA",), (100.0,), (-100.0,), -150.0, 50.0)
    first = backend.fit(panel, settings, lift_tests=(lift,), artifact_dir=tmp_path)
    second = lw.LightweightMMMBackend(progress=lambda _: None).fit(panel, settings)

    table = first.channels.set_index("channel")
    assert list(table.index) == list(CHANNELS)
    for col in ("roas", "mroas", "contribution"):
        assert np.isfinite(table[[f"{col}_low", f"{col}_mean", f"{col}_high"]]).all().all()
        assert (table[f"{col}_low"] > 0).all()
        assert (table[f"{col}_low"] <= table[f"{col}_mean"]).all()
        assert (table[f"{col}_mean"] <= table[f"{col}_high"]).all()
    assert table["adstock_alpha"].between(0, 1).all()
    # The channel with the largest true contribution is the best identified.
    biggest = max(CHANNELS, key=lambda ch: truth[ch] * table.loc[ch, "spend"])
    assert table.loc[biggest, "roas_mean"] == pytest.approx(truth[biggest], rel=0.5)

    d = first.diagnostics
    for key in ("rhat_max", "ess_bulk_min", "divergences", "divergence_rate", "draws",
                "in_sample_r2", "in_sample_mape", "holdout_weeks", "holdout_mape",
                "holdout_coverage", "fit_seconds", "ess_bulk_per_second"):  # fmt: skip
        assert key in d and np.isfinite(d[key]), key
    assert d["draws"] == 400 and d["holdout_weeks"] == 6
    assert d["in_sample_r2"] > 0.5 and d["holdout_mape"] < 0.2
    assert first.extra["checks"]["additivity_max_rel_error"] < 1e-3
    assert first.extra["ignored_lift_tests"] == ["exp-1"]
    assert any("sampled in" in line for line in lines)

    # Artifacts: the fitted model (pickle) and the runner's JSON, named by the fit's version.
    stem = lw.artifact_stem(panel, settings)
    assert first.artifact == tmp_path / f"{stem}.pkl" and first.artifact.stat().st_size > 0
    assert (tmp_path / f"{stem}.json").exists()

    # Same seed, same numbers (timings aside).
    pd.testing.assert_frame_equal(first.channels, second.channels)
    timing = {"fit_seconds", "ess_bulk_per_second"}
    assert {k: v for k, v in first.diagnostics.items() if k not in timing} == pytest.approx(
        {k: v for k, v in second.diagnostics.items() if k not in timing}, nan_ok=True
    )


@needs_env
def test_runner_failure_raises_with_stderr_tail(panel, tmp_path, monkeypatch):
    backend = lw.LightweightMMMBackend(progress=lambda _: None, timeout_s=300)
    bad = FitSettings(draws=5, tune=5, chains=1, holdout_weeks=60)  # holdout longer than the fit
    with pytest.raises(lw.LightweightMMMError, match="leaves too little to fit on"):
        backend.fit(panel, bad)
