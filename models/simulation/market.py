"""The data-generating process: spend, adstock, saturation, baseline and experiments.

Everything here is weekly and in USD. `Market` holds the arrays the writer turns into
landing files and the truth the estimators are judged against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.simulation.config import SimulationConfig

ADSTOCK_L_MAX = 8


def geometric_adstock(x: np.ndarray, alpha: float, l_max: int = ADSTOCK_L_MAX) -> np.ndarray:
    """Un-normalised geometric adstock along axis 0 (weeks): sum_l alpha^l * x[t-l]."""
    out = np.zeros_like(x, dtype=float)
    for lag in range(l_max):
        w = alpha**lag
        if lag == 0:
            out += w * x
        else:
            out[lag:] += w * x[:-lag]
    return out


def logistic_saturation(x: np.ndarray, lam: float) -> np.ndarray:
    """pymc-marketing's logistic saturation: (1 - e^(-lam x)) / (1 + e^(-lam x))."""
    e = np.exp(-lam * x)
    return (1 - e) / (1 + e)


def _flight(kind: str, weeks: int, rng: np.random.Generator) -> np.ndarray:
    """Relative national weekly spend pattern (mean 1) for a flighting style."""
    noise = rng.lognormal(0.0, 0.25, weeks)
    if kind == "always_on":
        ar = np.empty(weeks)
        ar[0] = 0.0
        shocks = rng.normal(0, 0.2, weeks)
        for t in range(1, weeks):
            ar[t] = 0.7 * ar[t - 1] + shocks[t]
        pattern = np.exp(ar) * noise
    else:
        on_range, off_range = ((3, 5), (1, 3)) if kind == "pulsed" else ((3, 7), (3, 9))
        pattern = np.zeros(weeks)
        t = int(rng.integers(0, 3))
        while t < weeks:
            on = int(rng.integers(*on_range))
            pattern[t : t + on] = noise[t : t + on]
            t += on + int(rng.integers(*off_range))
        if pattern.sum() == 0:
            pattern[:] = noise
    return pattern / pattern.mean()


@dataclass
class Market:
    config: SimulationConfig
    geo_share: np.ndarray  # [G], sums to 1
    planned_spend: np.ndarray  # [W, G, C] before experiments turn channels dark
    kappa: np.ndarray  # [C] saturation scale: mean national adstocked planned spend
    beta: np.ndarray  # [C] revenue at full saturation per unit geo share
    baseline: np.ndarray  # [W, G] expected revenue without media
    promo_days: np.ndarray  # [W] days of the week inside a promotion
    noise: np.ndarray  # [W, G] multiplicative noise on expected revenue
    treatment_geos: dict[int, np.ndarray]  # experiment index -> geo indices
    # What continues the baseline past the history (see `baseline_revenue`).
    season_phase: float = 0.0
    geo_base: np.ndarray | None = None  # [G] each geo's share of baseline revenue

    @property
    def channels(self) -> tuple[str, ...]:
        return self.config.channels

    def actual_spend(
        self, planned: np.ndarray | None = None, skip: int | None = None
    ) -> np.ndarray:
        """Planned spend with every experiment's holdout applied (all but `skip`)."""
        spend = (self.planned_spend if planned is None else planned).copy()
        for i, exp in enumerate(self.config.active_experiments()):
            if i == skip:
                continue
            c = self.channels.index(exp.channel)
            weeks = slice(exp.start_week, exp.start_week + exp.weeks)
            for g in self.treatment_geos[i]:
                spend[weeks, g, c] = 0.0
        return spend

    def response(self, spend: np.ndarray) -> np.ndarray:
        """Contribution [W, G, C] of a spend array under the true adstock and saturation."""
        truth = self.config.channel_truth
        out = np.zeros_like(spend, dtype=float)
        for c, ch in enumerate(self.channels):
            ad = geometric_adstock(spend[:, :, c], truth[ch].adstock_alpha)
            x = ad / (self.geo_share[None, :] * self.kappa[c])
            out[:, :, c] = (
                self.beta[c]
                * self.geo_share[None, :]
                * logistic_saturation(x, truth[ch].saturation_lambda)
            )
        return out

    def expected_revenue(self, spend: np.ndarray) -> np.ndarray:
        """Expected weekly revenue [W, G] (before noise) for a spend array."""
        return self.baseline + self.response(spend).sum(axis=2)


def baseline_revenue(
    config: SimulationConfig,
    weeks: np.ndarray,
    season_phase: float,
    geo_base: np.ndarray,
    promo_days: np.ndarray | None = None,
) -> np.ndarray:
    """Expected revenue without media [len(weeks), G] in weeks counted from the start: the
    trend, the yearly season and the promotions' lift, shared out over geos."""
    t = np.asarray(weeks)
    if promo_days is None:
        promo_days = np.zeros(len(t))
    trend = 1.0 + config.trend_per_year * t / 52.0
    season = 1.0 + config.seasonality_amplitude * np.sin(2 * np.pi * t / 52.0 + season_phase)
    return (
        config.base_weekly_revenue
        * (trend * season * (1 + config.promo_effect * promo_days / 7.0))[:, None]
        * geo_base[None, :]
    )


def build_market(config: SimulationConfig, rng: np.random.Generator, spend_override=None) -> Market:
    """Draw the advertiser: geo sizes, spend plans, response scales and the baseline."""
    W, G, C = config.weeks, config.geos, len(config.channels)
    geo_share = rng.dirichlet(np.full(G, 4.0))

    planned = np.zeros((W, G, C))
    for c, ch in enumerate(config.channels):
        truth = config.channel_truth[ch]
        national = truth.weekly_spend * _flight(truth.flighting, W, rng)
        tilt = rng.lognormal(0.0, config.geo_spend_dispersion, (W, G)) * geo_share[None, :]
        planned[:, :, c] = national[:, None] * tilt / tilt.sum(axis=1, keepdims=True)
    if spend_override is not None:
        planned = np.asarray(spend_override, dtype=float)

    kappa = np.array(
        [
            max(
                geometric_adstock(
                    planned[:, :, c].sum(axis=1), config.channel_truth[ch].adstock_alpha
                ).mean(),
                1e-9,
            )
            for c, ch in enumerate(config.channels)
        ]
    )

    season_phase = float(rng.uniform(0, 2 * np.pi))
    promo_days = np.zeros(W)
    n_promos = max(1, round(W / 52 * 5))
    for start_week in rng.choice(np.arange(1, W - 1), size=min(n_promos, W - 2), replace=False):
        promo_days[start_week] = int(rng.integers(3, 8))
    geo_base = geo_share * rng.lognormal(0.0, 0.1, G)
    geo_base = geo_base / geo_base.sum()
    baseline = baseline_revenue(config, np.arange(W), season_phase, geo_base, promo_days)
    noise = rng.lognormal(-(config.noise_sigma**2) / 2, config.noise_sigma, (W, G))

    treatment: dict[int, np.ndarray] = {}
    for i, exp in enumerate(config.active_experiments()):
        treatment[i] = np.sort(rng.choice(G, size=exp.treated_count(G), replace=False))

    market = Market(
        config=config,
        geo_share=geo_share,
        planned_spend=planned,
        kappa=kappa,
        beta=np.ones(C),
        baseline=baseline,
        promo_days=promo_days,
        noise=noise,
        treatment_geos=treatment,
        season_phase=season_phase,
        geo_base=geo_base,
    )
    return market


def calibrate_beta(market: Market, actual_spend: np.ndarray) -> None:
    """Scale each channel so its true average ROAS on the actual spend is the configured one."""
    market.beta = np.ones(len(market.channels))
    unit = market.response(actual_spend)
    for c, ch in enumerate(market.channels):
        spend = actual_spend[:, :, c].sum()
        contrib = unit[:, :, c].sum()
        market.beta[c] = (
            market.config.channel_truth[ch].roas * spend / contrib if contrib > 0 else 0.0
        )


def experiment_truth(market: Market, actual_spend: np.ndarray) -> list[dict]:
    """True incremental revenue and lift of each holdout, within its window, in its treatment geos."""
    out = []
    base = market.expected_revenue(actual_spend)
    for i, exp in enumerate(market.config.active_experiments()):
        counterfactual_spend = market.actual_spend(skip=i)
        cf = market.expected_revenue(counterfactual_spend)
        weeks = slice(exp.start_week, exp.start_week + exp.weeks)
        geos = market.treatment_geos[i]
        incremental = float((cf[weeks][:, geos] - base[weeks][:, geos]).sum())
        cf_total = float(cf[weeks][:, geos].sum())
        # The dark weeks' adstock keeps costing revenue after spend resumes; window plus
        # cool-down holds the whole loss, which per dark week is the steady-state effect.
        tail = slice(exp.start_week, min(exp.start_week + exp.weeks + ADSTOCK_L_MAX - 1, len(cf)))
        with_carryover = float((cf[tail][:, geos] - base[tail][:, geos]).sum())
        out.append(
            {
                "index": i,
                "plan": exp,
                "incremental_revenue": incremental,
                "counterfactual_revenue": cf_total,
                "lift_pct": incremental / cf_total if cf_total else 0.0,
                "incremental_revenue_with_carryover": with_carryover,
                "cooldown_weeks": tail.stop - exp.start_week - exp.weeks,
            }
        )
    return out


def marginal_roas(market: Market, actual_spend: np.ndarray, step: float = 0.01) -> np.ndarray:
    """d(contribution)/d(spend) per channel for a proportional step on all weeks and geos."""
    base = market.response(actual_spend).sum(axis=(0, 1))
    out = np.zeros(len(market.channels))
    for c in range(len(market.channels)):
        bumped = actual_spend.copy()
        bumped[:, :, c] *= 1 + step
        delta_spend = actual_spend[:, :, c].sum() * step
        if delta_spend > 0:
            out[c] = (market.response(bumped)[:, :, c].sum() - base[c]) / delta_spend
    return out
