"""User-level A/B tests: CUPED difference in means and an always-valid sequential test (mSPRT).

Both compare a per-user metric between a treatment and a control group. `incremental` is the
difference in means times the number of treated users: what treatment added to the treated
group's total, observed - counterfactual, as in the geo estimators.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from models.experiments.result import IncrementalityEstimate

# Default mixing SD of the mSPRT, in units of the per-user SD of the metric. The boundary
# grows only with log(tau^2 / Var(diff)), so one value serves from 10^3 to 10^6 users per arm:
# with 0.05 the rejection threshold stays at about 3.1-3.6 standard errors over that range.
DEFAULT_TAU_SD = 0.05


def _as_sample(values: Any, name: str, min_size: int = 2) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one value per user), got {arr.shape}")
    if len(arr) < min_size:
        raise ValueError(f"{name} has {len(arr)} values; need at least {min_size} users")
    if not np.isfinite(arr).all():
        raise ValueError(
            f"{name} has {int((~np.isfinite(arr)).sum())} NaN or infinite values; "
            "impute them (e.g. 0 for users without revenue) or drop those users"
        )
    return arr


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _welch(
    y_treat: np.ndarray,
    y_ctrl: np.ndarray,
    alpha: float,
    method: str,
    experiment_id: str,
    metric: str,
    extra: dict[str, Any],
    raw: tuple[np.ndarray, np.ndarray],
) -> IncrementalityEstimate:
    """Welch test on (possibly CUPED-adjusted) outcomes; lift relative to the control mean."""
    n_t, n_c = len(y_treat), len(y_ctrl)
    m_t, m_c = float(y_treat.mean()), float(y_ctrl.mean())
    v_t, v_c = float(y_treat.var(ddof=1)) / n_t, float(y_ctrl.var(ddof=1)) / n_c
    diff = m_t - m_c
    se = math.sqrt(v_t + v_c)
    if se == 0.0:
        raise ValueError("both groups have constant outcomes: the difference has no variance")
    df = (v_t + v_c) ** 2 / (v_t**2 / (n_t - 1) + v_c**2 / (n_c - 1))  # Welch-Satterthwaite
    t_stat = diff / se
    p_value = float(2.0 * stats.t.sf(abs(t_stat), df))
    q = float(stats.t.ppf(1.0 - alpha / 2.0, df))
    if m_c != 0.0:
        ratio = m_t / m_c
        # Delta method for m_t / m_c - 1 with independent groups.
        se_lift = math.sqrt(v_t + ratio**2 * v_c) / abs(m_c)
        lift, lift_lo, lift_hi = ratio - 1.0, ratio - 1.0 - q * se_lift, ratio - 1.0 + q * se_lift
    else:
        lift = lift_lo = lift_hi = math.nan
    observed = float(raw[0].sum())
    incremental = diff * n_t
    inputs = {
        "mean_treat": m_t,
        "mean_ctrl": m_c,
        "raw_mean_treat": float(raw[0].mean()),
        "raw_mean_ctrl": float(raw[1].mean()),
        "diff": diff,
        "diff_ci": [diff - q * se, diff + q * se],
        "se": se,
        "t_stat": t_stat,
        "df": df,
        **extra,
    }
    return IncrementalityEstimate(
        experiment_id=experiment_id,
        method=method,
        metric=metric,
        lift_pct=lift,
        lift_ci_low=lift_lo,
        lift_ci_high=lift_hi,
        incremental=incremental,
        incremental_ci_low=(diff - q * se) * n_t,
        incremental_ci_high=(diff + q * se) * n_t,
        p_value=p_value,
        ci_level=1.0 - alpha,
        counterfactual=observed - incremental,
        observed=observed,
        n_treated=n_t,
        n_control=n_c,
        n_pre=1 if method.startswith("cuped") else 0,
        n_post=1,
        inputs=inputs,
    )


def difference_in_means(
    y_treat: Sequence[float] | np.ndarray,
    y_ctrl: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
    experiment_id: str = "",
    metric: str = "revenue",
) -> IncrementalityEstimate:
    """Plain Welch difference in means (CUPED without a covariate), for comparison."""
    _check_alpha(alpha)
    yt, yc = _as_sample(y_treat, "y_treat"), _as_sample(y_ctrl, "y_ctrl")
    return _welch(yt, yc, alpha, "difference_in_means", experiment_id, metric, {}, (yt, yc))


def cuped_difference_in_means(
    y_treat: Sequence[float] | np.ndarray,
    y_ctrl: Sequence[float] | np.ndarray,
    x_treat: Sequence[float] | np.ndarray,
    x_ctrl: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
    experiment_id: str = "",
    metric: str = "revenue",
) -> IncrementalityEstimate:
    """CUPED (Deng et al. 2013): difference in means of y - theta (x - mean x), Welch test.

    x is a pre-experiment covariate per user (typically the same metric before assignment);
    theta = cov(x, y) / var(x) on both groups pooled, which randomisation makes independent of
    the treatment, so the adjusted difference stays unbiased while its variance shrinks by
    about corr(x, y)^2. The lift is relative to the adjusted control mean (same expectation as
    the raw one, less noise); `inputs` has theta and the variance reduction against the plain
    difference in means.
    """
    _check_alpha(alpha)
    yt, yc = _as_sample(y_treat, "y_treat"), _as_sample(y_ctrl, "y_ctrl")
    xt, xc = _as_sample(x_treat, "x_treat"), _as_sample(x_ctrl, "x_ctrl")
    if len(xt) != len(yt) or len(xc) != len(yc):
        raise ValueError(
            f"covariates must have one value per user: x_treat {len(xt)} vs y_treat {len(yt)}, "
            f"x_ctrl {len(xc)} vs y_ctrl {len(yc)}"
        )
    x_all, y_all = np.concatenate([xt, xc]), np.concatenate([yt, yc])
    var_x = float(x_all.var(ddof=1))
    if var_x == 0.0:
        raise ValueError(
            "the covariate is constant: it cannot reduce variance; use difference_in_means"
        )
    theta = float(np.cov(x_all, y_all, ddof=1)[0, 1]) / var_x
    x_mean = float(x_all.mean())
    adj_t, adj_c = yt - theta * (xt - x_mean), yc - theta * (xc - x_mean)
    se_plain = math.sqrt(yt.var(ddof=1) / len(yt) + yc.var(ddof=1) / len(yc))
    se_cuped = math.sqrt(adj_t.var(ddof=1) / len(yt) + adj_c.var(ddof=1) / len(yc))
    extra = {
        "theta": theta,
        "covariate_correlation": float(np.corrcoef(x_all, y_all)[0, 1]),
        "se_plain": se_plain,
        "variance_reduction": 1.0 - (se_cuped / se_plain) ** 2 if se_plain > 0 else math.nan,
    }
    return _welch(
        adj_t, adj_c, alpha, "cuped_difference_in_means", experiment_id, metric, extra, (yt, yc)
    )


# --- always-valid sequential testing (mSPRT) ---------------------------------------------------------


def _log_mixture_lr(diff: np.ndarray, var: np.ndarray, tau2: np.ndarray) -> np.ndarray:
    """log of the normal-mixture likelihood ratio for diff ~ N(theta, var), theta ~ N(0, tau2)."""
    return 0.5 * np.log(var / (var + tau2)) + tau2 * diff**2 / (2.0 * var * (var + tau2))


def always_valid_p_values(
    diff: Sequence[float] | np.ndarray,
    var: Sequence[float] | np.ndarray,
    tau2: float | Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Always-valid p-values of the mSPRT (Johari, Koomen, Pekelis & Walsh 2017/2022).

    diff[k] is the difference in means at look k and var[k] its variance (s_t^2/n_t +
    s_c^2/n_c). The mixture likelihood ratio L_k = sqrt(var/(var+tau2)) exp(tau2 diff^2 /
    (2 var (var+tau2))) is a martingale under 'no difference', so P(sup_k L_k >= 1/alpha) <=
    alpha and p_k = min(1, min_{j<=k} 1/L_j) may be checked after every look. A look whose
    variance is not finite (too few users yet) has p = 1.
    """
    d, v = np.asarray(diff, dtype=float), np.asarray(var, dtype=float)
    t2 = np.broadcast_to(np.asarray(tau2, dtype=float), d.shape)
    if (t2 <= 0).any():
        raise ValueError("tau2 (mixing variance) must be positive")
    ok = np.isfinite(v) & (v > 0) & np.isfinite(d)
    log_lr = np.full(d.shape, -np.inf)
    log_lr[ok] = _log_mixture_lr(d[ok], v[ok], t2[ok])
    return np.minimum.accumulate(np.minimum(1.0, np.exp(-log_lr)))


def confidence_sequence(
    diff: Sequence[float] | np.ndarray,
    var: Sequence[float] | np.ndarray,
    tau2: float | Sequence[float] | np.ndarray,
    alpha: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Always-valid (1 - alpha) confidence sequence for the difference: the mSPRT inverted.

    At each look diff +- sqrt(var (var+tau2)/tau2 (2 log(1/alpha) + log((var+tau2)/var))),
    intersected with every earlier look; it covers the true difference at all looks at once
    with probability >= 1 - alpha.
    """
    _check_alpha(alpha)
    d, v = np.asarray(diff, dtype=float), np.asarray(var, dtype=float)
    t2 = np.broadcast_to(np.asarray(tau2, dtype=float), d.shape)
    ok = np.isfinite(v) & (v > 0) & np.isfinite(d)
    half = np.full(d.shape, np.inf)
    vv, tt = v[ok], t2[ok]
    half[ok] = np.sqrt(vv * (vv + tt) / tt * (2.0 * np.log(1.0 / alpha) + np.log((vv + tt) / vv)))
    low = np.where(ok, d - half, -np.inf)
    high = np.where(ok, d + half, np.inf)
    return np.maximum.accumulate(low), np.minimum.accumulate(high)


@dataclass(frozen=True)
class SequentialResult:
    """Per-look state of an mSPRT run over cumulative data (one entry per look)."""

    looks: np.ndarray  # the look's day (the largest arrival day included)
    n_treat: np.ndarray
    n_ctrl: np.ndarray
    mean_treat: np.ndarray
    mean_ctrl: np.ndarray
    diff: np.ndarray
    var: np.ndarray  # variance of diff
    tau2: np.ndarray
    p_values: np.ndarray  # always valid
    ci_low: np.ndarray  # confidence sequence, running intersection
    ci_high: np.ndarray
    alpha: float
    first_rejection: int | None  # index of the first look with p <= alpha

    @property
    def first_rejection_day(self) -> Any:
        return None if self.first_rejection is None else self.looks[self.first_rejection].item()

    def to_estimate(
        self, experiment_id: str = "", metric: str = "revenue", look: int = -1
    ) -> IncrementalityEstimate:
        """The state at `look` (default: the last) as a table row.

        The lift interval divides the confidence sequence by the control mean, ignoring that
        mean's own noise (negligible at the sample sizes where sequential tests stop).
        """
        k = look % len(self.looks)
        m_c, n_t = float(self.mean_ctrl[k]), int(self.n_treat[k])
        observed = float(self.mean_treat[k]) * n_t
        diff, low, high = float(self.diff[k]), float(self.ci_low[k]), float(self.ci_high[k])
        scale = 1.0 / m_c if m_c else math.nan
        return IncrementalityEstimate(
            experiment_id=experiment_id,
            method="msprt",
            metric=metric,
            lift_pct=diff * scale,
            lift_ci_low=low * scale if m_c > 0 else high * scale,
            lift_ci_high=high * scale if m_c > 0 else low * scale,
            incremental=diff * n_t,
            incremental_ci_low=low * n_t,
            incremental_ci_high=high * n_t,
            p_value=float(self.p_values[k]),
            ci_level=1.0 - self.alpha,
            counterfactual=observed - diff * n_t,
            observed=observed,
            n_treated=n_t,
            n_control=int(self.n_ctrl[k]),
            n_pre=0,
            n_post=k + 1,
            inputs={
                "look_day": self.looks[k].item(),
                "tau2": float(self.tau2[k]),
                "first_rejection_day": self.first_rejection_day,
                "always_valid": True,
            },
        )


def _cumulative(
    y: np.ndarray, day: np.ndarray, looks: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = np.searchsorted(looks, day)
    n = np.cumsum(np.bincount(idx, minlength=len(looks)))
    s = np.cumsum(np.bincount(idx, weights=y, minlength=len(looks)))
    ss = np.cumsum(np.bincount(idx, weights=y * y, minlength=len(looks)))
    return n.astype(float), s, ss


def sequential_test(
    y_treat: Sequence[float] | np.ndarray,
    day_treat: Sequence[int] | np.ndarray,
    y_ctrl: Sequence[float] | np.ndarray,
    day_ctrl: Sequence[int] | np.ndarray,
    alpha: float = 0.05,
    tau: float | None = None,
    sigma2: float | None = None,
) -> SequentialResult:
    """mSPRT on cumulative data, one look per distinct arrival day.

    Each user contributes their outcome from the day they arrived (`day_*`: any sortable
    label, e.g. day numbers or dates). At each look the difference of cumulative means and its
    variance are formed; the variance uses `sigma2` (a known per-user variance, both arms) or
    else each arm's sample variance so far (a plug-in that is accurate once an arm has a few
    dozen users). `tau` is the mixing SD on the difference in metric units; by default
    DEFAULT_TAU_SD x the pooled per-user SD at each look.
    """
    _check_alpha(alpha)
    yt, yc = _as_sample(y_treat, "y_treat", 1), _as_sample(y_ctrl, "y_ctrl", 1)
    dt, dc = np.asarray(day_treat), np.asarray(day_ctrl)
    if dt.shape != yt.shape or dc.shape != yc.shape:
        raise ValueError(
            f"days must have one entry per user: day_treat {dt.shape} vs y_treat {yt.shape}, "
            f"day_ctrl {dc.shape} vs y_ctrl {yc.shape}"
        )
    if tau is not None and tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    if sigma2 is not None and sigma2 <= 0:
        raise ValueError(f"sigma2 must be positive, got {sigma2}")
    looks = np.unique(np.concatenate([dt, dc]))
    n_t, s_t, ss_t = _cumulative(yt, dt, looks)
    n_c, s_c, ss_c = _cumulative(yc, dc, looks)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_t, mean_c = s_t / n_t, s_c / n_c
        if sigma2 is None:
            var_t = np.clip((ss_t - n_t * mean_t**2) / (n_t - 1), 0.0, None)
            var_c = np.clip((ss_c - n_c * mean_c**2) / (n_c - 1), 0.0, None)
        else:
            var_t = var_c = np.full(len(looks), float(sigma2))
        enough = (n_t >= 2) & (n_c >= 2)
        var = np.where(enough, var_t / n_t + var_c / n_c, np.nan)
        pooled_sd = np.sqrt(((n_t - 1) * var_t + (n_c - 1) * var_c) / (n_t + n_c - 2))
    diff = mean_t - mean_c
    if tau is None:
        tau2 = np.where(enough & (pooled_sd > 0), (DEFAULT_TAU_SD * pooled_sd) ** 2, 1.0)
    else:
        tau2 = np.full(len(looks), float(tau) ** 2)
    p_values = always_valid_p_values(diff, var, tau2)
    ci_low, ci_high = confidence_sequence(diff, var, tau2, alpha)
    hits = np.flatnonzero(p_values <= alpha)
    return SequentialResult(
        looks=looks,
        n_treat=n_t.astype(int),
        n_ctrl=n_c.astype(int),
        mean_treat=mean_t,
        mean_ctrl=mean_c,
        diff=diff,
        var=var,
        tau2=tau2,
        p_values=p_values,
        ci_low=ci_low,
        ci_high=ci_high,
        alpha=alpha,
        first_rejection=int(hits[0]) if len(hits) else None,
    )
