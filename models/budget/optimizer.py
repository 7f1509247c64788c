"""Weekly budget allocation over response curves by equal marginal returns (exact water-filling).

Each unit's posterior-mean contribution is concave in its spend, so the optimum of a fixed
budget within box bounds is where every unit not at a bound earns the same marginal return
mu. For a given mu each unit's spend solves one monotone equation (safeguarded Newton), and
the total spend is monotone in mu, so a 1-D root find on mu hits the budget exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from models.budget.curves import ResponseCurves
from models.budget.policy import BudgetPolicy, ChannelLimits

ZERO_MARGINAL = 1e-12  # marginal returns below this fraction of the best one count as zero
_REL_TOL = 1e-12


class InfeasibleBudgetError(ValueError):
    """The policy's bounds leave no plan for this budget or target."""


@dataclass(frozen=True, eq=False)
class UnitBounds:
    lower: np.ndarray  # [u]
    upper: np.ndarray  # [u], may be inf
    lower_reason: tuple[str, ...]  # what sets each lower bound
    upper_reason: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class BudgetPlan:
    """A proposed weekly spend per unit, with its expected effect and the limits that bind."""

    table: pd.DataFrame  # one row per unit
    objective: str
    target_roas: float | None
    total_current: float
    total_proposed: float
    expected_contribution_current: float
    expected_contribution_proposed: float
    expected_roas_current: float
    expected_roas_proposed: float
    expected_lift: float  # mean over draws of total contribution, proposed - current
    lift_ci_low: float
    lift_ci_high: float
    ci: float
    # Share of draws where the plan's total contribution beats current's (under target_roas
    # the totals spent differ, so read it with the ROAS).
    prob_beats_current: float
    marginal_return: float  # the common marginal return of units not at a bound
    binding: dict[str, str]  # unit -> binding constraint ("" when none)
    feasible: bool  # False only when on_infeasible="closest" had to step back
    message: str
    policy_version: str
    policy_hash: str
    seed: int
    n_draws: int


# --- bounds ----------------------------------------------------------------------------------


def unit_bounds(
    curves: ResponseCurves, current: np.ndarray, policy: BudgetPolicy, *, tol: float = 1e-9
) -> UnitBounds:
    """Per-unit spend bounds: the policy's [min, max] intersected with the step limit.

    Channel floors and caps are for the channel as a whole; with several units (geos) per
    channel they are shared out in proportion to current spend (evenly when it is all zero),
    which keeps every plan inside the channel's limits.
    """
    n = curves.n_units
    current = np.asarray(current, dtype=float)
    if current.shape != (n,) or not np.isfinite(current).all() or (current < 0).any():
        raise ValueError(f"current spend must be {n} finite values >= 0, got {current!r}")
    lower, upper = np.zeros(n), np.full(n, math.inf)
    lo_reason, hi_reason = ["zero_floor"] * n, ["none"] * n
    channels = np.array(curves.channel)
    for ch in dict.fromkeys(curves.channel):
        idx = np.flatnonzero(channels == ch)
        lim: ChannelLimits = policy.limits(ch)
        cur_total = current[idx].sum()
        share = current[idx] / cur_total if cur_total > 0 else np.full(len(idx), 1 / len(idx))
        step = policy.step(ch)
        for j, u in enumerate(idx):
            pol_lo = lim.min_weekly_spend * share[j]
            pol_hi = (
                lim.max_weekly_spend * share[j] if math.isfinite(lim.max_weekly_spend) else math.inf
            )
            step_lo = max(0.0, current[u] * (1 - step)) if step is not None else 0.0
            step_hi = current[u] * (1 + step) if step is not None else math.inf
            # Out of the policy's range by more than one step (a floor raised, a cap cut): move
            # as far toward it as the step limit allows and get there over the next periods.
            # The step limit is the harder rule: a larger jump restarts the platforms' learning.
            if pol_lo > step_hi * (1 + tol) + tol:
                lower[u] = upper[u] = step_hi
                lo_reason[u] = hi_reason[u] = "toward_min_contract"
                continue
            if step_lo > pol_hi * (1 + tol) + tol:
                lower[u] = upper[u] = step_lo
                lo_reason[u] = hi_reason[u] = "toward_max_cap"
                continue
            if pol_lo > 0 and pol_lo >= step_lo:
                lower[u], lo_reason[u] = pol_lo, "min_contract"
            elif step_lo > 0:
                lower[u], lo_reason[u] = step_lo, "step_limit_down"
            if pol_hi <= step_hi:
                upper[u], hi_reason[u] = pol_hi, ("max_cap" if math.isfinite(pol_hi) else "none")
            else:
                upper[u], hi_reason[u] = step_hi, "step_limit_up"
            upper[u] = max(upper[u], lower[u])  # within tol of each other: pin
    return UnitBounds(lower, upper, tuple(lo_reason), tuple(hi_reason))


# --- the exact allocation --------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Mean:
    """Posterior-mean contribution and marginal, from the curves' draws."""

    beta: np.ndarray  # [d, u]
    k: np.ndarray  # [d, u]

    def value(self, s: np.ndarray) -> np.ndarray:
        return (self.beta * np.tanh(self.k * s / 2.0)).mean(axis=0)

    def grad(self, s: np.ndarray) -> np.ndarray:
        e = np.exp(-self.k * s)
        return (self.beta * self.k * 2.0 * e / (1.0 + e) ** 2).mean(axis=0)

    def grad_and_hess(self, s: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        beta, k = self.beta[:, cols], self.k[:, cols]
        e = np.exp(-k * s)
        sech2 = 4.0 * e / (1.0 + e) ** 2
        tanh = (1.0 - e) / (1.0 + e)
        g = (beta * k / 2.0 * sech2).mean(axis=0)
        h = -(beta * k**2 / 2.0 * sech2 * tanh).mean(axis=0)
        return g, h


def _spend_at(mean: _Mean, mu: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Each unit's spend in [lo, hi] where its mean marginal return equals mu (or a bound)."""
    s = lo.copy()
    g_hi = mean.grad(hi)
    at_hi = g_hi >= mu
    s[at_hi] = hi[at_hi]
    active = np.flatnonzero(~at_hi & (mean.grad(lo) > mu))
    if active.size == 0:
        return s
    a, b = lo[active].copy(), hi[active].copy()
    x = (a + b) / 2.0
    for _ in range(200):
        g, h = mean.grad_and_hess(x, active)
        f = g - mu
        a = np.where(f > 0, x, a)
        b = np.where(f > 0, b, x)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = x - f / h
        ok = (h < 0) & (newton > a) & (newton < b)
        x_new = np.where(ok, newton, (a + b) / 2.0)
        done = np.abs(x_new - x) <= _REL_TOL * np.maximum(1.0, np.abs(x))
        x = x_new
        if done.all():
            break
    s[active] = x
    return s


def _fill(s: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: float) -> np.ndarray:
    """Move s to sum to `total`, spreading the gap over the room each unit has."""
    gap = total - s.sum()
    room = (hi - s) if gap > 0 else (s - lo)
    if gap == 0 or room.sum() <= 0:
        return s
    return np.clip(s + gap * room / room.sum(), lo, hi)


def _mu_range(mean: _Mean, lo: np.ndarray, hi: np.ndarray) -> tuple[float, float]:
    top = float(mean.grad(lo).max())
    floor = top * ZERO_MARGINAL
    bottom = max(float(mean.grad(hi).min()), floor)
    return bottom, top


def allocate(
    curves: ResponseCurves,
    lower: np.ndarray,
    upper: np.ndarray,
    total_budget: float,
) -> tuple[np.ndarray, float]:
    """Spend [u] maximising mean total contribution with sum = total_budget and lower <= s <= upper.

    Returns the spend and the common marginal return mu of the units not at a bound. Money
    left once every unit's marginal return is ~0 (ZERO_MARGINAL) is spread over the units'
    headroom: the objective cannot tell those plans apart.
    """
    lo, hi = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    if lo.sum() > total_budget * (1 + 1e-12) or hi.sum() < total_budget * (1 - 1e-12):
        raise InfeasibleBudgetError(
            f"total budget {total_budget:,.2f} is outside the feasible range "
            f"[{lo.sum():,.2f}, {hi.sum():,.2f}] set by the per-unit bounds"
        )
    hi = np.minimum(hi, lo + (total_budget - lo.sum()))  # finite, and never more than fits
    mean = _Mean(curves.beta, curves.steepness)
    bottom, top = _mu_range(mean, lo, hi)
    if top <= 0 or total_budget <= lo.sum():
        return _fill(lo.copy(), lo, hi, total_budget), max(top, 0.0)
    s = _spend_at(mean, bottom, lo, hi)
    if s.sum() <= total_budget:
        return _fill(s, lo, hi, total_budget), bottom

    def excess(log_mu: float) -> float:
        return _spend_at(mean, math.exp(log_mu), lo, hi).sum() - total_budget

    log_mu = brentq(excess, math.log(bottom), math.log(top), xtol=1e-14, rtol=1e-14, maxiter=500)
    mu = math.exp(log_mu)
    return _fill(_spend_at(mean, mu, lo, hi), lo, hi, total_budget), mu


def _target_roas_plan(
    curves: ResponseCurves, lo: np.ndarray, hi: np.ndarray, target: float
) -> tuple[np.ndarray, float, bool]:
    """Largest-budget optimal plan with mean ROAS >= target: (spend, mu, reached).

    H(B) = F*(B) - target * B is concave in the budget B (F* is the optimal contribution),
    peaks where the marginal return equals the target, and the plan sought is its upper root.
    When the target is out of reach, the highest-ROAS plan is returned with reached False.
    """
    mean = _Mean(curves.beta, curves.steepness)
    # No plan with ROAS >= target spends more than the total saturation revenue / target.
    cap = float(curves.beta.mean(axis=0).sum()) / target
    hi = np.maximum(lo, np.minimum(hi, cap))
    bottom, top = _mu_range(mean, lo, hi)
    if top <= 0:
        return lo.copy(), 0.0, False

    def plan(mu: float) -> np.ndarray:
        return _spend_at(mean, mu, lo, hi)

    def surplus(log_mu: float) -> float:
        s = plan(math.exp(log_mu))
        return float(mean.value(s).sum() - target * s.sum())

    best = min(max(target, bottom), top)
    s_best = plan(best)
    if surplus(math.log(best)) < -1e-9 * max(1.0, target * s_best.sum()) or s_best.sum() <= 0:
        return (*_max_roas_plan(mean, lo, hi, bottom, top), False)
    if surplus(math.log(bottom)) >= 0:
        return plan(bottom), bottom, True
    log_mu = brentq(surplus, math.log(bottom), math.log(best), xtol=1e-14, rtol=1e-14, maxiter=500)
    return plan(math.exp(log_mu)), math.exp(log_mu), True


def _max_roas_plan(
    mean: _Mean, lo: np.ndarray, hi: np.ndarray, bottom: float, top: float
) -> tuple[np.ndarray, float]:
    """The optimal plan whose average return is highest: where it equals the marginal one."""

    def gap(log_mu: float) -> float:
        mu = math.exp(log_mu)
        s = _spend_at(mean, mu, lo, hi)
        return float(mean.value(s).sum() - mu * s.sum())

    if gap(math.log(top)) >= 0:
        # Average return falls from the first dollar on: spend the floors, or a token amount.
        mu = top * (1 - 1e-9) if lo.sum() == 0 else top
    elif gap(math.log(bottom)) <= 0:
        mu = bottom
    else:
        mu = math.exp(brentq(gap, math.log(bottom), math.log(top), xtol=1e-14, rtol=1e-14))
    return _spend_at(mean, mu, lo, hi), mu


# --- the plan --------------------------------------------------------------------------------


def _binding(s: np.ndarray, bounds: UnitBounds, tol: float = 1e-7) -> list[str]:
    """The bound(s) each unit's spend sits on, by what set them; "" for an interior unit."""
    out = []
    for u, x in enumerate(s):
        lo, hi = bounds.lower[u], bounds.upper[u]
        reasons = []
        if abs(x - lo) <= tol * max(1.0, lo):
            reasons.append(bounds.lower_reason[u])
        if math.isfinite(hi) and abs(x - hi) <= tol * max(1.0, hi):
            reasons.append(bounds.upper_reason[u])
        out.append(",".join(dict.fromkeys(reasons)))
    return out


def optimize_budget(
    curves: ResponseCurves,
    current_spend: np.ndarray,
    policy: BudgetPolicy,
    total_budget: float | None = None,
    objective: str | None = None,
    target_roas: float | None = None,
    seed: int = 0,
    *,
    ci: float = 0.94,
    max_draws: int | None = None,
    on_infeasible: str = "raise",
) -> BudgetPlan:
    """Propose next period's spend per unit within the policy.

    objective (default: the policy's) is "max_revenue", which spends `total_budget`
    (default: the current total) where the mean contribution is highest, or "target_roas",
    which finds the largest budget whose optimal plan still earns `target_roas` (default: the
    policy's) in mean contribution per dollar. Bounds are the policy's floors and caps
    intersected with its step limit around current spend; a unit whose two intervals do not
    meet always raises InfeasibleBudgetError. A budget outside what the bounds allow, or an
    unreachable target, raises too unless on_infeasible="closest", which returns the nearest
    feasible plan (the nearest budget; the highest-ROAS plan) with feasible=False and a message.
    `max_draws` subsamples the posterior draws (with `seed`) to bound the cost.
    """
    objective = objective or policy.objective
    if objective not in ("max_revenue", "target_roas"):
        raise ValueError(f"objective must be 'max_revenue' or 'target_roas', got {objective!r}")
    if on_infeasible not in ("raise", "closest"):
        raise ValueError(f"on_infeasible must be 'raise' or 'closest', got {on_infeasible!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    current = np.asarray(current_spend, dtype=float)
    if current.shape != (curves.n_units,):
        raise ValueError(f"current_spend must have shape [{curves.n_units}], got {current.shape}")
    if not np.isfinite(current).all() or (current < 0).any():
        raise ValueError("current_spend must be finite and >= 0")

    if max_draws is not None and max_draws < 1:
        raise ValueError(f"max_draws must be >= 1, got {max_draws}")
    if max_draws is not None and curves.n_draws > max_draws:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(curves.n_draws, size=max_draws, replace=False))
        curves = ResponseCurves(
            units=curves.units,
            channel=curves.channel,
            geo=curves.geo,
            beta=curves.beta[keep],
            lam=curves.lam[keep],
            alpha=curves.alpha[keep],
            scale=curves.scale,
            l_max=curves.l_max,
            normalize=curves.normalize,
        )

    bounds = unit_bounds(curves, current, policy)
    lo, hi = bounds.lower, bounds.upper
    feasible, message = True, ""
    if objective == "max_revenue":
        if target_roas is not None:
            raise ValueError("target_roas only applies to objective 'target_roas'")
        budget = float(current.sum() if total_budget is None else total_budget)
        if not math.isfinite(budget) or budget < 0:
            raise ValueError(f"total_budget must be finite and >= 0, got {total_budget}")
        low, high = float(lo.sum()), float(hi.sum())
        if not low * (1 - 1e-12) <= budget <= high * (1 + 1e-12):
            message = (
                f"total budget {budget:,.2f} is outside the feasible range [{low:,.2f}, "
                f"{high:,.2f}] set by the policy's floors, caps and step limits"
            )
            if on_infeasible == "raise":
                raise InfeasibleBudgetError(message)
            feasible, budget = False, min(max(budget, low), high)
            message += f"; planned the nearest feasible budget {budget:,.2f} instead"
        spend, mu = allocate(curves, lo, hi, budget)
        target = None
    else:
        if total_budget is not None:
            raise ValueError("total_budget is what objective 'target_roas' chooses; leave it None")
        target = policy.target_roas if target_roas is None else target_roas
        if target is None or not math.isfinite(target) or target <= 0:
            raise ValueError(f"objective 'target_roas' needs a target_roas > 0, got {target}")
        spend, mu, reached = _target_roas_plan(curves, lo, hi, float(target))
        if not reached:
            best = curves.mean_curve(spend).sum() / spend.sum() if spend.sum() > 0 else 0.0
            message = (
                f"target ROAS {target:g} is out of reach within the policy's bounds: the best "
                f"plan earns {best:.3g}"
            )
            if on_infeasible == "raise":
                raise InfeasibleBudgetError(message)
            feasible = False
            message += "; planned the highest-ROAS budget instead"
    return _plan(
        curves, current, spend, mu, bounds, policy, objective, target, ci, seed, feasible, message
    )


def _plan(
    curves: ResponseCurves,
    current: np.ndarray,
    spend: np.ndarray,
    mu: float,
    bounds: UnitBounds,
    policy: BudgetPolicy,
    objective: str,
    target: float | None,
    ci: float,
    seed: int,
    feasible: bool,
    message: str,
) -> BudgetPlan:
    q = [(1 - ci) / 2, 1 - (1 - ci) / 2]
    c_cur = curves.contribution(current)  # [d, u]
    c_new = curves.contribution(spend)
    effect = c_new - c_cur
    eff_lo, eff_hi = np.quantile(effect, q, axis=0)
    lift = effect.sum(axis=1)
    # A plan equal to current up to round-off does not beat it.
    beat_tol = 1e-9 * np.maximum(1.0, np.abs(c_cur.sum(axis=1)))
    lift_lo, lift_hi = np.quantile(lift, q)
    binding = _binding(spend, bounds)
    change = spend - current
    with np.errstate(divide="ignore", invalid="ignore"):
        change_pct = np.where(current > 0, change / current, np.nan)
    table = pd.DataFrame(
        {
            "unit": list(curves.units),
            "channel": list(curves.channel),
            "geo": list(curves.geo),
            "current_spend": current,
            "proposed_spend": spend,
            "change": change,
            "change_pct": change_pct,
            "expected_contribution_current": c_cur.mean(axis=0),
            "expected_contribution_proposed": c_new.mean(axis=0),
            "expected_effect": effect.mean(axis=0),
            "effect_ci_low": eff_lo,
            "effect_ci_high": eff_hi,
            "marginal_return_current": curves.mean_marginal(current),
            "marginal_return_proposed": curves.mean_marginal(spend),
            "lower_bound": bounds.lower,
            "upper_bound": bounds.upper,
            "binding": binding,
        }
    )
    total_cur, total_new = float(current.sum()), float(spend.sum())
    contrib_cur, contrib_new = float(c_cur.sum(axis=1).mean()), float(c_new.sum(axis=1).mean())
    return BudgetPlan(
        table=table,
        objective=objective,
        target_roas=target,
        total_current=total_cur,
        total_proposed=total_new,
        expected_contribution_current=contrib_cur,
        expected_contribution_proposed=contrib_new,
        expected_roas_current=contrib_cur / total_cur if total_cur > 0 else math.nan,
        expected_roas_proposed=contrib_new / total_new if total_new > 0 else math.nan,
        expected_lift=float(lift.mean()),
        lift_ci_low=float(lift_lo),
        lift_ci_high=float(lift_hi),
        ci=ci,
        prob_beats_current=float((lift > beat_tol).mean()),
        marginal_return=float(mu),
        binding=dict(zip(curves.units, binding, strict=True)),
        feasible=feasible,
        message=message,
        policy_version=policy.version,
        policy_hash=policy.hash,
        seed=seed,
        n_draws=curves.n_draws,
    )
