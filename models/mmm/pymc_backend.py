"""The primary MMM backend: pymc-marketing's multidimensional MMM (geometric adstock, logistic
saturation, yearly seasonality, controls, a geo dimension), sampled with nutpie by default."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from models.mmm.artifacts import stem_of
from models.mmm.base import DATE, GEO, TARGET, FitSettings, LiftTest, MMMPanel, MMMResult, interval
from models.mmm.media import contribution_totals

log = logging.getLogger(__name__)

MEDIA_PARAMS = ("adstock_alpha", "saturation_lam", "saturation_beta")


def beta_sigma(panel: MMMPanel) -> np.ndarray:
    """Prior scale of each channel's saturation ceiling (revenue in units of a geo's best week):
    twice its share of spend. pymc-marketing's default, HalfNormal(2) for every channel, leaves
    a small channel the same room as the largest; its ridge lam -> anything, beta -> 0 then
    mixes badly (a funnel). Spend shares are known before any outcome is seen, and a channel
    rarely earns a share of revenue far beyond its share of the budget."""
    spend = panel.frame[list(panel.spend_columns)].sum().to_numpy(dtype=float)
    return np.round(2.0 * spend / spend.sum(), 4)


def model_frame(panel: MMMPanel, origin: pd.Timestamp) -> pd.DataFrame:
    """The columns the model sees: spend, revenue and controls, with a trend added (years
    since `origin`, the first week of fitting, so holdout weeks continue the same line)."""
    frame = panel.frame[[DATE, GEO, TARGET, *panel.spend_columns, *panel.controls]].copy()
    frame[DATE] = pd.to_datetime(frame[DATE])
    frame["trend"] = (frame[DATE] - origin).dt.days / 365.25
    return frame.sort_values([DATE, GEO]).reset_index(drop=True)


class PymcMarketingBackend:
    """Fits `pymc_marketing.mmm.MMM` and reduces its posterior to adloop's `MMMResult`.

    Adstock decay, saturation steepness and saturation ceiling are shared by all geos (one
    value per channel): channels and revenue are scaled per geo, so on that scale the
    response is the same shape everywhere, and pooling makes small geos identifiable."""

    name = "pymc_marketing"

    def __init__(self, progress: Callable[[str], None] | None = None):
        self._say = progress or log.info

    def build(self, panel: MMMPanel, settings: FitSettings):
        from pymc_extras.prior import Prior
        from pymc_marketing.mmm import GeometricAdstock, LogisticSaturation
        from pymc_marketing.mmm.mmm import MMM
        from pymc_marketing.mmm.scaling import DataDerivedScaling

        if settings.adstock != "geometric" or settings.saturation != "logistic":
            raise ValueError(
                f"adstock={settings.adstock!r}, saturation={settings.saturation!r}: this backend "
                "implements geometric adstock with logistic saturation"
            )
        frame = model_frame(panel, panel.weeks[0])
        dims = (GEO,) if settings.geo_level else ()
        mmm = MMM(
            date_column=DATE,
            channel_columns=list(panel.spend_columns),
            target_column=TARGET,
            adstock=GeometricAdstock(
                l_max=settings.l_max,
                priors={"alpha": Prior("Beta", alpha=1, beta=3, dims="channel")},
            ),
            saturation=LogisticSaturation(
                priors={
                    "lam": Prior("Gamma", alpha=4, beta=2, dims="channel"),
                    "beta": Prior("HalfNormal", sigma=beta_sigma(panel), dims="channel"),
                }
            ),
            dims=dims or None,
            # Each geo on its own scale (the statistic is taken over dates only): spend in
            # units of the geo's mean week, revenue in units of its best week. The media
            # parameters are shared by all geos, which is right only on per-geo scales, where
            # a small geo's curve is a big geo's curve scaled down. Mean-scaled spend makes the
            # saturation steepness read as "how saturated is an average week", which is what
            # the Gamma(4, 2) prior speaks to: mean 2, and under 1% above 5, where the curve would
            # be flat at every observed spend and the channel indistinguishable from the intercept.
            scaling={
                "channel": DataDerivedScaling(method="mean", dims=()),
                "target": DataDerivedScaling(method="max", dims=()),
            },
            control_columns=[*panel.controls, "trend"],
            yearly_seasonality=settings.yearly_seasonality or None,
            sampler_config={"progressbar": False},
        )
        X = frame.drop(columns=[TARGET])
        if not settings.geo_level:
            X = X.drop(columns=[GEO])
        return mmm, X, frame[TARGET]

    def fit(
        self,
        panel: MMMPanel,
        settings: FitSettings,
        lift_tests: tuple[LiftTest, ...] = (),
        artifact_dir: Path | None = None,
    ) -> MMMResult:
        full = panel if settings.geo_level else panel.national()
        train, holdout = full.split(settings.holdout_weeks)
        mmm, X, y = self.build(train, settings)
        mmm.build_model(X, y)
        if lift_tests:
            mmm.add_lift_test_measurements(lift_test_frame(lift_tests, train, settings.geo_level))
        self._say(
            f"pymc-marketing: sampling {settings.chains}x({settings.tune}+{settings.draws}) with "
            f"{settings.sampler} on {len(train.weeks)} weeks x {len(train.geos)} geos x "
            f"{len(train.channels)} channels"
            + (f", calibrated with {len(lift_tests)} lift tests" if lift_tests else "")
        )
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = mmm.fit(
                X,
                y,
                draws=settings.draws,
                tune=settings.tune,
                chains=settings.chains,
                cores=min(settings.chains, os.cpu_count() or 1),
                nuts_sampler=settings.sampler,
                target_accept=settings.target_accept,
                random_seed=settings.seed,
                progressbar=False,
            )
        fit_seconds = time.perf_counter() - started
        self._say(f"pymc-marketing: sampled in {fit_seconds:.1f}s")

        params = media_params(mmm, idata, train)
        channels = channel_table(full, params, settings)
        diagnostics = diagnose(mmm, idata, X, y, holdout, train, settings)
        diagnostics["fit_seconds"] = fit_seconds
        diagnostics["ess_bulk_per_second"] = diagnostics["ess_bulk_min"] / max(fit_seconds, 1e-9)

        result = MMMResult(
            backend=self.name,
            settings=settings,
            panel_fingerprint=full.fingerprint(),
            channels=channels,
            diagnostics=diagnostics,
            curves=response_curves(full, params),
            calibrated_with=tuple(t.experiment_id for t in lift_tests),
        )
        if artifact_dir is not None:
            result.artifact = save_model(mmm, Path(artifact_dir) / f"{stem_of(result)}.nc")
        return result


def lift_test_frame(
    lift_tests: tuple[LiftTest, ...], panel: MMMPanel, geo_level: bool
) -> pd.DataFrame:
    """One row per (test, geo) for `add_lift_test_measurements`.

    A test measures the revenue change summed over its geos; it is split across them in
    proportion to their share of the spend change, and each share's sigma is inflated so that
    the shares together carry no more information than the one test. For a national model the
    test's spend change is placed on the national spend level."""
    rows = []
    national_spend = panel.national().spend()[:, 0, :].mean(axis=0)
    for t in lift_tests:
        channel = f"spend_{t.channel}"
        if not geo_level:
            x = float(national_spend[panel.channels.index(t.channel)])
            rows.append({"channel": channel, "x": x, "delta_x": float(sum(t.delta_x)),
                         "delta_y": t.delta_y, "sigma": t.sigma})  # fmt: skip
            continue
        dx = np.asarray(t.delta_x, dtype=float)
        shares = dx / dx.sum()
        inflate = 1 / np.sqrt((shares**2).sum())
        for geo, x, d, share in zip(t.geos, t.x, dx, shares, strict=True):
            rows.append({"channel": channel, GEO: geo, "x": float(x), "delta_x": float(d),
                         "delta_y": float(share * t.delta_y),
                         "sigma": float(share * t.sigma * inflate)})  # fmt: skip
    return pd.DataFrame(rows)


def _draws(idata, name: str) -> np.ndarray:
    da = idata.posterior[name]
    return da.stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()


def media_params(mmm, idata, panel: MMMPanel) -> dict:
    """Posterior draws of the media parameters and the fit's scales, per (geo, channel) unit
    flattened geo-major, as `models.mmm.media.contributions` takes them."""
    scales = mmm.get_scales_as_xarray()
    G, C = len(panel.geos), len(panel.channels)
    ch_scale = scales["channel_scale"]
    tg_scale = scales["target_scale"]
    if GEO in ch_scale.dims:
        ch_scale = ch_scale.sel({GEO: list(panel.geos)}).transpose(GEO, "channel").to_numpy()
        tg_scale = tg_scale.sel({GEO: list(panel.geos)}).to_numpy()
    else:
        ch_scale = np.broadcast_to(ch_scale.to_numpy(), (G, C))
        tg_scale = np.broadcast_to(np.asarray(tg_scale.to_numpy()).reshape(-1)[:1], (G,))
    alpha, lam, beta = (_draws(idata, n) for n in MEDIA_PARAMS)
    tile = lambda a: np.tile(a, (1, G))  # noqa: E731  [draw, channel] -> [draw, geo*channel]
    return {
        "alpha": tile(alpha),
        "lam": tile(lam),
        "beta": tile(beta),
        "channel_scale": np.asarray(ch_scale, dtype=float).reshape(G * C),
        "target_scale": np.repeat(np.asarray(tg_scale, dtype=float), C),
        "l_max": mmm.adstock.l_max,
        "normalize": bool(mmm.adstock.normalize),
    }


def channel_table(panel: MMMPanel, params: dict, settings: FitSettings) -> pd.DataFrame:
    """Contribution, ROAS and marginal ROAS per channel over the whole panel, with intervals."""
    G, C = len(panel.geos), len(panel.channels)
    spend = panel.spend().reshape(len(panel.weeks), G * C)
    contrib, more = contribution_totals(spend, step=0.01, **params)
    by_channel = contrib.reshape(-1, G, C).sum(axis=1)
    more_by_channel = more.reshape(-1, G, C).sum(axis=1)
    total_spend = spend.reshape(-1, G, C).sum(axis=(0, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        roas = by_channel / total_spend
        mroas = (more_by_channel - by_channel) / (0.01 * total_spend)
    rows = []
    for c, ch in enumerate(panel.channels):
        row = {"channel": ch, "spend": float(total_spend[c])}
        for name, draws in (("contribution", by_channel), ("roas", roas), ("mroas", mroas)):
            lo, hi = interval(draws[:, c], settings.ci)
            row |= {
                f"{name}_mean": float(draws[:, c].mean()),
                f"{name}_low": float(lo),
                f"{name}_high": float(hi),
            }
        row |= {
            "adstock_alpha": float(params["alpha"][:, c].mean()),
            "saturation_lam": float(params["lam"][:, c].mean()),
            "saturation_beta": float(params["beta"][:, c].mean()),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def response_curves(panel: MMMPanel, params: dict):
    """National response curves per channel for the budget optimizer (draws kept)."""
    from models.budget import ResponseCurves

    units = [f"{ch}|{geo}" for geo in panel.geos for ch in panel.channels]
    return ResponseCurves(
        units=tuple(units),
        channel=tuple(ch for _ in panel.geos for ch in panel.channels),
        geo=tuple(geo for geo in panel.geos for _ in panel.channels),
        beta=params["beta"] * params["target_scale"][None, :],
        lam=params["lam"],
        alpha=params["alpha"],
        scale=params["channel_scale"],
        l_max=params["l_max"],
        normalize=params["normalize"],
    )


def diagnose(
    mmm, idata, X, y, holdout: MMMPanel | None, train: MMMPanel, settings: FitSettings
) -> dict:
    """Convergence, in-sample fit and out-of-time error, as plain numbers for the gates."""
    import arviz as az

    names = [
        n for n in (*MEDIA_PARAMS, "intercept_contribution", "y_sigma") if n in idata.posterior
    ]
    rhat = az.rhat(idata, var_names=names)
    ess = az.ess(idata, var_names=names, method="bulk")
    diverging = idata.sample_stats["diverging"].to_numpy()
    out = {
        "rhat_max": float(max(float(rhat[n].max()) for n in names)),
        "ess_bulk_min": float(min(float(ess[n].min()) for n in names)),
        "divergences": int(diverging.sum()),
        "divergence_rate": float(diverging.mean()),
        "draws": int(diverging.size),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = _national_prediction(mmm, X, train, settings, include_last=False)
    actual = train.target().sum(axis=1)
    out["in_sample_r2"] = float(
        1 - ((actual - fitted.mean(0)) ** 2).sum() / ((actual - actual.mean()) ** 2).sum()
    )
    lo, hi = interval(fitted, settings.ci)
    out["in_sample_coverage"] = float(((actual >= lo) & (actual <= hi)).mean())
    out["in_sample_mape"] = float(np.mean(np.abs(fitted.mean(0) - actual) / actual))
    if holdout is not None:
        hx = model_frame(holdout, train.weeks[0]).drop(columns=[TARGET])
        if not settings.geo_level:
            hx = hx.drop(columns=[GEO])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = _national_prediction(mmm, hx, holdout, settings, include_last=True)
        actual_h = holdout.target().sum(axis=1)
        out["holdout_weeks"] = len(actual_h)
        out["holdout_mape"] = float(np.mean(np.abs(pred.mean(0) - actual_h) / actual_h))
        lo, hi = interval(pred, settings.ci)
        out["holdout_coverage"] = float(((actual_h >= lo) & (actual_h <= hi)).mean())
    return out


def _national_prediction(
    mmm, X, panel: MMMPanel, settings: FitSettings, include_last: bool
) -> np.ndarray:
    """Posterior-predictive revenue summed over geos, [sample, week], in revenue units."""
    pp = mmm.sample_posterior_predictive(
        X, extend_idata=False, combined=True, include_last_observations=include_last,
        random_seed=settings.seed, progressbar=False,
    )  # fmt: skip
    if "y_original_scale" in pp:
        da = pp["y_original_scale"]
    else:  # the likelihood's draws are on the model's scale: back to revenue, geo by geo
        da = pp["y"] * mmm.get_scales_as_xarray()["target_scale"]
    if GEO in da.dims:
        da = da.sum(GEO)
    return da.transpose("sample", "date").to_numpy()


def save_model(mmm, path: Path) -> Path:
    """pymc-marketing's own format (netCDF with the model's configuration), written atomically;
    `pymc_marketing.mmm.MMM.load(path)` gives back the fitted model without refitting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    mmm.save(str(tmp))
    tmp.replace(path)
    return path
