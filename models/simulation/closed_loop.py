"""Close the loop: the simulated market generates its next week from the budgets an ad
platform holds, so that what the decision loop changes comes back as data, with its truth.

A simulation folder (from `simulate`) holds `market_state.json` beside `truth.json`: the true
parameters and the weekly spend history that adstock carries over. `extend_simulation` adds
one week after the last: the digital channels spend what their budgets say, offline media
keep their recent level, revenue is the continued baseline plus the true response, and the
week's landing files are new files the ingestion sources already glob. truth.json keeps its
reconciled aggregates cumulative and lists every added week under `closed_loop.weeks`.

Each week draws from its own streams, keyed on (seed, week index) apart from the history's,
so the same budgets give byte-identical files, and two budget plans for the same week see
the same noise (common random numbers).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from models.budget.curves import UNIT_SEPARATOR, ResponseCurves
from models.simulation.config import CHANNEL_PLATFORM, SimulationConfig
from models.simulation.generator import (
    _ACCOUNTS,
    LANDING_DIR,
    MARKET_STATE_FILE,
    MARKET_STATE_VERSION,
    TRUTH_FILE,
    _build_campaigns,
    _crm_orders,
    _day0,
    _dow_weights,
    _draw_users,
    _fx_rows,
    _geo_offsets,
    _performance_rows,
    _spend_leaves,
    _thin_clicks,
    _tracking_events,
    _write_events,
    _write_monthly_csv,
    _write_spend,
    history_rng,
    write_market_state,
)
from models.simulation.market import ADSTOCK_L_MAX, Market, baseline_revenue

Log = Callable[[str], None]

ENABLED = "ENABLED"
PAUSED = "PAUSED"
ACTUATED_PLATFORMS: tuple[str, ...] = ("google_ads", "meta")
RECENT_WEEKS = 4  # seed budgets and offline media follow the mean of the last weeks
GOOGLE_BUDGET_ID0 = 7_000_000_001
META_ADSET_ID0 = 23_852_000_000_001
GOOGLE_MICROS_STEP = 10_000  # USD budgets move in whole cents
# Keys each week's SeedSequence apart from the history's `SeedSequence(seed)` children.
_WEEK_KEY = 0xC105ED
WEEK_STREAMS: tuple[str, ...] = (
    "dow",
    "noise",
    "fx",
    "orders",
    "events",
    "perf",
    "fatigue",
    "dirt",
)
_SOURCE_OF_PLATFORM = {"google_ads": "google_ads", "meta": "meta_ads", "offline": "offline_media"}
# truth.json fields that stay cumulative over the history and every added week.
_CUMULATIVE_COUNTS = ("orders_completed", "orders_cancelled", "events_unique", "days")


class ClosedLoopError(ValueError):
    """The budgets or the requested week cannot be simulated (see the message)."""


@dataclass(frozen=True)
class WeekResult:
    """One simulated week of the closed loop."""

    week_index: int  # weeks from the simulation's start_date
    week_start: date  # a Monday
    days: tuple[date, ...]
    files: tuple[Path, ...]  # landing files of the week
    spend_usd: dict[str, dict[str, float]]  # channel -> geo -> spend the market saw
    expected_revenue: float  # baseline + true response, before noise
    contribution: dict[str, float]  # channel -> true contribution in the week (with carry-over)
    truth: dict  # the week's entry in truth.json's closed_loop.weeks
    created: bool  # False when the week already existed for the same budgets


# --- loading ---------------------------------------------------------------------------------


def _sim_dir(path: Path | str) -> Path:
    path = Path(path)
    return path.parent if path.is_file() else path


def load_market_state(sim_dir: Path | str) -> dict:
    """The continuation state `simulate` wrote (and `extend_simulation` keeps up to date)."""
    path = _sim_dir(sim_dir) / MARKET_STATE_FILE
    if not path.exists():
        raise ClosedLoopError(
            f"{path} not found: the closed loop continues a simulation written by this version "
            "of `simulate`; simulate again"
        )
    state = json.loads(path.read_text())
    if state.get("version") != MARKET_STATE_VERSION:
        raise ClosedLoopError(
            f"{path} has version {state.get('version')}, expected {MARKET_STATE_VERSION}"
        )
    return state


def _truth(truth_or_sim_dir: dict | Path | str) -> dict:
    if isinstance(truth_or_sim_dir, Mapping):
        return dict(truth_or_sim_dir)
    path = Path(truth_or_sim_dir)
    return json.loads((path if path.is_file() else path / TRUTH_FILE).read_text())


def _state(source: dict | Path | str) -> dict:
    if isinstance(source, Mapping):
        if "weekly_spend_usd" not in source:
            raise ClosedLoopError(
                "budget targets need the spend history: pass the simulation folder (or its "
                "market state), not truth.json's contents"
            )
        return dict(source)
    return load_market_state(source)


def load_market(sim_dir_or_state: dict | Path | str) -> Market:
    """The true market as simulated so far, every week of it: `planned_spend` holds the spend
    each week actually had (holdouts applied, rounded to the cent), so `response(planned_spend)`
    is the true contribution; baseline and noise are those of the history and added weeks."""
    state = _state(sim_dir_or_state)
    config = SimulationConfig.from_dict(state["config"])
    spend = np.asarray(state["weekly_spend_usd"], dtype=float)
    W = spend.shape[0]
    geo_base = np.asarray(state["geo_base"], dtype=float)
    promo_days = np.zeros(W)
    promo_days[: len(state["promo_days"])] = state["promo_days"]
    return Market(
        config=config,
        geo_share=np.asarray(state["geo_share"], dtype=float),
        planned_spend=spend,
        kappa=np.asarray(state["kappa"], dtype=float),
        beta=np.asarray(state["beta"], dtype=float),
        baseline=baseline_revenue(
            config, np.arange(W), state["season_phase"], geo_base, promo_days
        ),
        promo_days=promo_days,
        noise=np.asarray(state["noise"], dtype=float).reshape(W, config.geos),
        treatment_geos={},
        season_phase=float(state["season_phase"]),
        geo_base=geo_base,
    )


# --- budgets ---------------------------------------------------------------------------------


def _budget_currency(config: SimulationConfig, platform: str) -> str:
    return "USD" if platform == "google_ads" else config.meta_account_currency


def actuated_units(config: SimulationConfig) -> list[tuple[str, str]]:
    """(channel, geo) of every budget the loop changes, in target order."""
    return [
        (ch, geo)
        for ch in config.channels
        if CHANNEL_PLATFORM[ch] in ACTUATED_PLATFORMS
        for geo in config.geo_codes
    ]


def budget_targets(truth_or_sim_dir: dict | Path | str) -> list[dict]:
    """One daily budget per (digital channel, geo), at the mean weekly spend of the last
    RECENT_WEEKS simulated weeks / 7, in the platform's unit: Google Ads micros of USD
    (multiples of 10,000), Meta minor units of the ad account's currency at the last day's
    rate. This is the ad platform sandbox's seed format.

    Takes the simulation folder (or truth.json's path, or the market state itself): truth.json
    alone has no spend history."""
    state = _state(truth_or_sim_dir)
    config = SimulationConfig.from_dict(state["config"])
    recent = np.asarray(state["weekly_spend_usd"], dtype=float)[-RECENT_WEEKS:].mean(axis=0)
    next_id = {"google_ads": GOOGLE_BUDGET_ID0, "meta": META_ADSET_ID0}
    out = []
    for ch, geo in actuated_units(config):
        platform = CHANNEL_PLATFORM[ch]
        currency = _budget_currency(config, platform)
        daily_usd = float(recent[config.geo_codes.index(geo), config.channels.index(ch)]) / 7.0
        if platform == "google_ads":
            amount = round(daily_usd * 100) * GOOGLE_MICROS_STEP
        else:
            amount = round(daily_usd / state["fx_last"][currency] * 100)
        out.append(
            {
                "platform": platform,
                "account_id": _ACCOUNTS[platform],
                "target_id": str(next_id[platform]),
                "channel": ch,
                "geo": geo,
                "currency": currency,
                "name": f"{ch.title()} | {geo}",
                "amount": int(amount),
                "status": ENABLED,
            }
        )
        next_id[platform] += 1
    return out


def _check_budgets(config: SimulationConfig, budgets: Sequence[Mapping]) -> dict[tuple, dict]:
    """The budgets by (channel, geo), checked against the market; the canonical fields only."""
    units = actuated_units(config)
    by_unit: dict[tuple[str, str], dict] = {}
    for b in budgets:
        key = (b.get("channel"), b.get("geo"))
        if key not in units:
            raise ClosedLoopError(
                f"budget {b.get('target_id', '?')} is for {key[0]!r} in {key[1]!r}, which is not "
                f"a budget this market actuates; known: {', '.join(f'{c}|{g}' for c, g in units)}"
            )
        if key in by_unit:
            raise ClosedLoopError(f"two budgets for {key[0]} in {key[1]}")
        platform = CHANNEL_PLATFORM[key[0]]
        if b.get("platform", platform) != platform:
            raise ClosedLoopError(
                f"budget for {key[0]} in {key[1]} is on {b.get('platform')!r}, expected {platform!r}"
            )
        if b.get("account_id", _ACCOUNTS[platform]) != _ACCOUNTS[platform]:
            raise ClosedLoopError(
                f"budget for {key[0]} in {key[1]} is in account {b.get('account_id')!r}, "
                f"expected {_ACCOUNTS[platform]!r}"
            )
        currency = _budget_currency(config, platform)
        if b.get("currency", currency) != currency:
            raise ClosedLoopError(
                f"budget for {key[0]} in {key[1]} is in {b.get('currency')!r}; the account "
                f"currency is {currency}"
            )
        amount = b.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int | float | np.integer):
            raise ClosedLoopError(f"budget for {key[0]} in {key[1]} has amount {amount!r}")
        if float(amount) != int(amount) or amount < 0:
            raise ClosedLoopError(
                f"budget for {key[0]} in {key[1]} must be a whole number >= 0 of "
                f"{'micros' if platform == 'google_ads' else 'minor units'}, got {amount!r}"
            )
        status = b.get("status", ENABLED)
        if status not in (ENABLED, PAUSED):
            raise ClosedLoopError(
                f"budget for {key[0]} in {key[1]} has status {status!r}; expected ENABLED or PAUSED"
            )
        by_unit[key] = {
            "channel": key[0],
            "geo": key[1],
            "platform": platform,
            "currency": currency,
            "amount": int(amount),
            "status": status,
        }
    missing = [f"{c} in {g}" for c, g in units if (c, g) not in by_unit]
    if missing:
        raise ClosedLoopError(f"no budget for {', '.join(missing)}")
    return {key: by_unit[key] for key in units}


def _digest(budgets: dict[tuple, dict]) -> str:
    canonical = json.dumps(list(budgets.values()), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- the week --------------------------------------------------------------------------------


def _apportion(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers proportional to `weights` summing exactly to `total` (largest remainder)."""
    w = np.asarray(weights, dtype=float).ravel()
    out = np.zeros(len(w), dtype=np.int64)
    if total <= 0 or not w.sum() > 0:
        return out.reshape(np.shape(weights))
    ideal = total * w / w.sum()
    out = np.floor(ideal).astype(np.int64)
    rest = int(total - out.sum())
    out[np.argsort(-(ideal - out), kind="stable")[:rest]] += 1
    return out.reshape(np.shape(weights))


def _week_rngs(seed: int, week_index: int) -> dict[str, np.random.Generator]:
    seeds = np.random.SeedSequence([seed, _WEEK_KEY, week_index]).spawn(len(WEEK_STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(WEEK_STREAMS, seeds, strict=True)}


def _continue_fatigue(
    perf: dict[str, pd.DataFrame],
    creatives_truth: dict,
    impressions_before: dict[str, int],
    rng: np.random.Generator,
) -> dict[str, int]:
    """Wear-out continued: a fatigued creative's clicks are thinned by its truth's rate on its
    exposure so far (history and added weeks). Returns cumulative impressions after the week."""
    after = dict(impressions_before)
    for frame in perf.values():
        if "clicks" not in frame or frame.empty:
            continue
        f = frame.loc[frame.sort_values(["creative_id", "_day", "_geo"], kind="stable").index]
        daily = f.groupby(["creative_id", "_day"], sort=True)["impressions"].sum()
        before = daily.groupby(level=0).cumsum() - daily
        for cid in sorted(set(f["creative_id"])):
            t = creatives_truth.get(str(cid), {})
            if t.get("fatigued"):
                idx = f.index[f["creative_id"] == cid]
                within = before.loc[cid].reindex(f.loc[idx, "_day"]).to_numpy()
                exposure = (impressions_before.get(str(cid), 0) + within) / 1e6
                rate = t["fatigue_rate_per_million_impressions"]
                _thin_clicks(frame, idx, np.exp(-rate * exposure), rng)
            after[str(cid)] = after.get(str(cid), 0) + int(daily.loc[cid].sum())
    return after


def _by_channel_geo(a: np.ndarray, channels, geos) -> dict[str, dict[str, float]]:
    """[G, C] -> {channel: {geo: value}}."""
    return {
        ch: {geo: float(a[g, c]) for g, geo in enumerate(geos)} for c, ch in enumerate(channels)
    }


def _result(sim_dir: Path, entry: dict, created: bool) -> WeekResult:
    start = date.fromisoformat(entry["week_start"])
    return WeekResult(
        week_index=entry["week_index"],
        week_start=start,
        days=tuple(start + timedelta(days=d) for d in range(7)),
        files=tuple(sim_dir / LANDING_DIR / f for f in entry["files"]),
        spend_usd=entry["spend_usd"],
        expected_revenue=entry["expected_revenue"],
        contribution=entry["true_contribution"],
        truth=entry,
        created=created,
    )


def extend_simulation(
    sim_dir: Path | str,
    budgets: Sequence[Mapping],
    *,
    week_start: date | None = None,
    log: Log = print,
) -> WeekResult:
    """Simulate the week after the last simulated one from the daily `budgets` the platforms
    hold (`budget_targets`' format: the amount in the platform's unit; PAUSED spends nothing).

    `week_start` names the week, for an idempotent retry: a week already simulated with the
    same budgets is returned unchanged (`created` False); with other budgets it is refused,
    since that week is history. Without it, the next week is simulated."""
    sim_dir = _sim_dir(sim_dir)
    state = load_market_state(sim_dir)
    config = SimulationConfig.from_dict(state["config"])
    checked = _check_budgets(config, budgets)
    digest = _digest(checked)
    history_weeks = state["history_weeks"]
    t = history_weeks + len(state["extensions"])
    start = config.start_date + timedelta(weeks=t)
    if week_start is not None and week_start != start:
        done = {e["week_start"]: e for e in state["extensions"]}
        if week_start.isoformat() not in done:
            raise ClosedLoopError(
                f"week {week_start} cannot be simulated: the next week starts on {start}"
                + (" (earlier weeks are the simulated history)" if week_start < start else "")
            )
        if done[week_start.isoformat()]["budgets_sha256"] != digest:
            raise ClosedLoopError(
                f"week {week_start} is history: it was simulated with other budgets "
                f"(sha256 {done[week_start.isoformat()]['budgets_sha256'][:12]}, these "
                f"{digest[:12]}); simulate the next week ({start}) instead"
            )
        truth = _truth(sim_dir)
        entry = next(w for w in truth["closed_loop"]["weeks"] if w["week_start"] == str(week_start))
        log(f"week {week_start} already simulated with these budgets: nothing to do")
        return _result(sim_dir, entry, created=False)

    log(f"closed loop: simulating week {t} ({start}) from {len(checked)} budgets")
    entry, new_state = _simulate_week(sim_dir, state, config, checked, t, start, log)
    entry["budgets_sha256"] = digest
    _write_truth(sim_dir, entry)
    new_state["extensions"] = [
        *state["extensions"],
        {"week_index": t, "week_start": start.isoformat(), "budgets_sha256": digest},
    ]
    write_market_state(sim_dir, new_state)
    return _result(sim_dir, entry, created=True)


def _simulate_week(
    sim_dir: Path,
    state: dict,
    config: SimulationConfig,
    budgets: dict[tuple, dict],
    t: int,
    start: date,
    log: Log,
) -> tuple[dict, dict]:
    """Generate and write week `t`; return its truth entry and the market state after it."""
    landing = sim_dir / LANDING_DIR
    rng = _week_rngs(config.seed, t)
    channels, geos = config.channels, config.geo_codes
    G, C = len(geos), len(channels)
    days = [start + timedelta(days=d) for d in range(7)]
    tag = f"week_{start.isoformat()}"
    history = np.asarray(state["weekly_spend_usd"], dtype=float)
    market = load_market(state)

    # FX continues its random walk from the last day.
    fx = {
        cur: np.ones(7)
        if cur == "USD"
        else np.round(last * np.exp(np.cumsum(rng["fx"].normal(0, 0.003, 7))), 6)
        for cur, last in state["fx_last"].items()
    }

    # Spend at leaf grain: each unit's weekly total in its budget's unit, exact to the cent,
    # spread over weekdays and creatives the way the generator spreads it.
    campaigns, creatives = _build_campaigns(config, history_rng(config.seed, "leaf"))
    leaves = _spend_leaves(config, campaigns, creatives)
    dow_w = _dow_weights(rng["dow"], 1, G, C)[0]  # [G, C, 7]
    recent = history[-RECENT_WEEKS:].mean(axis=0)  # [G, C]
    leaf_cents = np.zeros((7, G, len(leaves)), dtype=np.int64)
    account_cents = np.zeros((G, C), dtype=np.int64)  # the budget's currency, for the truth
    for c, ch in enumerate(channels):
        li = [i for i, leaf in enumerate(leaves) if leaf[0] == c]
        shares = np.array([leaves[i][3] for i in li])
        platform = CHANNEL_PLATFORM[ch]
        for g, geo in enumerate(geos):
            b = budgets.get((ch, geo))
            if b is None:  # not actuated: keeps its recent level
                total = round(recent[g, c] * 100)
            elif b["status"] == PAUSED:
                total = 0
            elif platform == "google_ads":
                total = (7 * b["amount"] + GOOGLE_MICROS_STEP // 2) // GOOGLE_MICROS_STEP
            else:
                total = 7 * b["amount"]
            cells = _apportion(total, dow_w[g, c][:, None] * shares[None, :])  # [7, leaves]
            account_cents[g, c] = total
            if b is not None and b["currency"] != "USD":
                cells = np.round(cells * fx[b["currency"]][:, None]).astype(np.int64)
            leaf_cents[:, g, li] = cells
    spend = np.zeros((G, C))
    for i, (c, *_rest) in enumerate(leaves):
        spend[:, c] += leaf_cents[:, :, i].sum(axis=0) / 100.0

    # Revenue: the continued baseline plus the true response, adstock carried over.
    window = np.concatenate([history[-(ADSTOCK_L_MAX - 1) :], spend[None]], axis=0)
    contribution = market.response(window)[-1]  # [G, C]
    base = baseline_revenue(config, np.array([t]), market.season_phase, market.geo_base)[0]
    expected = base + contribution.sum(axis=1)
    sigma = config.noise_sigma
    noise = rng["noise"].lognormal(-(sigma**2) / 2, sigma, G)
    realized = expected * noise

    # Orders, events and reports, from the history's users, campaigns and creatives.
    log("closed loop: orders, events and platform reports")
    users = _draw_users(config, history_rng(config.seed, "users"), market.geo_share)
    crm = _crm_orders(
        config, rng["orders"], realized[None, :], fx, users, start,
        first_order=state["orders_completed"], first_cancel=state["orders_cancelled"],
    )  # fmt: skip
    n_events = round(config.events * 7 / config.days)
    events = _tracking_events(
        config, rng["events"], geos, days, _day0(start), _geo_offsets(geos), campaigns,
        creatives, crm.ids, crm.user, crm.epoch, crm.currency, crm.amount, users.geo,
        users.anon_ids, users.user_ids, users.emails, users.ips, users.devices, users.platforms,
        users.consent, n_events=n_events,
        click_spend={ch: float(spend[:, c].sum()) for c, ch in enumerate(channels)},
    )  # fmt: skip
    perf = _performance_rows(config, rng["perf"], leaves, leaf_cents, geos)
    truth = _truth(sim_dir)
    impressions = _continue_fatigue(
        perf, truth["creatives"], state["creative_impressions"], rng["fatigue"]
    )

    files: list[Path] = []
    dirt: dict[str, dict] = {}
    dirt["tracking_events"] = _write_events(events, landing, days, config, rng["dirt"], log)
    files += [landing / "events" / f"date={d.isoformat()}" / "events.jsonl" for d in days]
    reported_by_geo: dict[tuple[str, str], float] = {}
    spend_truth, dirt["google_ads"], dirt["meta_ads"], dirt["offline_media"] = _write_spend(
        perf, landing, config, rng["dirt"], fx, days=days, tag=tag, written=files,
        reported_by_geo=reported_by_geo,
    )  # fmt: skip
    files += _write_monthly_csv(
        crm.frame.drop(columns=["_day"]), crm.frame["_day"].to_numpy(), days,
        landing / "crm", "orders", tag,
    )  # fmt: skip
    (landing / "fx").mkdir(parents=True, exist_ok=True)
    fx_path = landing / "fx" / f"fx_rates_{tag}.csv"
    pd.DataFrame(_fx_rows(days, fx)).to_csv(fx_path, index=False)
    files.append(fx_path)

    reported = np.array([[reported_by_geo.get((ch, geo), 0.0) for ch in channels] for geo in geos])
    entry = {
        "week_index": t,
        "week_start": start.isoformat(),
        "budgets": list(budgets.values()),
        "spend_usd": _by_channel_geo(spend, channels, geos),
        "spend_reported_usd": _by_channel_geo(reported, channels, geos),
        "spend_budget_units": {
            ch: {geo: int(account_cents[g, c]) for g, geo in enumerate(geos)}
            for c, ch in enumerate(channels)
        },
        "baseline_revenue": float(base.sum()),
        "expected_revenue": float(expected.sum()),
        "expected_revenue_by_geo": dict(zip(geos, map(float, expected), strict=True)),
        "realized_expected_revenue": float(realized.sum()),
        "true_contribution": {ch: float(contribution[:, c].sum()) for c, ch in enumerate(channels)},
        "true_contribution_by_geo": _by_channel_geo(contribution, channels, geos),
        "steady_state_contribution": true_weekly_contribution(
            truth,
            {(ch, geo): spend[g, c] for c, ch in enumerate(channels) for g, geo in enumerate(geos)},
        ),
        "channels_spend_reported_usd": spend_truth,
        "revenue_completed_reporting_usd": crm.completed_reporting_usd,
        "counts": {
            "orders_completed": crm.n_completed,
            "orders_cancelled": crm.n_cancelled,
            "events_unique": dirt["tracking_events"]["events_written"],
            "days": 7,
        },
        "dirt": dirt,
        "expected_quarantine": _expected_quarantine(dirt),
        "files": [p.relative_to(landing).as_posix() for p in files],
    }
    new_state = {
        **state,
        "weekly_spend_usd": [*state["weekly_spend_usd"], spend.tolist()],
        "noise": [*state["noise"], noise.tolist()],
        "fx_last": {cur: float(rates[-1]) for cur, rates in fx.items()},
        "creative_impressions": impressions,
        "orders_completed": state["orders_completed"] + crm.n_completed,
        "orders_cancelled": state["orders_cancelled"] + crm.n_cancelled,
    }
    log(
        f"closed loop: week {start} spent {spend.sum():,.2f} USD, expected revenue "
        f"{expected.sum():,.0f} USD; {len(files)} files"
    )
    return entry, new_state


def _expected_quarantine(dirt: dict) -> dict[str, int]:
    return {
        "tracking_events": dirt["tracking_events"]["malformed_lines"],
        **{
            source: dirt[source]["negative_spend_rows"] + dirt[source]["missing_spend_rows"]
            for source in ("google_ads", "meta_ads", "offline_media")
        },
        "creative_serving": 0,
    }


def _write_truth(sim_dir: Path, entry: dict) -> None:
    """Add (or replace) the week in truth.json and recompute the cumulative aggregates as the
    history's plus every added week's, so a retried write can never count a week twice."""
    path = sim_dir / TRUTH_FILE
    truth = json.loads(path.read_text())
    loop = truth.get("closed_loop")
    if loop is None:
        loop = {
            "history": {
                "spend_reported_usd": {
                    ch: t["spend_reported_usd"] for ch, t in truth["channels"].items()
                },
                "revenue_completed_reporting_usd": truth["revenue_completed_reporting_usd"],
                "counts": {k: truth["counts"][k] for k in _CUMULATIVE_COUNTS},
                "dirt": truth["dirt"],
                "expected_quarantine": truth["expected_quarantine"],
            },
            "weeks": [],
        }
    weeks = [w for w in loop["weeks"] if w["week_index"] != entry["week_index"]] + [entry]
    loop["weeks"] = sorted(weeks, key=lambda w: w["week_index"])
    hist = loop["history"]
    for ch, t in truth["channels"].items():
        t["spend_reported_usd"] = hist["spend_reported_usd"][ch] + sum(
            w["channels_spend_reported_usd"].get(ch, 0.0) for w in loop["weeks"]
        )
    truth["revenue_completed_reporting_usd"] = hist["revenue_completed_reporting_usd"] + sum(
        w["revenue_completed_reporting_usd"] for w in loop["weeks"]
    )
    for k in _CUMULATIVE_COUNTS:
        truth["counts"][k] = hist["counts"][k] + sum(w["counts"][k] for w in loop["weeks"])
    truth["dirt"] = {
        source: {k: v + sum(w["dirt"][source][k] for w in loop["weeks"]) for k, v in counts.items()}
        for source, counts in hist["dirt"].items()
    }
    truth["expected_quarantine"] = {
        source: v + sum(w["expected_quarantine"].get(source, 0) for w in loop["weeks"])
        for source, v in hist["expected_quarantine"].items()
    }
    truth["closed_loop"] = loop
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(truth, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


# --- truth for decisions ---------------------------------------------------------------------


def true_response_curves(
    truth_or_sim_dir: dict | Path | str, *, channels: Sequence[str] | None = None
) -> ResponseCurves:
    """The true steady-state response per channel x geo as ONE draw, for the budget optimizer:
    beta = channel beta x geo share, scale = geo share x kappa, un-normalised adstock."""
    truth = _truth(truth_or_sim_dir)
    share = truth["geo_share"]
    chans = list(channels) if channels is not None else list(truth["config"]["channels"])
    unknown = [ch for ch in chans if ch not in truth["channels"]]
    if unknown:
        raise ClosedLoopError(f"no true parameters for channels {unknown}")
    pairs = [(ch, geo) for ch in chans for geo in truth["geos"]]
    l_max = {truth["channels"][ch]["adstock"]["l_max"] for ch in chans}
    if len(l_max) != 1 or any(truth["channels"][ch]["adstock"]["normalize"] for ch in chans):
        raise ClosedLoopError("true curves need one l_max and un-normalised adstock")
    return ResponseCurves.from_point(
        units=[f"{ch}{UNIT_SEPARATOR}{geo}" for ch, geo in pairs],
        beta=[truth["channels"][ch]["saturation"]["beta"] * share[geo] for ch, geo in pairs],
        lam=[truth["channels"][ch]["saturation"]["lambda"] for ch, _ in pairs],
        alpha=[truth["channels"][ch]["adstock"]["alpha"] for ch, _ in pairs],
        scale=[share[geo] * truth["channels"][ch]["saturation"]["kappa"] for ch, geo in pairs],
        channel=[ch for ch, _ in pairs],
        geo=[geo for _, geo in pairs],
        l_max=l_max.pop(),
        normalize=False,
    )


def true_weekly_contribution(
    truth: dict | Path | str, spend_by_unit: Mapping[str | tuple[str, str], float]
) -> float:
    """Steady-state weekly contribution (USD) of a weekly spend plan under the true DGP: what
    the plan earns each week once it has run for l_max weeks. Keys are 'channel|geo' or
    (channel, geo); units left out spend nothing."""
    curves = true_response_curves(truth)
    index = {u: i for i, u in enumerate(curves.units)}
    s = np.zeros(curves.n_units)
    for key, value in spend_by_unit.items():
        unit = key if isinstance(key, str) else UNIT_SEPARATOR.join(key)
        if unit not in index:
            raise ClosedLoopError(f"unknown unit {unit!r}; units look like 'search|US-CA'")
        s[index[unit]] += float(value)
    return float(curves.contribution(s)[0].sum())
