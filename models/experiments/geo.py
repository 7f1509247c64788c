"""Geo experiments: (augmented) synthetic control, conformal inference and placebo-in-space tests.

Input is a wide panel (rows = sorted periods, columns = geos, values = the metric); the treated
geos are summed into one series and compared with a weighted combination of the other geos.
Sign convention: adloop's geo tests are holdouts (the channel is off in the treated geos), so
`incremental` = observed - counterfactual is negative for a working channel; callers flip the
sign to report the channel's incremental revenue.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from models.experiments.result import IncrementalityEstimate

SYNTHETIC_CONTROL = "synthetic_control"
AUGMENTED_SYNTHETIC_CONTROL = "augmented_synthetic_control"
METHODS = (SYNTHETIC_CONTROL, AUGMENTED_SYNTHETIC_CONTROL)
MIN_PRE_PERIODS = 8
MIN_DONORS = 2
# Ridge penalties of the augmented SC, as multiples of the mean eigenvalue of the centred donor
# Gram matrix, so that the same ratio means the same shrinkage whatever the panel's length.
RIDGE_RATIOS = tuple(float(r) for r in np.logspace(-3, 2, 11))
CV_FOLDS = 5


# --- inputs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeoPanel:
    """Validated arrays: the treated aggregate and the donors, cut at the end of the post period."""

    periods: pd.Index
    treated: tuple[str, ...]
    donors: tuple[str, ...]
    y1: np.ndarray  # (T,) sum of the treated geos
    y0: np.ndarray  # (T, n_donors)
    n_pre: int
    n_post: int

    @property
    def post_start(self) -> Any:
        return self.periods[self.n_pre]

    @property
    def post_end(self) -> Any:
        return self.periods[-1]


def prepare_panel(
    y: pd.DataFrame,
    treated: Sequence[str] | str,
    post_start: Any,
    post_end: Any = None,
    controls: Sequence[str] | None = None,
) -> GeoPanel:
    """Check a wide panel and split it; every problem is a ValueError that says what to fix."""
    if not isinstance(y, pd.DataFrame):
        raise ValueError(f"y must be a pandas DataFrame (periods x geos), got {type(y).__name__}")
    if y.columns.has_duplicates:
        dupes = sorted({str(c) for c in y.columns[y.columns.duplicated()]})
        raise ValueError(f"y has duplicated geo columns {dupes}; aggregate them first")
    if not y.index.is_unique or not y.index.is_monotonic_increasing:
        raise ValueError("y.index must hold unique periods sorted ascending; sort_index() it first")
    treated_list = [treated] if isinstance(treated, str) else list(treated)
    if not treated_list:
        raise ValueError("treated is empty: name at least one treated geo")
    if len(set(treated_list)) != len(treated_list):
        raise ValueError(f"treated lists a geo twice: {treated_list}")
    missing = [g for g in treated_list if g not in y.columns]
    if missing:
        raise ValueError(f"treated geos {missing} are not columns of y (geos: {list(y.columns)})")
    if controls is None:
        donor_list = [g for g in y.columns if g not in treated_list]
    else:
        donor_list = list(controls)
        missing = [g for g in donor_list if g not in y.columns]
        if missing:
            raise ValueError(f"control geos {missing} are not columns of y")
        overlap = [g for g in donor_list if g in treated_list]
        if overlap:
            raise ValueError(f"geos {overlap} are both treated and controls")
    if len(donor_list) < MIN_DONORS:
        raise ValueError(
            f"need at least {MIN_DONORS} control geos, got {len(donor_list)}; add untreated geos"
        )
    try:
        is_post = np.asarray(y.index >= post_start)
        in_window = is_post if post_end is None else np.asarray(y.index <= post_end)
        reversed_window = post_end is not None and _before(post_end, post_start)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"post_start/post_end ({post_start!r}, {post_end!r}) cannot be compared with the "
            f"index of y ({y.index.dtype}); pass periods of the same type"
        ) from err
    if reversed_window:
        raise ValueError(f"post_end {post_end} is before post_start {post_start}")
    n_pre = int((~is_post).sum())
    n_post = int((is_post & in_window).sum())
    if n_post < 1:
        raise ValueError(f"no period of y falls in the post window [{post_start}, {post_end}]")
    if n_pre < MIN_PRE_PERIODS:
        raise ValueError(
            f"only {n_pre} pre-period points before {post_start}; need at least "
            f"{MIN_PRE_PERIODS} to fit the synthetic control: use a longer history"
        )
    used = y.iloc[: n_pre + n_post]
    values = used[treated_list + donor_list].to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        cols = [str(c) for c in np.array(treated_list + donor_list)[bad.any(axis=0)]]
        rows = [str(r) for r in used.index[bad.any(axis=1)][:5]]
        raise ValueError(
            f"y has NaN or infinite values in geos {cols} (periods {rows}...); fill them "
            "(e.g. with 0 for no sales) or drop those geos before estimating"
        )
    pre_means = values[:n_pre].mean(axis=0)
    y1 = values[:, : len(treated_list)].sum(axis=1)
    if y1[:n_pre].mean() <= 0 or (pre_means[len(treated_list) :] <= 0).any():
        low = [
            g for g, m in zip(treated_list + donor_list, pre_means, strict=True) if m <= 0
        ] or treated_list
        raise ValueError(
            f"geos {low} have a non-positive mean in the pre period; the estimator compares "
            "relative movements, so drop them or use a positive metric"
        )
    return GeoPanel(
        periods=used.index,
        treated=tuple(str(g) for g in treated_list),
        donors=tuple(str(g) for g in donor_list),
        y1=y1,
        y0=values[:, len(treated_list) :],
        n_pre=n_pre,
        n_post=n_post,
    )


def _before(a: Any, b: Any) -> bool:
    try:
        return bool(a < b)
    except TypeError:
        # Mixed spellings of dates, e.g. a string and a Timestamp.
        return bool(pd.Timestamp(a) < pd.Timestamp(b))


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


# --- fitting ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticControlFit:
    """Weights on the donors, in units of each series' mean over the fit periods.

    Every series is divided by its mean over the periods the weights were fitted on. For the
    multiplicative structure of revenue (geo size x common movements) this makes a 3-geo treated
    aggregate comparable with single donors, so simplex weights (>= 0, summing to 1, Abadie) can
    match it; in revenue units they are non-negative weights that sum to the size ratio. Because
    every normalised series has mean 1 over the fit periods, the de-meaned SC with an intercept
    (Doudchenko-Imbens, Ferman-Pinto) gives the same weights with a zero intercept.
    """

    sc_weights: np.ndarray  # simplex weights of the plain synthetic control
    weights: np.ndarray  # weights used to predict (ridge-augmented for ASC; sum to 1, may be < 0)
    treated_scale: float
    donor_scale: np.ndarray
    ridge_lambda: float  # 0 for the plain synthetic control

    def predict(self, y0: np.ndarray) -> np.ndarray:
        """Counterfactual treated series, in the treated series' units, for donor rows `y0`."""
        return self.treated_scale * ((y0 / self.donor_scale) @ self.weights)


def _simplex_lstsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin ||a w - b|| over w >= 0, sum(w) = 1, by NNLS with the constraint as a heavy row."""
    n = a.shape[1]
    heavy = 1e3 * max(1.0, float(np.sqrt((a**2).sum(axis=0).max())))
    w, _ = nnls(np.vstack([a, np.full((1, n), heavy)]), np.append(b, heavy), maxiter=50 * n)
    total = w.sum()
    return w / total if total > 0 else np.full(n, 1.0 / n)


def _ridge_directions(
    z0: np.ndarray, resid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigen-decomposition pieces of the ridge correction (Z'Z + lam I)^-1 Z' resid, Z centred."""
    zc = z0 - z0.mean(axis=1, keepdims=True)
    eigval, eigvec = np.linalg.eigh(zc.T @ zc)
    eigval = np.clip(eigval, 0.0, None)
    return eigval, eigvec, eigvec.T @ (zc.T @ resid)


def fit_weights(
    y1: np.ndarray,
    y0: np.ndarray,
    method: str = AUGMENTED_SYNTHETIC_CONTROL,
    ridge_ratio: float = 1.0,
) -> SyntheticControlFit:
    """Fit (augmented) synthetic-control weights on the rows given (the fit periods).

    The augmented SC of Ben-Michael, Feller & Rothstein (2021) adds to the SC prediction a ridge
    regression (with intercept, across donors) of the outcome on the fit-period trajectory,
    evaluated at the treated unit's imbalance. That is again a weighting estimator:
    gamma = w_sc + (Zc'Zc + lam I)^-1 Zc' (z1 - Z w_sc), with Zc the donors centred across geos,
    so gamma sums to 1 and can go negative to extrapolate beyond the donors' convex hull.
    lam = ridge_ratio x mean eigenvalue of Zc'Zc; a large ratio gives back the plain SC. The
    plain SC ignores `ridge_ratio`.
    """
    check_method(method)
    if method == AUGMENTED_SYNTHETIC_CONTROL and not ridge_ratio > 0:
        raise ValueError(f"ridge_ratio must be positive, got {ridge_ratio}")
    treated_scale = float(y1.mean())
    donor_scale = y0.mean(axis=0)
    z1 = y1 / treated_scale
    z0 = y0 / donor_scale
    w = _simplex_lstsq(z0, z1)
    if method == SYNTHETIC_CONTROL:
        return SyntheticControlFit(w, w, treated_scale, donor_scale, 0.0)
    eigval, eigvec, proj = _ridge_directions(z0, z1 - z0 @ w)
    lam = ridge_ratio * max(float(eigval.mean()), 1e-12)
    gamma = w + eigvec @ (proj / (eigval + lam))
    return SyntheticControlFit(w, gamma, treated_scale, donor_scale, lam)


def choose_ridge_ratio(
    y1_pre: np.ndarray,
    y0_pre: np.ndarray,
    block: int,
    ratios: Sequence[float] = RIDGE_RATIOS,
) -> float:
    """Ridge ratio of the augmented SC by blocked cross-validation over the pre period.

    Up to 5 contiguous blocks of `block` periods (the post length), counted back from the end of
    the pre period, are held out in turn; the weights are fitted on the other pre periods and
    the held-out block predicted. As in Ben-Michael et al.'s augsynth, the largest ratio (most
    shrinkage towards SC) within one standard error of the best mean error is kept.
    """
    n_pre = len(y1_pre)
    h = int(np.clip(block, 1, max(1, n_pre // 4)))
    n_folds = min(CV_FOLDS, n_pre // h - 1)
    ratio_arr = np.asarray(ratios, dtype=float)
    errors = np.empty((n_folds, len(ratio_arr)))
    for k in range(n_folds):
        test = np.zeros(n_pre, dtype=bool)
        test[n_pre - (k + 1) * h : n_pre - k * h] = True
        y1_fit, y0_fit = y1_pre[~test], y0_pre[~test]
        treated_scale, donor_scale = y1_fit.mean(), y0_fit.mean(axis=0)
        z1, z0 = y1_fit / treated_scale, y0_fit / donor_scale
        w = _simplex_lstsq(z0, z1)
        eigval, eigvec, proj = _ridge_directions(z0, z1 - z0 @ w)
        lams = ratio_arr * max(float(eigval.mean()), 1e-12)
        gammas = w[:, None] + eigvec @ (proj[:, None] / (eigval[:, None] + lams[None, :]))
        pred = (y0_pre[test] / donor_scale) @ gammas
        errors[k] = ((y1_pre[test, None] / treated_scale - pred) ** 2).mean(axis=0)
    mean = errors.mean(axis=0)
    se = errors.std(axis=0, ddof=1) / np.sqrt(n_folds) if n_folds > 1 else np.zeros_like(mean)
    best = int(np.argmin(mean))
    within = np.flatnonzero(mean <= mean[best] + se[best])
    return float(ratio_arr[within].max())


def _ridge_ratio_for(panel: GeoPanel, method: str, ridge_ratio: float | None) -> float:
    if method == SYNTHETIC_CONTROL:
        return 0.0
    if ridge_ratio is not None:
        if ridge_ratio <= 0:
            raise ValueError(f"ridge_ratio must be positive, got {ridge_ratio}")
        return float(ridge_ratio)
    return choose_ridge_ratio(panel.y1[: panel.n_pre], panel.y0[: panel.n_pre], panel.n_post)


@dataclass(frozen=True)
class GeoFit:
    """Point estimate of a geo experiment: weights fitted on the pre period, applied after."""

    panel: GeoPanel
    method: str
    fit: SyntheticControlFit
    ridge_ratio: float
    counterfactual_series: pd.Series  # every period up to post_end
    observed_series: pd.Series

    @property
    def observed(self) -> float:
        return float(self.observed_series.iloc[self.panel.n_pre :].sum())

    @property
    def counterfactual(self) -> float:
        return float(self.counterfactual_series.iloc[self.panel.n_pre :].sum())

    @property
    def incremental(self) -> float:
        return self.observed - self.counterfactual

    @property
    def lift_pct(self) -> float:
        return self.incremental / self.counterfactual if self.counterfactual else math.nan

    @property
    def pre_residuals(self) -> np.ndarray:
        n = self.panel.n_pre
        return self.observed_series.to_numpy()[:n] - self.counterfactual_series.to_numpy()[:n]

    @property
    def pre_rmse(self) -> float:
        return float(np.sqrt(np.mean(self.pre_residuals**2)))

    @property
    def pre_rmse_pct(self) -> float:
        """Pre-period RMSE relative to the treated series' pre-period mean."""
        return self.pre_rmse / float(self.panel.y1[: self.panel.n_pre].mean())

    def donor_weights(self, augmented: bool = True) -> dict[str, float]:
        w = self.fit.weights if augmented else self.fit.sc_weights
        return {g: round(float(v), 6) for g, v in zip(self.panel.donors, w, strict=True)}


def _fit_panel(panel: GeoPanel, method: str, ridge_ratio: float) -> GeoFit:
    n = panel.n_pre
    fit = fit_weights(panel.y1[:n], panel.y0[:n], method, ridge_ratio)
    return GeoFit(
        panel=panel,
        method=method,
        fit=fit,
        ridge_ratio=ridge_ratio,
        counterfactual_series=pd.Series(fit.predict(panel.y0), index=panel.periods),
        observed_series=pd.Series(panel.y1, index=panel.periods),
    )


def synthetic_control(
    y: pd.DataFrame,
    treated: Sequence[str] | str,
    post_start: Any,
    post_end: Any = None,
    method: str = AUGMENTED_SYNTHETIC_CONTROL,
    controls: Sequence[str] | None = None,
    ridge_ratio: float | None = None,
) -> GeoFit:
    """Fit SC or ASC on the pre period and project the treated aggregate's counterfactual."""
    check_method(method)
    panel = prepare_panel(y, treated, post_start, post_end, controls)
    return _fit_panel(panel, method, _ridge_ratio_for(panel, method, ridge_ratio))


# --- conformal inference (Chernozhukov, Wüthrich & Zhu 2021) -----------------------------------------


def block_permutation_p_value(residuals: np.ndarray, n_post: int) -> float:
    """p-value of S(u) = |mean of u over the post block| against all T cyclic shifts of u.

    The post periods are the last `n_post` entries. Moving blocks keep the residuals' serial
    dependence, which is why CWZ prefer them to iid permutations; the identity shift counts, so
    the smallest attainable p-value is 1/T. CWZ's default S = mean |u_post| also reacts to a
    change of spread; the mean targets the average effect the experiment is about, and its
    inversion is never empty (theta = the mean post gap always fits).
    """
    t = len(residuals)
    idx = (np.arange(t - n_post, t)[None, :] + np.arange(t)[:, None]) % t
    stats = np.abs(residuals[idx].mean(axis=1))
    return float(np.mean(stats >= stats[0] * (1.0 - 1e-10)))


def conformal_p(
    y1: np.ndarray,
    y0: np.ndarray,
    n_post: int,
    theta: float,
    method: str,
    ridge_ratio: float,
) -> float:
    """p-value of the sharp null 'the effect is theta in every post period' (last n_post rows).

    Under the null the treated series without treatment is y1 - theta in the post period; the
    weights are refitted on all T periods (so the estimator treats periods symmetrically, which
    the exactness argument needs) and the relative residuals (y - fit) / fit are tested by block
    permutation. The ridge ratio is held fixed across refits: it is chosen once on the pre period.
    Validity rests on the residuals being stationary: with under a year of weekly history and
    geos whose seasonality differs, the misfit peaks at the series' end and the test over-rejects.
    """
    y_null = y1.copy()
    y_null[-n_post:] -= theta
    fit = fit_weights(y_null, y0, method, ridge_ratio)
    fitted = fit.predict(y0)
    # Revenue noise is multiplicative, so raw residuals swing with the seasonal level and are not
    # exchangeable over time; residuals relative to the fitted level are (close to) stationary.
    level = np.maximum(fitted, 1e-6 * float(np.abs(y_null).mean()))
    return block_permutation_p_value((y_null - fitted) / level, n_post)


def _theta_interval(
    panel: GeoPanel,
    method: str,
    ridge_ratio: float,
    alpha: float,
    center: float,
    scale: float,
    grid_size: int,
    bisections: int = 10,
) -> tuple[float, float]:
    """Convex hull of {theta: p(theta) > alpha}: a grid around `center`, refined by bisection."""
    n_total = len(panel.y1)
    if 1.0 / n_total > alpha:
        # Even an enormous effect cannot reach p <= alpha with T shifts: no finite interval.
        return -math.inf, math.inf

    def p_of(theta: float) -> float:
        return conformal_p(panel.y1, panel.y0, panel.n_post, theta, method, ridge_ratio)

    half = 4.0 * scale
    for _ in range(12):
        grid = center + np.linspace(-half, half, grid_size)
        accepted = np.array([p_of(th) > alpha for th in grid])
        if not accepted.any():
            # The accepted set fell between grid points: zoom in on the centre.
            half /= 4.0
            continue
        if accepted[0] or accepted[-1]:
            half *= 2.0
            continue
        break
    else:
        # Unbounded (a too-short panel) or empty (no constant effect fits): no usable interval.
        return (-math.inf, math.inf) if accepted.any() else (math.nan, math.nan)
    first, last = int(np.argmax(accepted)), len(accepted) - 1 - int(np.argmax(accepted[::-1]))

    def edge(rejected: float, accepted_at: float) -> float:
        for _ in range(bisections):
            mid = 0.5 * (rejected + accepted_at)
            if p_of(mid) > alpha:
                accepted_at = mid
            else:
                rejected = mid
        return accepted_at

    return edge(grid[first - 1], grid[first]), edge(grid[last + 1], grid[last])


def conformal_test(
    y: pd.DataFrame,
    treated: Sequence[str] | str,
    post_start: Any,
    post_end: Any = None,
    theta: float = 0.0,
    method: str = AUGMENTED_SYNTHETIC_CONTROL,
    controls: Sequence[str] | None = None,
    ridge_ratio: float | None = None,
) -> float:
    """Conformal p-value of a constant per-period effect `theta` (default: no effect)."""
    check_method(method)
    panel = prepare_panel(y, treated, post_start, post_end, controls)
    ratio = _ridge_ratio_for(panel, method, ridge_ratio)
    return conformal_p(panel.y1, panel.y0, panel.n_post, theta, method, ratio)


# --- placebo-in-space ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaceboResult:
    """Effects of fake treatments on control geos, and the rank p-value of the real one."""

    lift_pct: float  # the real estimate
    p_value: float  # (1 + #{|placebo lift| >= |lift|}) / (1 + n_placebos)
    placebo_size: int
    placebos: pd.DataFrame  # placebo_geos, lift_pct, incremental, pre_rmse_pct


def _placebo_sets(
    donors: Sequence[str], size: int, max_placebos: int, seed: int
) -> list[tuple[str, ...]]:
    n_sets = math.comb(len(donors), size)
    if n_sets <= max_placebos:
        return list(combinations(donors, size))
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, ...]] = set()
    while len(seen) < max_placebos:
        seen.add(tuple(sorted(rng.choice(len(donors), size, replace=False).tolist())))
    return [tuple(donors[i] for i in s) for s in sorted(seen)]


def _placebos(
    panel: GeoPanel,
    method: str,
    ridge_ratio: float,
    lift_pct: float,
    placebo_size: int | None,
    max_placebos: int,
    seed: int,
) -> PlaceboResult:
    n_donors = len(panel.donors)
    size = len(panel.treated) if placebo_size is None else placebo_size
    if size < 1:
        raise ValueError(f"placebo_size must be at least 1, got {size}")
    # Each placebo needs donors of its own among the remaining controls.
    size = min(size, n_donors - MIN_DONORS)
    if size < 1:
        raise ValueError(f"placebo tests need at least {MIN_DONORS + 1} control geos")
    rows = []
    for geos in _placebo_sets(panel.donors, size, max_placebos, seed):
        mask = np.array([g in geos for g in panel.donors])
        fake = GeoPanel(
            periods=panel.periods,
            treated=geos,
            donors=tuple(g for g, m in zip(panel.donors, mask, strict=True) if not m),
            y1=panel.y0[:, mask].sum(axis=1),
            y0=panel.y0[:, ~mask],
            n_pre=panel.n_pre,
            n_post=panel.n_post,
        )
        fit = _fit_panel(fake, method, ridge_ratio)
        rows.append(
            {
                "placebo_geos": ",".join(geos),
                "lift_pct": fit.lift_pct,
                "incremental": fit.incremental,
                "pre_rmse_pct": fit.pre_rmse_pct,
            }
        )
    placebos = pd.DataFrame(rows)
    extreme = int((placebos["lift_pct"].abs() >= abs(lift_pct) * (1.0 - 1e-10)).sum())
    return PlaceboResult(
        lift_pct=lift_pct,
        p_value=(1 + extreme) / (1 + len(placebos)),
        placebo_size=size,
        placebos=placebos,
    )


def placebo_in_space(
    y: pd.DataFrame,
    treated: Sequence[str] | str,
    post_start: Any,
    post_end: Any = None,
    method: str = AUGMENTED_SYNTHETIC_CONTROL,
    controls: Sequence[str] | None = None,
    placebo_size: int | None = None,
    max_placebos: int = 50,
    ridge_ratio: float | None = None,
    seed: int = 0,
) -> PlaceboResult:
    """Pretend sets of control geos were treated (real treated geos never serve as donors).

    Sets have the size of the treated set (capped so two donors remain), all of them when there
    are at most `max_placebos`, else a seeded random sample. The statistic is |lift_pct|, which
    is scale-free, so placebo aggregates of different sizes compare with the real one. Placebos
    reuse the real fit's ridge ratio. With few controls each placebo has a thin donor pool and
    fits worse than the real unit, which makes this p-value conservative.
    """
    check_method(method)
    panel = prepare_panel(y, treated, post_start, post_end, controls)
    ratio = _ridge_ratio_for(panel, method, ridge_ratio)
    real = _fit_panel(panel, method, ratio)
    return _placebos(panel, method, ratio, real.lift_pct, placebo_size, max_placebos, seed)


# --- the estimate ------------------------------------------------------------------------------------


def estimate_geo_lift(
    y: pd.DataFrame,
    treated: Sequence[str] | str,
    post_start: Any,
    post_end: Any = None,
    method: str = AUGMENTED_SYNTHETIC_CONTROL,
    alpha: float = 0.1,
    experiment_id: str = "",
    seed: int = 0,
    metric: str = "revenue",
    controls: Sequence[str] | None = None,
    ridge_ratio: float | None = None,
    max_placebos: int = 50,
    grid_size: int = 41,
) -> IncrementalityEstimate:
    """Lift of a geo experiment with conformal p-value and interval, placebo p-value in `inputs`.

    The interval is for a constant per-period effect theta on the treated aggregate, obtained by
    inverting the conformal test; incremental = n_post x theta and lift = incremental /
    (observed - incremental) map it to the reported bounds. The point estimate uses weights
    fitted on the pre period only. `seed` drives the placebo sampling when there are more than
    `max_placebos` placebo sets.
    """
    check_method(method)
    check_alpha(alpha)
    if grid_size < 5:
        raise ValueError(f"grid_size must be at least 5, got {grid_size}")
    panel = prepare_panel(y, treated, post_start, post_end, controls)
    ratio = _ridge_ratio_for(panel, method, ridge_ratio)
    est = _fit_panel(panel, method, ratio)
    n_post = panel.n_post
    p_value = conformal_p(panel.y1, panel.y0, n_post, 0.0, method, ratio)
    scale = max(float(np.std(est.pre_residuals)), 1e-6 * float(np.abs(panel.y1).mean()))
    theta_lo, theta_hi = _theta_interval(
        panel, method, ratio, alpha, est.incremental / n_post, scale, grid_size
    )
    inc_lo, inc_hi = n_post * theta_lo, n_post * theta_hi
    observed = est.observed

    def lift_at(incremental: float) -> float:
        if math.isinf(incremental):
            return incremental
        cf = observed - incremental
        return incremental / cf if cf > 0 else math.copysign(math.inf, incremental)

    placebo = _placebos(panel, method, ratio, est.lift_pct, None, max_placebos, seed)
    warnings = []
    if isinstance(panel.periods, pd.DatetimeIndex) and (
        panel.periods[panel.n_pre - 1] - panel.periods[0] < pd.Timedelta(days=364)
    ):
        warnings.append(
            "under a year of pre period: seasonal misfit can make the conformal test over-reject"
        )
    inputs = {
        "treated": list(panel.treated),
        "controls": list(panel.donors),
        "post_start": str(panel.post_start),
        "post_end": str(panel.post_end),
        "ridge_ratio": ratio if method == AUGMENTED_SYNTHETIC_CONTROL else None,
        "donor_weights": est.donor_weights(augmented=True),
        "sc_weights": est.donor_weights(augmented=False),
        "weights_note": "in units of each geo's pre-period mean; sum to 1",
        "pre_rmse": est.pre_rmse,
        "pre_rmse_pct": est.pre_rmse_pct,
        "ci_method": "conformal test inversion, constant per-period effect",
        "conformal_statistic": "|mean relative post residual|, moving-block permutations",
        "conformal_min_p_value": 1.0 / len(panel.y1),
        "theta_ci_per_period": [theta_lo, theta_hi],
        "placebo_p_value": placebo.p_value,
        "placebo_size": placebo.placebo_size,
        "n_placebos": len(placebo.placebos),
        "placebo_lift_pct": placebo.placebos["lift_pct"].round(6).tolist(),
        "sign_convention": "observed - counterfactual; negative for a working channel held out",
        "seed": seed,
        "warnings": warnings,
    }
    return IncrementalityEstimate(
        experiment_id=experiment_id,
        method=method,
        metric=metric,
        lift_pct=est.lift_pct,
        lift_ci_low=lift_at(inc_lo),
        lift_ci_high=lift_at(inc_hi),
        incremental=est.incremental,
        incremental_ci_low=inc_lo,
        incremental_ci_high=inc_hi,
        p_value=p_value,
        ci_level=1.0 - alpha,
        counterfactual=est.counterfactual,
        observed=observed,
        n_treated=len(panel.treated),
        n_control=len(panel.donors),
        n_pre=panel.n_pre,
        n_post=n_post,
        inputs=inputs,
    )
