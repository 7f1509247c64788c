"""The contract every marketing-mix-model backend meets: a panel in, per-channel effects with
their uncertainty, response-curve draws and diagnostics out."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pandas as pd

DATE = "week_start"
GEO = "geo"
TARGET = "revenue_usd"

Sampler = Literal["nutpie", "numpyro", "pymc"]


@dataclass(frozen=True)
class MMMPanel:
    """A weekly geo x channel panel, complete and rectangular (every geo has every week).

    `frame` has `week_start`, `geo`, `revenue_usd`, one `spend_<channel>` per channel and the
    control columns; the mart `marts.mart_mmm_weekly_panel` is its source."""

    frame: pd.DataFrame
    channels: tuple[str, ...]
    controls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        need = [DATE, GEO, TARGET, *self.spend_columns, *self.controls]
        missing = [c for c in need if c not in self.frame.columns]
        if missing:
            raise ValueError(
                f"MMM panel lacks columns {missing}; it has {list(self.frame.columns)}"
            )
        if not self.channels:
            raise ValueError("an MMM panel needs at least one channel")
        counts = self.frame.groupby(GEO)[DATE].nunique()
        if counts.nunique() > 1 or self.frame.duplicated([DATE, GEO]).any():
            raise ValueError(
                "the MMM panel must hold exactly one row per geo and week for the same weeks in "
                f"every geo; weeks per geo: {counts.to_dict()}"
            )
        values = self.frame[[TARGET, *self.spend_columns, *self.controls]]
        if values.isna().any().any():
            bad = values.columns[values.isna().any()].tolist()
            raise ValueError(f"the MMM panel has missing values in {bad}")
        if (self.frame[list(self.spend_columns)] < 0).any().any():
            raise ValueError("the MMM panel has negative spend")

    @property
    def spend_columns(self) -> tuple[str, ...]:
        return tuple(f"spend_{c}" for c in self.channels)

    @property
    def geos(self) -> tuple[str, ...]:
        return tuple(sorted(self.frame[GEO].unique()))

    @property
    def weeks(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(sorted(self.frame[DATE].unique()))

    def fingerprint(self) -> str:
        """A content hash: two fits on the same fingerprint saw the same data."""
        cols = [DATE, GEO, TARGET, *self.spend_columns, *self.controls]
        frame = self.frame[cols].sort_values([DATE, GEO]).reset_index(drop=True)
        h = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        return h.hexdigest()[:16]

    def national(self) -> MMMPanel:
        """All geos summed into one (controls that are shared across geos are kept as they are)."""
        sums = [TARGET, *self.spend_columns]
        agg = {c: "sum" for c in sums} | {c: "first" for c in self.controls}
        frame = self.frame.groupby(DATE, as_index=False).agg(agg)
        frame[GEO] = "national"
        return MMMPanel(frame, self.channels, self.controls)

    def split(self, holdout_weeks: int) -> tuple[MMMPanel, MMMPanel | None]:
        """The first weeks for fitting and the last `holdout_weeks` for out-of-time checks."""
        if holdout_weeks <= 0:
            return self, None
        weeks = self.weeks
        if holdout_weeks >= len(weeks) // 2:
            raise ValueError(
                f"holdout of {holdout_weeks} weeks leaves too little to fit on ({len(weeks)} weeks)"
            )
        cut = weeks[-holdout_weeks]
        dates = pd.to_datetime(self.frame[DATE])
        return (
            MMMPanel(self.frame[dates < cut].reset_index(drop=True), self.channels, self.controls),
            MMMPanel(self.frame[dates >= cut].reset_index(drop=True), self.channels, self.controls),
        )

    def spend(self) -> np.ndarray:
        """Spend as an array [week, geo, channel] in the order of `weeks`, `geos`, `channels`."""
        return self._cube(list(self.spend_columns))

    def target(self) -> np.ndarray:
        """Revenue as an array [week, geo]."""
        return self._cube([TARGET])[:, :, 0]

    def _cube(self, cols: list[str]) -> np.ndarray:
        frame = self.frame.assign(**{DATE: pd.to_datetime(self.frame[DATE])})
        frame = frame.set_index([DATE, GEO]).sort_index()[cols]
        return frame.to_numpy(dtype=float).reshape(len(self.weeks), len(self.geos), len(cols))


@dataclass(frozen=True)
class LiftTest:
    """An experiment's estimate of what a channel's spend change did, in weekly units, as the
    MMM calibration takes it: in each of `geos` the weekly spend went from `x[i]` to
    `x[i] + delta_x[i]`, and revenue over all of them changed by `delta_y` per week, with
    standard error `sigma`."""

    experiment_id: str
    channel: str
    geos: tuple[str, ...]
    x: tuple[float, ...]
    delta_x: tuple[float, ...]
    delta_y: float
    sigma: float

    def __post_init__(self) -> None:
        if not (len(self.geos) == len(self.x) == len(self.delta_x)) or not self.geos:
            raise ValueError(f"lift test {self.experiment_id}: geos, x and delta_x must align")
        if self.sigma <= 0 or sum(self.x) <= 0:
            raise ValueError(f"lift test {self.experiment_id}: needs sigma > 0 and spend x > 0")


@dataclass(frozen=True)
class FitSettings:
    """How to fit. Defaults are the demo's: a geo-level model sampled with nutpie."""

    draws: int = 1000
    tune: int = 1000
    chains: int = 2
    sampler: Sampler = "nutpie"
    seed: int = 20240101
    target_accept: float = 0.95
    geo_level: bool = True
    yearly_seasonality: int = 2
    l_max: int = 8
    adstock: str = "geometric"
    saturation: str = "logistic"
    holdout_weeks: int = 8
    ci: float = 0.94

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Gates:
    """The diagnostics a fit must pass before anything is planned from it."""

    # Two chains give a noisy r-hat: 1.01 (Vehtari et al. 2021) fails valid fits at random
    # here, while the ESS floor and divergences catch real mixing problems.
    max_rhat: float = 1.05
    min_ess_bulk: float = 100.0
    max_divergence_rate: float = 0.01
    min_in_sample_r2: float = 0.8
    max_holdout_mape: float = 0.15


@dataclass
class MMMResult:
    """What a backend returns. `channels` has one row per channel with `spend`, and mean and
    interval (`_low`, `_high`) of `contribution`, `roas` and `mroas` (marginal ROAS of the
    next dollar at the current spend), plus mean adstock and saturation parameters."""

    backend: str
    settings: FitSettings
    panel_fingerprint: str
    channels: pd.DataFrame
    diagnostics: dict[str, float]
    curves: object | None = None  # models.budget.ResponseCurves for backends that give draws
    artifact: Path | None = None
    calibrated_with: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def gate_failures(self, gates: Gates) -> list[str]:
        """Every diagnostic outside its gate, as a sentence; empty when the fit may be used."""
        d = self.diagnostics
        checks = [
            ("rhat_max", d.get("rhat_max"), lambda v: v <= gates.max_rhat, f"<= {gates.max_rhat}"),
            ("ess_bulk_min", d.get("ess_bulk_min"), lambda v: v >= gates.min_ess_bulk, f">= {gates.min_ess_bulk:g}"),
            ("divergence_rate", d.get("divergence_rate"), lambda v: v <= gates.max_divergence_rate, f"<= {gates.max_divergence_rate}"),
            ("in_sample_r2", d.get("in_sample_r2"), lambda v: v >= gates.min_in_sample_r2, f">= {gates.min_in_sample_r2}"),
            ("holdout_mape", d.get("holdout_mape"), lambda v: v <= gates.max_holdout_mape, f"<= {gates.max_holdout_mape}"),
        ]  # fmt: skip
        out = []
        for name, value, ok, rule in checks:
            if value is None or not np.isfinite(value):
                out.append(f"{name} is missing; the gate needs it {rule}")
            elif not ok(value):
                out.append(f"{name} = {value:.4g}, gate {rule}")
        return out


class MMMBackend(Protocol):
    """A way of fitting an MMM. Implementations: `PymcMarketingBackend` (in process) and the
    lightweight-mmm runner (its own environment, through Dagster Pipes)."""

    name: str

    def fit(
        self,
        panel: MMMPanel,
        settings: FitSettings,
        lift_tests: tuple[LiftTest, ...] = (),
        artifact_dir: Path | None = None,
    ) -> MMMResult: ...


def interval(draws: np.ndarray, ci: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed credible interval of `draws` along `axis`."""
    lo, hi = np.quantile(draws, [(1 - ci) / 2, (1 + ci) / 2], axis=axis)
    return lo, hi


def panel_from_mart(mart: pd.DataFrame) -> MMMPanel:
    """The MMM panel from `marts.mart_mmm_weekly_panel`: complete weeks only (a partial first
    or last week would read as a revenue drop), channels from its `spend_` columns, and the
    promotion days as a 0..1 control."""
    if "n_days_observed" not in mart.columns:
        raise ValueError("expected marts.mart_mmm_weekly_panel (no n_days_observed column)")
    frame = mart[mart["n_days_observed"] == 7].sort_values([DATE, GEO]).copy()
    if frame.empty:
        raise ValueError("the MMM panel has no complete weeks; load at least a few weeks of data")
    frame["promo_share"] = frame["promo_days"] / 7.0
    frame[DATE] = pd.to_datetime(frame[DATE])
    channels = tuple(c.removeprefix("spend_") for c in mart.columns if c.startswith("spend_"))
    return MMMPanel(frame.reset_index(drop=True), channels, ("promo_share",))
