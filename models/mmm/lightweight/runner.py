"""Fit lightweight-mmm on a national weekly panel and write posterior draws as JSON.

Runs inside its own environment (.venv-lwmmm, see README.md), never in adloop's: it imports
only numpy, pandas, jax, numpyro, lightweight_mmm and the standard library.

Two ways in, one computation (`run`):
  - `assets/pipes/fit_lightweight_mmm.py`, the Dagster Pipes face that the asset launches, calls
    `run` and `headline`;
  - from a shell (or `models.mmm.lightweight_backend`):
      python runner.py --input panel.csv --output result.json --channels search,social \\
          --settings '{"draws": 500, "tune": 500, "chains": 2, "seed": 1, "holdout_weeks": 8}'

The input has `week_start`, `revenue_usd`, one `spend_<channel>` per channel and the control
columns named in `settings["controls"]` (CSV, or parquet where pyarrow is installed).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import sys
import time
import types
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from unittest import mock

DATE = "week_start"
TARGET = "revenue_usd"
MAX_OUTPUT_DRAWS = 1000
# Sites that numpyro records but that are functions of the parameters, not parameters.
DETERMINISTIC_SITES = ("mu", "media_transformed")

DEFAULTS = {
    "draws": 500,
    "tune": 500,
    "chains": 2,
    "seed": 20240101,
    "holdout_weeks": 8,
    "ci": 0.94,
    "target_accept": 0.85,
    "yearly_seasonality": 2,
    "controls": [],
    "model_name": "adstock",
    "max_output_draws": MAX_OUTPUT_DRAWS,
    "artifact_path": None,
    "progress_bar": False,
    # {"site": ["NumpyroDistribution", {kwargs}]}, e.g. {"expo_trend": ["Uniform", {"low": 0.95, "high": 1.05}]}
    "custom_priors": {},
}


def configure_jax(chains: int) -> None:
    """One host CPU device per chain so numpyro runs chains in parallel; must precede `import jax`."""
    if "jax" in sys.modules:
        raise RuntimeError("configure_jax must run before jax is imported")
    flags = [
        f for f in os.environ.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f
    ]
    flags.append(f"--xla_force_host_platform_device_count={max(int(chains), 1)}")
    os.environ["XLA_FLAGS"] = " ".join(flags)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def install_gfile_stand_in() -> None:
    """lightweight_mmm.utils imports `tensorflow.io.gfile` for save_model/load_model only; this
    environment leaves tensorflow out, so local files stand in for gfile."""
    if "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is not None:
        return
    tf = types.ModuleType("tensorflow")
    tf_io = types.ModuleType("tensorflow.io")
    tf_io.gfile = types.SimpleNamespace(GFile=open)
    tf.io = tf_io
    sys.modules["tensorflow"] = tf
    sys.modules["tensorflow.io"] = tf_io


def custom_priors(spec: dict) -> dict:
    """lightweight-mmm custom priors from a JSON-able spec: site name -> [distribution, kwargs]."""
    from numpyro import distributions as dist

    out = {}
    for site, (name, kwargs) in (spec or {}).items():
        cls = getattr(dist, name, None)
        if cls is None:
            raise ValueError(f"custom prior for {site!r}: numpyro.distributions has no {name!r}")
        out[site] = cls(**{k: float(v) for k, v in kwargs.items()})
    return out


def read_panel(path: Path, channels: list[str], controls: list[str]):
    import pandas as pd

    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    need = [DATE, TARGET, *(f"spend_{c}" for c in channels), *controls]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; it has {list(frame.columns)}")
    frame[DATE] = pd.to_datetime(frame[DATE])
    frame = frame.sort_values(DATE).reset_index(drop=True)
    if frame[DATE].duplicated().any():
        raise ValueError("the runner fits a national model: one row per week expected")
    return frame


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def fit(frame, channels: list[str], settings: dict, log: Callable[[str], None]) -> dict:
    """The whole computation: fit on all but the holdout weeks, score the holdout, and reduce
    the posterior to per-channel draws of contribution, ROAS and marginal ROAS over every week."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import numpyro
    from numpyro.diagnostics import summary
    from numpyro.infer import Predictive

    jax.config.update("jax_platform_name", "cpu")
    install_gfile_stand_in()
    from lightweight_mmm import lightweight_mmm, preprocessing, utils

    s = DEFAULTS | settings
    chains, draws, tune, seed = int(s["chains"]), int(s["draws"]), int(s["tune"]), int(s["seed"])

    spend_cols = [f"spend_{c}" for c in channels]
    media_all = frame[spend_cols].to_numpy(dtype=float)  # [T, C]
    target_all = frame[TARGET].to_numpy(dtype=float)  # [T]
    T = len(frame)
    H = int(s["holdout_weeks"] or 0)
    if H < 0 or (H and H >= T // 2):
        raise ValueError(f"holdout of {H} weeks leaves too little to fit on ({T} weeks)")
    n = T - H

    controls = list(s["controls"])
    extra_all = frame[controls].to_numpy(dtype=float) if controls else None
    if extra_all is not None:
        keep = [
            j
            for j in range(len(controls))
            if np.ptp(extra_all[:n, j]) > 0 and extra_all[:n, j].mean() != 0
        ]
        dropped = [controls[j] for j in range(len(controls)) if j not in keep]
        if dropped:
            log(f"lightweight-mmm: dropping controls constant over the fitting weeks: {dropped}")
        controls = [controls[j] for j in keep]
        extra_all = extra_all[:, keep] if keep else None

    # Scale as lightweight-mmm's examples do: every series divided by its mean on the fitting weeks.
    media_scaler = preprocessing.CustomScaler(divide_operation=jnp.mean)
    target_scaler = preprocessing.CustomScaler(divide_operation=jnp.mean)
    cost_scaler = preprocessing.CustomScaler(divide_operation=jnp.mean)
    extra_scaler = preprocessing.CustomScaler(divide_operation=jnp.mean)
    media_train = media_scaler.fit_transform(jnp.asarray(media_all[:n]))
    target_train = target_scaler.fit_transform(jnp.asarray(target_all[:n]))
    costs = cost_scaler.fit_transform(jnp.asarray(media_all[:n].sum(axis=0)))
    extra_train = (
        extra_scaler.fit_transform(jnp.asarray(extra_all[:n])) if extra_all is not None else None
    )
    media_full = media_scaler.transform(jnp.asarray(media_all))
    extra_full = extra_scaler.transform(jnp.asarray(extra_all)) if extra_all is not None else None
    target_scale = float(np.asarray(target_scaler.divide_by))

    mmm = lightweight_mmm.LightweightMMM(model_name=s["model_name"])
    log(
        f"lightweight-mmm: sampling {chains}x({tune}+{draws}) model={s['model_name']} on {n} weeks x "
        f"{len(channels)} channels, controls {controls or 'none'}, holdout {H} weeks"
        + (f", custom priors {s['custom_priors']}" if s["custom_priors"] else "")
    )
    # lightweight-mmm builds numpyro's MCMC inside fit() with no progress_bar argument; the bar
    # only floods a subprocess's stderr, so it is off unless settings ask for it.
    mcmc_class = functools.partial(numpyro.infer.MCMC, progress_bar=bool(s["progress_bar"]))
    started = time.perf_counter()
    with mock.patch.object(numpyro.infer, "MCMC", mcmc_class):
        mmm.fit(
            media=media_train,
            media_prior=costs,
            target=target_train,
            extra_features=extra_train,
            degrees_seasonality=int(s["yearly_seasonality"]),
            seasonality_frequency=52,
            media_names=list(channels),
            number_warmup=tune,
            number_samples=draws,
            number_chains=chains,
            target_accept_prob=float(s["target_accept"]),
            custom_priors=custom_priors(s["custom_priors"]) or None,
            seed=seed,
        )
    jax.block_until_ready(mmm.trace["mu"])
    fit_seconds = time.perf_counter() - started
    log(f"lightweight-mmm: sampled in {fit_seconds:.1f}s")

    # Convergence, over the parameters only.
    grouped = mmm._mcmc.get_samples(group_by_chain=True)
    stats = summary({k: v for k, v in grouped.items() if k not in DETERMINISTIC_SITES})
    rhat_max = max(float(np.nanmax(v["r_hat"])) for v in stats.values())
    ess_min = min(float(np.nanmin(v["n_eff"])) for v in stats.values())
    diverging = np.asarray(mmm._mcmc.get_extra_fields()["diverging"])

    # Posterior mean revenue for any media/extra features over the full panel, by the model's own
    # code (numpyro.infer.Predictive on lightweight's model function), compiled once.
    params = {k: v for k, v in mmm.trace.items() if k not in DETERMINISTIC_SITES}
    predictive = Predictive(mmm._model_function, posterior_samples=params, return_sites=["mu"])
    key = jax.random.PRNGKey(seed)

    @jax.jit
    def revenue(media, extra):
        mu = predictive(
            key,
            media_data=media,
            extra_features=extra,
            media_prior=jnp.asarray(costs),
            target_data=None,
            degrees_seasonality=int(s["yearly_seasonality"]),
            frequency=52,
            transform_function=mmm._model_transform_function,
            custom_priors=mmm.custom_priors,
            weekday_seasonality=False,
        )["mu"]
        return mu * target_scale  # [sample, week], USD

    base = np.asarray(revenue(media_full, extra_full), dtype=float)
    S = base.shape[0]
    recorded = np.asarray(mmm.trace["mu"], dtype=float) * target_scale
    fit_check = float(np.max(np.abs(base[:, :n] - recorded)) / np.abs(recorded).mean())

    contribution = np.zeros((S, len(channels)))
    marginal = np.zeros((S, len(channels)))
    for c in range(len(channels)):
        off = np.asarray(revenue(media_full.at[:, c].set(0.0), extra_full), dtype=float)
        up = np.asarray(revenue(media_full.at[:, c].multiply(1.01), extra_full), dtype=float)
        contribution[:, c] = (base - off).sum(axis=1)
        marginal[:, c] = (up - base).sum(axis=1)
    no_media = np.asarray(revenue(jnp.zeros_like(media_full), extra_full), dtype=float)
    additivity_check = float(
        np.max(np.abs(no_media.sum(axis=1) + contribution.sum(axis=1) - base.sum(axis=1)))
        / np.abs(base.sum(axis=1)).mean()
    )
    if fit_check > 1e-3 or additivity_check > 1e-3:
        raise RuntimeError(
            f"contributions do not reproduce the model: refit mismatch {fit_check:.2e}, "
            f"baseline + contributions vs prediction {additivity_check:.2e}"
        )

    rng = np.random.default_rng(seed)
    sigma = np.asarray(mmm.trace["sigma"], dtype=float).reshape(S, 1) * target_scale
    ci = float(s["ci"])
    q = [(1 - ci) / 2, (1 + ci) / 2]

    def scores(pred: np.ndarray, actual: np.ndarray) -> tuple[float, float, float]:
        """MAPE of the posterior mean, R^2 and coverage of the posterior predictive interval."""
        noisy = pred + sigma * rng.standard_normal(pred.shape)
        lo, hi = np.quantile(noisy, q, axis=0)
        mean = pred.mean(axis=0)
        mape = float(np.mean(np.abs(mean - actual) / actual))
        r2 = float(1 - ((actual - mean) ** 2).sum() / ((actual - actual.mean()) ** 2).sum())
        return mape, r2, float(((actual >= lo) & (actual <= hi)).mean())

    in_mape, in_r2, in_cov = scores(base[:, :n], target_all[:n])
    diagnostics = {
        "rhat_max": rhat_max,
        "ess_bulk_min": ess_min,
        "divergences": float(diverging.sum()),
        "divergence_rate": float(diverging.mean()),
        "draws": float(diverging.size),
        "in_sample_r2": in_r2,
        "in_sample_mape": in_mape,
        "in_sample_coverage": in_cov,
        "holdout_weeks": float(H),
        "fit_seconds": fit_seconds,
        "ess_bulk_per_second": ess_min / max(fit_seconds, 1e-9),
    }
    if H:
        # lightweight's own out-of-sample path: the training media precede the new weeks.
        pred = mmm.predict(
            media=media_full[n:],
            extra_features=extra_full[n:] if extra_full is not None else None,
            target_scaler=target_scaler,
            seed=seed,
        )
        h_mape, _, h_cov = scores(np.asarray(pred, dtype=float), target_all[n:])
        diagnostics |= {"holdout_mape": h_mape, "holdout_coverage": h_cov}
    else:
        diagnostics |= {"holdout_mape": float("nan"), "holdout_coverage": float("nan")}

    # Draws kept for the output: evenly spaced, the same for every channel.
    keep = np.unique(np.linspace(0, S - 1, min(S, int(s["max_output_draws"]))).astype(int))
    spend_total = media_all.sum(axis=0)
    lag = np.asarray(mmm.trace["lag_weight"], dtype=float) if "lag_weight" in mmm.trace else None
    expo = np.asarray(mmm.trace["exponent"], dtype=float) if "exponent" in mmm.trace else None
    coef = np.asarray(mmm.trace["coef_media"], dtype=float).reshape(S, -1)
    out_channels = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for c, ch in enumerate(channels):
            total = float(spend_total[c])
            roas = contribution[:, c] / total if total > 0 else np.full(S, np.nan)
            mroas = marginal[:, c] / (0.01 * total) if total > 0 else np.full(S, np.nan)
            out_channels.append(
                {
                    "channel": ch,
                    "spend": total,
                    "contribution_draws": contribution[keep, c].round(4).tolist(),
                    "roas_draws": roas[keep].round(6).tolist(),
                    "mroas_draws": mroas[keep].round(6).tolist(),
                    "adstock_alpha": float(lag[:, c].mean()) if lag is not None else None,
                    "exponent": float(expo[:, c].mean()) if expo is not None else None,
                    "coef_media": float(coef[:, c].mean()),
                }
            )

    artifact = None
    if s.get("artifact_path"):
        artifact = Path(s["artifact_path"])
        artifact.parent.mkdir(parents=True, exist_ok=True)
        mcmc, mmm._mcmc = (
            mmm._mcmc,
            None,
        )  # the sampler holds compiled functions; the trace is the fit
        tmp = artifact.with_suffix(artifact.suffix + ".tmp")
        utils.save_model(mmm, str(tmp))
        tmp.replace(artifact)
        mmm._mcmc = mcmc
        log(f"lightweight-mmm: saved the fitted model to {artifact}")

    return {
        "channels": out_channels,
        "diagnostics": diagnostics,
        "checks": {"refit_max_rel_error": fit_check, "additivity_max_rel_error": additivity_check},
        "convergence": {
            site: {
                "rhat_max": _finite(np.nanmax(v["r_hat"])),
                "ess_min": _finite(np.nanmin(v["n_eff"])),
            }
            for site, v in sorted(stats.items())
        },
        "controls_used": controls,
        # The pickled model works on scaled data: divide media/extras by these, multiply by target.
        "scales": {
            "target": target_scale,
            "media": dict(
                zip(channels, np.asarray(media_scaler.divide_by, dtype=float).tolist(), strict=True)
            ),
            "extra_features": dict(
                zip(
                    controls,
                    np.asarray(extra_scaler.divide_by, dtype=float).reshape(-1).tolist(),
                    strict=True,
                )
            )
            if extra_all is not None
            else {},
        },
        "weeks": {
            "fit": n,
            "holdout": H,
            "first": str(frame[DATE].iloc[0].date()),
            "last": str(frame[DATE].iloc[-1].date()),
        },
        "artifact": str(artifact) if artifact else None,
        "versions": {n_: version(n_) for n_ in ("lightweight_mmm", "jax", "jaxlib", "numpyro")},
    }


def run(input_path: Path, output_path: Path, channels: list[str], settings: dict, log) -> dict:
    configure_jax(int((DEFAULTS | settings)["chains"]))
    frame = read_panel(Path(input_path), channels, list((DEFAULTS | settings)["controls"]))
    result = fit(frame, channels, settings, log)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_suffix(output_path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, allow_nan=True))
    tmp.replace(output_path)
    log(f"lightweight-mmm: wrote {output_path}")
    return result


def headline(result: dict) -> dict:
    """A few numbers for the Dagster materialization."""
    d = result["diagnostics"]
    meta = {
        k: _finite(d.get(k))
        for k in ("fit_seconds", "rhat_max", "ess_bulk_min", "divergences", "holdout_mape")
    }
    for ch in result["channels"]:
        draws = [x for x in ch["roas_draws"] if x is not None and math.isfinite(x)]
        meta[f"roas_mean_{ch['channel']}"] = sum(draws) / len(draws) if draws else None
    meta["lightweight_mmm_version"] = result["versions"]["lightweight_mmm"]
    return {k: v for k, v in meta.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--input", required=True, type=Path, help="national weekly panel (csv or parquet)"
    )
    parser.add_argument("--output", required=True, type=Path, help="where to write the result JSON")
    parser.add_argument("--channels", required=True, help="comma-separated channel names")
    parser.add_argument("--settings", default="{}", help="JSON object of fit settings")
    args = parser.parse_args(argv)

    def say(msg: str) -> None:
        print(msg, flush=True)

    run(
        args.input,
        args.output,
        [c for c in args.channels.split(",") if c],
        json.loads(args.settings),
        say,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
