"""Turn a simulated market into landing files, the way real sources deliver them, plus truth.json.

Layout under the output folder:
    landing/events/date=YYYY-MM-DD/events.jsonl   web and app tracking events, by arrival day (UTC)
    landing/google_ads/ad_performance_YYYY-MM.csv  Google-Ads-like report, cost in micros
    landing/meta_ads/insights_YYYY-MM.json         Meta-like insights, spend as strings in EUR
    landing/offline_media/spend_YYYY-MM.csv        agency invoices for tv and email
    landing/crm/orders_YYYY-MM.csv                 CRM orders, some in EUR and GBP
    landing/reference/{campaigns,creatives,experiments,promotions}.csv
    landing/fx/fx_rates.csv                        daily USD value of each currency
    landing/creative_serving/serving_log.csv       sampled ad impressions with logging propensities
    truth.json                                     every true parameter and every injected flaw
    market_state.json                              what continues the market week by week

`closed_loop.extend_simulation` adds weeks beside these as `*_week_YYYY-MM-DD.*` files (and the
week's `events/date=*` folders), leaving every file above as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from models.privacy import consent
from models.simulation.config import (
    CHANNEL_PLATFORM,
    DEFAULT_UTC_OFFSET_HOURS,
    GEO_UTC_OFFSET_HOURS,
    SimulationConfig,
)
from models.simulation.market import (
    ADSTOCK_L_MAX,
    build_market,
    calibrate_beta,
    experiment_truth,
    marginal_roas,
)

TRUTH_FILE = "truth.json"
# What continues the market past the history (see models.simulation.closed_loop).
MARKET_STATE_FILE = "market_state.json"
MARKET_STATE_VERSION = 1
EVENT_BLOCK = 400_000  # events expanded and written at a time
LANDING_DIR = "landing"
SERVING_LOG_DIR = "creative_serving"
SERVING_LOG_FILE = "serving_log.csv"
SERVING_DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet")
SERVING_EPSILON = 0.2  # share of traffic the logging policy spreads uniformly, to explore
SERVING_POLICY_NAME = "tilt_eps20_v1"

_ACCOUNTS = {"google_ads": "4815162342", "meta": "1029384756", "offline": "agency-hmg"}
_CURRENCY_DEFAULT_RATE = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27}
_CPM = {"search": 45.0, "social": 9.0, "display": 3.5, "video": 12.0}
_CTR = {"search": 0.045, "social": 0.012, "display": 0.0035, "video": 0.006}
_CVR = {"search": 0.05, "social": 0.025, "display": 0.012, "video": 0.015}
_CLICK_WEIGHT = {
    "search": 3.0,
    "social": 1.5,
    "display": 0.4,
    "video": 0.5,
    "email": 1.5,
    "tv": 0.0,
}
_UTM = {
    "search": ("google", "cpc"),
    "display": ("google", "display"),
    "video": ("youtube", "video"),
    "social": ("facebook", "paid_social"),
    "email": ("newsletter", "email"),
}
# Device mix of each digital channel's impressions (mobile, desktop, tablet), and how much
# likelier a click is on each device before the creative's own device effect.
_SERVING_DEVICE_SHARE = {
    "search": (0.55, 0.38, 0.07),
    "social": (0.78, 0.15, 0.07),
    "display": (0.60, 0.30, 0.10),
    "video": (0.62, 0.23, 0.15),
}
_SERVING_DEVICE_MULT = (0.85, 1.25, 1.0)
_SPEND_DOW = np.array([1.05, 1.05, 1.0, 1.0, 0.98, 0.96, 0.96])
_REVENUE_DOW = np.array([0.95, 0.93, 0.94, 0.98, 1.05, 1.1, 1.05])
_HEADLINES = {
    "search": ["Trail Shoes, 210 g Light", "Run Farther in Comfort", "Free Returns on Runners"],
    "social": ["Meet the Northwind Tempo", "Your next PR starts here", "Built for early miles"],
    "display": ["Northwind Running", "Lighter. Faster. Yours.", "New season, new pace"],
    "video": ["The Tempo, in motion", "Made for the long run", "Run the city"],
    "tv": ["Every mile, Northwind", "Run your way", "The long run, made easy"],
    "email": [
        "Your weekly running picks",
        "New arrivals for your run",
        "A gift for your next mile",
    ],
}
_BODIES = [
    "Cushioned, breathable and 210 g per shoe. Free returns within 30 days.",
    "Recycled mesh upper and a grippy outsole. Sizes 36 to 48.",
    "Join 40,000 runners who switched this year. Ships in 2 days.",
]

Log = Callable[[str], None]


@dataclass(frozen=True)
class SimulationResult:
    out_dir: Path
    landing_dir: Path
    truth_path: Path
    truth: dict


def _fmt_ts(epoch_s: np.ndarray, offset_h: np.ndarray) -> list[str]:
    """ISO 8601 local timestamps with their UTC offset, e.g. 2024-01-01T09:15:02-05:00."""
    local = pd.to_datetime(epoch_s + offset_h * 3600, unit="s").strftime("%Y-%m-%dT%H:%M:%S")
    sign = np.where(offset_h < 0, "-", "+")
    hours = np.abs(offset_h).astype(int)
    suffix = [f"{s}{h:02d}:00" for s, h in zip(sign, hours, strict=True)]
    return [a + b for a, b in zip(local, suffix, strict=True)]


def _hex_ids(rng: np.random.Generator, n: int, prefix: str = "", nbytes: int = 8) -> np.ndarray:
    raw = rng.integers(0, 2**63, size=(n, max(1, nbytes // 8)), dtype=np.int64)
    return np.array([prefix + "".join(f"{v:016x}" for v in row) for row in raw], dtype=object)


# History streams: `SeedSequence(seed).spawn(10)` children, in this order. Spawned children
# depend only on their index, so a stream added last leaves the others' draws (and every file
# they shape) unchanged; the closed loop replays `leaf` and `users` to rebuild what they drew.
HISTORY_STREAMS: tuple[str, ...] = (
    "market", "leaf", "orders", "users", "events", "dirt", "fx", "perf", "serving", "fatigue",
)  # fmt: skip


def history_rng(seed: int, stream: str) -> np.random.Generator:
    """A fresh generator for one of the history's streams, e.g. to replay what it drew."""
    return np.random.default_rng(
        np.random.SeedSequence(seed).spawn(len(HISTORY_STREAMS))[HISTORY_STREAMS.index(stream)]
    )


def _day0(start: date) -> float:
    """Epoch seconds of midnight UTC on `start`."""
    return datetime.combine(start, datetime.min.time(), tzinfo=UTC).timestamp()


def _geo_offsets(geos: tuple[str, ...]) -> np.ndarray:
    return np.array([GEO_UTC_OFFSET_HOURS.get(g, DEFAULT_UTC_OFFSET_HOURS) for g in geos])


def _build_campaigns(
    config: SimulationConfig, rng: np.random.Generator
) -> tuple[list[dict], list[dict]]:
    """Campaigns and creatives of every channel, with their spend shares, CTRs and CVRs."""
    campaigns, creatives = [], []
    next_id = {"google_ads": 21_000_000_000, "meta": 23_851_000_000_000, "offline": 1}
    for ch in config.channels:
        platform = CHANNEL_PLATFORM[ch]
        shares = rng.dirichlet(np.full(config.campaigns_per_channel, 3.0))
        for k in range(config.campaigns_per_channel):
            if platform == "offline":
                cid = f"{ch}-{next_id['offline']:03d}"
            else:
                cid = str(next_id[platform])
            next_id[platform] += 1
            campaigns.append(
                {
                    "campaign_id": cid,
                    "platform": platform,
                    "account_id": _ACCOUNTS[platform],
                    "channel": ch,
                    "campaign_name": f"{ch.title()} | {'Prospecting' if k % 2 == 0 else 'Retargeting'} {k + 1}",
                    "objective": "conversions"
                    if ch in ("search", "social", "email")
                    else "awareness",
                    "started_on": config.start_date.isoformat(),
                    "_share": float(shares[k]),
                }
            )
            cshares = rng.dirichlet(np.full(config.creatives_per_campaign, 2.0))
            for j in range(config.creatives_per_campaign):
                if platform == "offline":
                    crid = f"{cid}-cr{j + 1}"
                else:
                    crid = str(next_id[platform] * 10 + j)
                ctr = _CTR.get(ch, 0.0) * float(rng.lognormal(0, 0.3))
                cvr = _CVR.get(ch, 0.0) * float(rng.lognormal(0, 0.3))
                creatives.append(
                    {
                        "creative_id": crid,
                        "campaign_id": cid,
                        "channel": ch,
                        "headline": _HEADLINES[ch][j % 3],
                        "body": _BODIES[(j + k) % 3],
                        "launched_on": config.start_date.isoformat(),
                        "_share": float(cshares[j]),
                        "_ctr": ctr,
                        "_cvr": cvr,
                    }
                )
            next_id[platform] += 1
    return campaigns, creatives


def _spend_leaves(
    config: SimulationConfig, campaigns: list[dict], creatives: list[dict]
) -> list[tuple]:
    """(channel index, campaign, creative or None, share within channel) of each spend leaf:
    a creative for the ad platforms, a campaign for offline media."""
    leaves = []
    for c, ch in enumerate(config.channels):
        for camp in (x for x in campaigns if x["channel"] == ch):
            if CHANNEL_PLATFORM[ch] == "offline":
                leaves.append((c, camp, None, camp["_share"]))
            else:
                for cr in (x for x in creatives if x["campaign_id"] == camp["campaign_id"]):
                    leaves.append((c, camp, cr, camp["_share"] * cr["_share"]))
    return leaves


def _dow_weights(rng: np.random.Generator, weeks: int, geos: int, channels: int) -> np.ndarray:
    """[W, G, C, 7]: the share of each week's spend that falls on each weekday."""
    dow_noise = rng.gamma(50.0, 1.0, size=(weeks, geos, channels, 7)) * _SPEND_DOW
    return dow_noise / dow_noise.sum(axis=3, keepdims=True)


def _fx_rows(days: list[date], fx: dict[str, np.ndarray]) -> list[dict]:
    return [
        {"date": days[d].isoformat(), "currency": cur, "usd_per_unit": f"{fx[cur][d]:.6f}"}
        for d in range(len(days))
        for cur in fx
    ]


@dataclass
class _Users:
    """The advertiser's users: where they are, what they consented to, their identifiers."""

    n: int
    geo: np.ndarray
    consent_rate: np.ndarray  # [G] share with full consent
    measured: np.ndarray  # measurement consent
    no_cmp: np.ndarray  # no consent string at all
    consent: np.ndarray
    anon_ids: np.ndarray
    user_ids: np.ndarray
    emails: np.ndarray
    ips: np.ndarray
    devices: np.ndarray
    platforms: np.ndarray
    by_geo: list[np.ndarray]


def _draw_users(
    config: SimulationConfig, rng: np.random.Generator, geo_share: np.ndarray
) -> _Users:
    G = config.geos
    n_users = max(50 * G, config.events // 12)
    user_geo = rng.choice(G, size=n_users, p=geo_share)
    consent_rate = rng.uniform(0.55, 0.9, G)
    u = rng.random(n_users)
    full = u < consent_rate[user_geo]
    measurement_only = (~full) & (u < consent_rate[user_geo] + 0.1)
    no_cmp = (~full) & (~measurement_only) & (rng.random(n_users) < 0.1)
    created = datetime.combine(config.start_date, datetime.min.time(), tzinfo=UTC)
    profiles = {
        "full": consent.encode({1, 3, 4, 7, 9}, created=created, vendor_consents=(1, 755)),
        "measurement_only": consent.encode({1, 7}, created=created),
        "denied": consent.encode(set(), created=created),
    }
    user_consent = np.where(
        full,
        profiles["full"],
        np.where(measurement_only, profiles["measurement_only"], profiles["denied"]),
    ).astype(object)
    user_consent[no_cmp] = None
    anon_ids = _hex_ids(rng, n_users, "a-", 16)
    logged_in = rng.random(n_users) < 0.4
    user_ids = np.array(
        [f"U{i:08d}" if li else None for i, li in enumerate(logged_in)], dtype=object
    )
    emails = np.array(
        [f"runner{i}@example.com" if li else None for i, li in enumerate(logged_in)], dtype=object
    )
    ips = np.array(
        [f"203.0.{i % 250}.{(i // 250) % 250 + 1}" for i in range(n_users)], dtype=object
    )
    devices = rng.choice(
        np.array(["desktop", "mobile", "tablet"], dtype=object), n_users, p=[0.4, 0.5, 0.1]
    )
    platforms = np.where((devices != "desktop") & (rng.random(n_users) < 0.4), "app", "web").astype(
        object
    )
    users_by_geo = [np.flatnonzero(user_geo == g) for g in range(G)]
    for g in range(G):
        if len(users_by_geo[g]) == 0:
            users_by_geo[g] = np.array([int(rng.integers(n_users))])
    return _Users(
        n=n_users,
        geo=user_geo,
        consent_rate=consent_rate,
        measured=full | measurement_only,
        no_cmp=no_cmp,
        consent=user_consent,
        anon_ids=anon_ids,
        user_ids=user_ids,
        emails=emails,
        ips=ips,
        devices=devices,
        platforms=platforms,
        by_geo=users_by_geo,
    )


@dataclass
class _Orders:
    """CRM orders of a run of whole weeks; arrays are of the completed orders."""

    frame: pd.DataFrame  # completed and cancelled rows, in file order, with `_day`
    day: np.ndarray  # day index from the first day of the period
    epoch: np.ndarray
    user: np.ndarray
    currency: np.ndarray
    amount: np.ndarray
    ids: np.ndarray
    n_cancelled: int
    completed_reporting_usd: float

    @property
    def n_completed(self) -> int:
        return len(self.day)


def _crm_orders(
    config: SimulationConfig,
    rng: np.random.Generator,
    realized_expected: np.ndarray,
    fx: dict[str, np.ndarray],
    users: _Users,
    start: date,
    *,
    first_order: int = 0,
    first_cancel: int = 0,
) -> _Orders:
    """Orders of the weeks in `realized_expected` [W, G] (revenue after noise) from `start`;
    order numbers continue after `first_order` and `first_cancel`."""
    W = realized_expected.shape[0]
    geos = config.geo_codes
    dow = np.tile(np.arange(7), W)
    week_of_day = np.repeat(np.arange(W), 7)
    rev_dow = _REVENUE_DOW / _REVENUE_DOW.sum()
    daily_rev = realized_expected[week_of_day] * rev_dow[dow][:, None]  # [D, G]
    n_orders = rng.poisson(daily_rev / config.average_order_value)
    o_day, o_geo = np.nonzero(n_orders)
    o_count = n_orders[o_day, o_geo]
    o_day = np.repeat(o_day, o_count)
    o_geo = np.repeat(o_geo, o_count)
    N = len(o_day)
    sigma = 0.35
    o_usd = np.round(config.average_order_value * rng.lognormal(-(sigma**2) / 2, sigma, N), 2)
    o_cur = np.where(
        rng.random(N) < config.dirt.foreign_currency_orders,
        rng.choice(np.array(["EUR", "GBP"], dtype=object), N),
        "USD",
    ).astype(object)
    o_rate = np.select([o_cur == "EUR", o_cur == "GBP"], [fx["EUR"][o_day], fx["GBP"][o_day]], 1.0)
    o_amount = np.round(o_usd / o_rate, 2)
    day0 = _day0(start)
    o_epoch = day0 + o_day * 86400 + rng.integers(0, 86400, N)
    o_user = np.array([users.by_geo[g][int(rng.integers(len(users.by_geo[g])))] for g in o_geo])
    offsets = _geo_offsets(geos)
    o_ids = np.array([f"ORD-{first_order + i + 1:08d}" for i in range(N)], dtype=object)
    orders = pd.DataFrame(
        {
            "order_id": o_ids,
            "customer_id": users.user_ids[o_user],
            "email": users.emails[o_user],
            "ordered_at": _fmt_ts(o_epoch, offsets[o_geo]),
            "geo": np.array(geos, dtype=object)[o_geo],
            "currency": o_cur,
            "order_total": o_amount,
            "status": "completed",
            "_day": o_day,
        }
    )
    n_cancel = int(N * 0.02)
    cancel = orders.sample(n=n_cancel, random_state=int(rng.integers(2**31))).copy()
    cancel["order_id"] = [f"ORD-C{first_cancel + i + 1:07d}" for i in range(n_cancel)]
    cancel["status"] = "cancelled"
    completed_reporting = float((o_amount * o_rate).sum())
    orders = pd.concat([orders, cancel], ignore_index=True).sort_values(
        ["_day", "ordered_at"], kind="stable"
    )
    return _Orders(
        frame=orders,
        day=o_day,
        epoch=o_epoch,
        user=o_user,
        currency=o_cur,
        amount=o_amount,
        ids=o_ids,
        n_cancelled=n_cancel,
        completed_reporting_usd=completed_reporting,
    )


def simulate(config: SimulationConfig, out_dir: Path, log: Log = print) -> SimulationResult:
    """Generate one simulated advertiser into `out_dir` and return its truth."""
    out_dir = Path(out_dir)
    landing = out_dir / LANDING_DIR
    landing.mkdir(parents=True, exist_ok=True)
    r_market, r_leaf, r_orders, r_users, r_events, r_dirt, r_fx, r_perf, r_serving, r_fatigue = (
        history_rng(config.seed, s) for s in HISTORY_STREAMS
    )

    W, G = config.weeks, config.geos
    channels = config.channels
    geos = config.geo_codes
    days = [config.start_date + timedelta(days=d) for d in range(config.days)]
    D = len(days)
    log(f"simulating {W} weeks x {G} geos x {len(channels)} channels (seed {config.seed})")

    market = build_market(config, r_market)
    weekly_actual = market.actual_spend()

    # --- campaigns and creatives --------------------------------------------------------------
    campaigns, creatives = _build_campaigns(config, r_leaf)

    # --- daily spend at leaf grain (creative x geo x day; campaign for offline), in cents ------
    log("allocating spend to days, campaigns and creatives")
    dow = np.tile(np.arange(7), W)
    week_of_day = np.repeat(np.arange(W), 7)
    leaves = _spend_leaves(config, campaigns, creatives)
    dow_w = _dow_weights(r_leaf, W, G, len(channels))
    daily = weekly_actual[week_of_day] * dow_w[week_of_day, :, :, dow]  # [D, G, C]
    leaf_cents = np.stack(
        [np.round(daily[:, :, c] * share * 100) for (c, _, _, share) in leaves], axis=2
    ).astype(np.int64)  # [D, G, L]
    weekly_rounded = np.zeros_like(weekly_actual)
    for li, (c, *_rest) in enumerate(leaves):
        weekly_rounded[:, :, c] += leaf_cents[:, :, li].reshape(W, 7, G).sum(axis=1) / 100.0

    calibrate_beta(market, weekly_rounded)
    contribution = market.response(weekly_rounded)
    expected = market.baseline + contribution.sum(axis=2)
    realized_expected = expected * market.noise

    # --- FX --------------------------------------------------------------------------------------
    fx = {}
    for cur, base in _CURRENCY_DEFAULT_RATE.items():
        if cur == "USD":
            fx[cur] = np.ones(D)
        else:
            walk = np.cumsum(r_fx.normal(0, 0.003, D))
            fx[cur] = np.round(base * np.exp(walk - walk.mean() * 0), 6)
    fx_rows = _fx_rows(days, fx)

    # --- users -----------------------------------------------------------------------------------
    log("drawing users and consent")
    users = _draw_users(config, r_users, market.geo_share)

    # --- CRM orders ------------------------------------------------------------------------------
    log("generating CRM orders")
    crm = _crm_orders(config, r_orders, realized_expected, fx, users, config.start_date)
    orders, N, n_cancel = crm.frame, crm.n_completed, crm.n_cancelled
    completed_reporting = crm.completed_reporting_usd
    day0 = _day0(config.start_date)
    offsets = _geo_offsets(geos)

    # --- tracking events -------------------------------------------------------------------------
    log(f"generating ~{config.events:,} tracking events")
    events = _tracking_events(
        config, r_events, geos, days, day0, offsets, campaigns, creatives, crm.ids,
        crm.user, crm.epoch, crm.currency, crm.amount, users.geo, users.anon_ids,
        users.user_ids, users.emails, users.ips, users.devices, users.platforms, users.consent,
    )  # fmt: skip

    # --- ad platform reports -----------------------------------------------------------------
    log("writing ad platform reports")
    perf_rows = _performance_rows(config, r_perf, leaves, leaf_cents, geos)
    fatigue_truth = _apply_fatigue(config, r_fatigue, perf_rows, creatives)

    # --- write landing files, injecting dirt -------------------------------------------------------
    dirt_counts = {}
    dirt_counts["tracking_events"] = _write_events(events, landing, days, config, r_dirt, log)
    (
        spend_truth,
        dirt_counts["google_ads"],
        dirt_counts["meta_ads"],
        dirt_counts["offline_media"],
    ) = _write_spend(perf_rows, landing, config, r_dirt, fx)
    impressions = {
        str(cid): int(n)
        for frame in perf_rows.values()
        if "impressions" in frame
        for cid, n in frame.groupby("creative_id")["impressions"].sum().items()
    }
    _write_monthly_csv(
        orders.drop(columns=["_day"]), orders["_day"].to_numpy(), days, landing / "crm", "orders"
    )
    ref = landing / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{k: v for k, v in c.items() if not k.startswith("_")} for c in campaigns]).to_csv(
        ref / "campaigns.csv", index=False
    )
    pd.DataFrame([{k: v for k, v in c.items() if not k.startswith("_")} for c in creatives]).to_csv(
        ref / "creatives.csv", index=False
    )
    exp_truth = experiment_truth(market, weekly_rounded)
    exp_rows, exp_true = [], []
    for e in exp_truth:
        plan = e["plan"]
        treat = [geos[g] for g in market.treatment_geos[e["index"]]]
        control = [g for g in geos if g not in treat]
        start = config.start_date + timedelta(weeks=plan.start_week)
        end = start + timedelta(weeks=plan.weeks) - timedelta(days=1)
        eid = f"EXP-{e['index'] + 1:03d}"
        exp_rows.append(
            {
                "experiment_id": eid,
                "channel": plan.channel,
                "design": "geo_holdout",
                "treatment_geos": ";".join(treat),
                "control_geos": ";".join(control),
                "start_date": start.isoformat(),
                "end_date": end.isoformat(),
                "status": "completed",
                "hypothesis": f"Pausing {plan.channel} in {len(treat)} geos for {plan.weeks} weeks lowers revenue",
            }
        )
        exp_true.append(
            {
                "experiment_id": eid,
                "channel": plan.channel,
                "treatment_geos": treat,
                "control_geos": control,
                "start_date": start.isoformat(),
                "end_date": end.isoformat(),
                "true_incremental_revenue": e["incremental_revenue"],
                "true_counterfactual_revenue": e["counterfactual_revenue"],
                "true_lift_pct": e["lift_pct"],
                "true_incremental_revenue_with_carryover": e["incremental_revenue_with_carryover"],
                "cooldown_weeks": e["cooldown_weeks"],
            }
        )
    pd.DataFrame(
        exp_rows,
        columns=["experiment_id", "channel", "design", "treatment_geos", "control_geos", "start_date",
                 "end_date", "status", "hypothesis"],
    ).to_csv(ref / "experiments.csv", index=False)  # fmt: skip
    promos = []
    for w in np.flatnonzero(market.promo_days):
        start = config.start_date + timedelta(weeks=int(w))
        promos.append(
            {
                "promo_id": f"PROMO-{len(promos) + 1:03d}",
                "name": f"Runner's week {len(promos) + 1}",
                "start_date": start.isoformat(),
                "end_date": (start + timedelta(days=int(market.promo_days[w]) - 1)).isoformat(),
                "discount_pct": 15.0,
            }
        )
    pd.DataFrame(
        promos, columns=["promo_id", "name", "start_date", "end_date", "discount_pct"]
    ).to_csv(ref / "promotions.csv", index=False)
    (landing / "fx").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(fx_rows).to_csv(landing / "fx" / "fx_rates.csv", index=False)
    log(f"logging {config.serving_log_impressions:,} creative impressions")
    serving_log, serving_truth = _serving_log(
        config, r_serving, campaigns, creatives, leaves, leaf_cents, days, geos
    )
    (landing / SERVING_LOG_DIR).mkdir(parents=True, exist_ok=True)
    serving_log.to_csv(landing / SERVING_LOG_DIR / SERVING_LOG_FILE, index=False)

    # --- truth -------------------------------------------------------------------------------------
    contrib_total = contribution.sum(axis=(0, 1))
    m_roas = marginal_roas(market, weekly_rounded)
    truth = {
        "generator": "adloop.models.simulation",
        "config": config.to_dict(),
        "reporting_currency": "USD",
        "geos": list(geos),
        "geo_share": dict(zip(geos, map(float, market.geo_share), strict=True)),
        "consent_rate_full": dict(zip(geos, map(float, users.consent_rate), strict=True)),
        "users": {
            "total": int(users.n),
            "with_measurement_consent": int(users.measured.sum()),
            "without_consent_string": int(users.no_cmp.sum()),
        },
        "channels": {
            ch: {
                "platform": CHANNEL_PLATFORM[ch],
                "true_roas": float(contrib_total[c] / weekly_rounded[:, :, c].sum())
                if weekly_rounded[:, :, c].sum() > 0
                else 0.0,
                "true_marginal_roas": float(m_roas[c]),
                "true_contribution": float(contrib_total[c]),
                "spend_usd": float(weekly_rounded[:, :, c].sum()),
                "spend_reported_usd": spend_truth[ch],
                "adstock": {
                    "type": "geometric",
                    "alpha": config.channel_truth[ch].adstock_alpha,
                    "l_max": ADSTOCK_L_MAX,
                    "normalize": False,
                },
                "saturation": {
                    "type": "logistic",
                    "lambda": config.channel_truth[ch].saturation_lambda,
                    "input": "adstocked spend / (geo_share * kappa)",
                    "kappa": float(market.kappa[c]),
                    "beta": float(market.beta[c]),
                },
            }
            for c, ch in enumerate(channels)
        },
        "baseline_revenue": float(market.baseline.sum()),
        "expected_revenue": float(expected.sum()),
        "revenue_completed_reporting_usd": completed_reporting,
        "promo_effect": config.promo_effect,
        "experiments": exp_true,
        "creatives": {
            cr["creative_id"]: {
                "campaign_id": cr["campaign_id"],
                "channel": cr["channel"],
                "ctr": cr["_ctr"],
                "cvr": cr["_cvr"],
                **fatigue_truth.get(cr["creative_id"], {}),
            }
            for cr in creatives
        },
        "creative_serving": serving_truth,
        "counts": {
            "orders_completed": int(N),
            "orders_cancelled": int(n_cancel),
            "events_unique": dirt_counts["tracking_events"]["events_written"],
            "days": D,
        },
        "dirt": dirt_counts,
        "expected_quarantine": {
            "tracking_events": dirt_counts["tracking_events"]["malformed_lines"],
            "google_ads": dirt_counts["google_ads"]["negative_spend_rows"]
            + dirt_counts["google_ads"]["missing_spend_rows"],
            "meta_ads": dirt_counts["meta_ads"]["negative_spend_rows"]
            + dirt_counts["meta_ads"]["missing_spend_rows"],
            "offline_media": dirt_counts["offline_media"]["negative_spend_rows"]
            + dirt_counts["offline_media"]["missing_spend_rows"],
            "creative_serving": 0,
        },
    }
    truth_path = out_dir / TRUTH_FILE
    truth_path.write_text(json.dumps(truth, indent=2, sort_keys=True, default=str) + "\n")
    log(f"wrote {truth_path}")
    write_market_state(
        out_dir,
        {
            "version": MARKET_STATE_VERSION,
            "config": config.to_dict(),
            "history_weeks": W,
            "channels": list(channels),
            "geos": list(geos),
            "geo_share": [float(v) for v in market.geo_share],
            "geo_base": [float(v) for v in market.geo_base],
            "season_phase": float(market.season_phase),
            "promo_days": [float(v) for v in market.promo_days],
            "noise": market.noise.tolist(),
            "kappa": [float(v) for v in market.kappa],
            "beta": [float(v) for v in market.beta],
            "weekly_spend_usd": weekly_rounded.tolist(),
            "fx_last": {cur: float(rates[-1]) for cur, rates in fx.items()},
            "creative_impressions": impressions,
            "orders_completed": int(N),
            "orders_cancelled": int(n_cancel),
            "extensions": [],
        },
    )
    return SimulationResult(
        out_dir=out_dir, landing_dir=landing, truth_path=truth_path, truth=truth
    )


def write_market_state(out_dir: Path, state: dict) -> Path:
    """Write the market's continuation state beside truth.json, atomically."""
    path = Path(out_dir) / MARKET_STATE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def _serving_log(
    config: SimulationConfig,
    rng: np.random.Generator,
    campaigns: list[dict],
    creatives: list[dict],
    leaves: list[tuple],
    leaf_cents: np.ndarray,
    days: list[date],
    geos: tuple[str, ...],
) -> tuple[pd.DataFrame, dict]:
    """Logged impressions of the digital campaigns (which creative the logging policy served in
    which context, with what probability, and whether it was clicked) and the truth that values
    any other creative policy on the same contexts.

    Email is left out: a send is not an impression auction, and email creatives have no CTR here.
    """
    columns = ["impression_id", "served_on", "campaign_id", "creative_id", "channel", "geo",
               "device", "propensity", "clicked", "logging_policy"]  # fmt: skip
    digital = [c for c in campaigns if c["channel"] in _SERVING_DEVICE_SHARE]
    col = {c["campaign_id"]: k for k, c in enumerate(digital)}
    D, G, _ = leaf_cents.shape
    # Contexts follow delivery (impressions bought by each day's spend), so nothing is served
    # where a holdout kept the channel dark.
    volume = np.zeros((D, G, len(digital)))
    for li, (_c, camp, cr, _share) in enumerate(leaves):
        if cr is not None and camp["campaign_id"] in col:
            volume[:, :, col[camp["campaign_id"]]] += leaf_cents[:, :, li] / _CPM[camp["channel"]]
    total = float(volume.sum())

    dev_mult = np.array(_SERVING_DEVICE_MULT)
    geo_volume = volume.sum(axis=(0, 2))
    geo_mult = rng.lognormal(0.0, 0.1, G)
    if total > 0:
        geo_mult /= float(geo_mult @ geo_volume) / total  # impression-weighted mean of 1
    K, n_dev = config.creatives_per_campaign, len(SERVING_DEVICES)
    ctr = np.zeros((len(digital), K))
    effect = np.ones((len(digital), K, n_dev))
    logging_p = np.full((len(digital), K, n_dev), 1.0 / K)
    dev_share = np.zeros((len(digital), n_dev))
    for k, camp in enumerate(digital):
        crs = [cr for cr in creatives if cr["campaign_id"] == camp["campaign_id"]]
        dev_share[k] = _SERVING_DEVICE_SHARE[camp["channel"]]
        ctr[k] = [cr["_ctr"] for cr in crs]
        # A creative x device interaction: the best creative differs by device, which a
        # context-free policy cannot exploit. Normalised so each creative's device-weighted
        # mean CTR is its registry CTR.
        raw = rng.lognormal(0.0, 0.35, (K, n_dev))
        effect[k] = raw / (raw * dev_mult * dev_share[k]).sum(axis=1, keepdims=True)
        # The platform's optimiser half knows the device effects; spend shares set the base.
        tilt = 0.6 * np.log(effect[k]) + rng.normal(0.0, 0.3, (K, n_dev))
        w = np.array([cr["_share"] for cr in crs])[:, None] * np.exp(tilt)
        logging_p[k] = (1 - SERVING_EPSILON) * w / w.sum(axis=0) + SERVING_EPSILON / K

    n = config.serving_log_impressions if total > 0 else 0
    cell = np.sort(rng.choice(volume.size, size=n, p=volume.reshape(-1) / total)) if n else []
    day, g, ci = np.unravel_index(np.asarray(cell, dtype=np.int64), volume.shape)
    u_dev, u_arm, u_click = rng.random((3, n))
    device = (u_dev[:, None] > np.cumsum(dev_share, axis=1)[ci]).sum(axis=1).clip(0, n_dev - 1)
    p_rows = logging_p[ci, :, device]  # [n, K]
    arm = (u_arm[:, None] > np.cumsum(p_rows, axis=1)).sum(axis=1).clip(0, K - 1)
    rows = np.arange(n)
    click_p = ctr[ci, arm] * dev_mult[device] * geo_mult[g] * effect[ci, arm, device]
    clicked = (u_click < np.minimum(click_p, 1.0)).astype(int)
    cr_ids = np.array(
        [cr["creative_id"] for c in digital for cr in creatives if cr["campaign_id"] == c["campaign_id"]],
        dtype=object,
    ).reshape(len(digital), K)  # fmt: skip
    day_iso = np.array([d.isoformat() for d in days], dtype=object)
    log_df = pd.DataFrame(
        {
            "impression_id": [f"imp-{i + 1:08d}" for i in range(n)],
            "served_on": day_iso[day],
            "campaign_id": np.array([c["campaign_id"] for c in digital], dtype=object)[ci],
            "creative_id": cr_ids[ci, arm],
            "channel": np.array([c["channel"] for c in digital], dtype=object)[ci],
            "geo": np.array(geos, dtype=object)[g],
            "device": np.array(SERVING_DEVICES, dtype=object)[device],
            "propensity": np.round(p_rows[rows, arm], 6),
            "clicked": clicked,
            "logging_policy": SERVING_POLICY_NAME,
        },
        columns=columns,
    )

    context_share = volume.sum(axis=0) / total if total > 0 else np.zeros((G, len(digital)))
    truth = {
        "logging_policy": SERVING_POLICY_NAME,
        "epsilon": SERVING_EPSILON,
        "impressions": int(n),
        "clicks": int(clicked.sum()),
        "click_probability": "ctr * device_multiplier[device] * geo_multiplier[geo]"
        " * device_effect[device], capped at 1",
        "devices": list(SERVING_DEVICES),
        "device_multiplier": dict(zip(SERVING_DEVICES, map(float, dev_mult), strict=True)),
        "geo_multiplier": dict(zip(geos, map(float, geo_mult), strict=True)),
        "device_share": {
            ch: dict(zip(SERVING_DEVICES, map(float, sh), strict=True))
            for ch, sh in _SERVING_DEVICE_SHARE.items()
            if ch in {c["channel"] for c in digital}
        },
        # Probability of a (campaign, geo) context among logged impressions; devices then
        # follow device_share of the campaign's channel.
        "contexts": [
            {
                "campaign_id": camp["campaign_id"],
                "channel": camp["channel"],
                "geo": geos[gi],
                "share": float(context_share[gi, ki]),
            }
            for ki, camp in enumerate(digital)
            for gi in range(G)
            if context_share[gi, ki] > 0
        ],
        "creatives": {
            str(cr_ids[ki, a]): {
                "campaign_id": camp["campaign_id"],
                "channel": camp["channel"],
                "ctr": float(ctr[ki, a]),
                "device_effect": dict(zip(SERVING_DEVICES, map(float, effect[ki, a]), strict=True)),
                "logging_probability": dict(
                    zip(SERVING_DEVICES, map(float, logging_p[ki, a]), strict=True)
                ),
            }
            for ki, camp in enumerate(digital)
            for a in range(K)
        },
    }
    return log_df, truth


def _month_keys(day_idx: np.ndarray, days: list[date], tag: str | None = None) -> np.ndarray:
    """The file key of each row: its month (YYYY-MM), or `tag` for every row when given."""
    if tag is not None:
        return np.full(len(day_idx), tag, dtype=object)
    months = np.array([d.strftime("%Y-%m") for d in days], dtype=object)
    return months[day_idx]


def _write_monthly_csv(
    df: pd.DataFrame,
    day_idx: np.ndarray,
    days: list[date],
    folder: Path,
    stem: str,
    tag: str | None = None,
) -> list[Path]:
    """One CSV per month (`{stem}_YYYY-MM.csv`), or one `{stem}_{tag}.csv` when tagged."""
    folder.mkdir(parents=True, exist_ok=True)
    months = _month_keys(day_idx, days, tag)
    written = []
    for month in sorted(set(months)):
        path = folder / f"{stem}_{month}.csv"
        df[months == month].to_csv(path, index=False)
        written.append(path)
    return written


def _tracking_events(
    config, rng, geos, days, day0, offsets, campaigns, creatives, o_ids, o_user, o_epoch, o_cur,
    o_amount, user_geo, anon_ids, user_ids, emails, ips, devices, platforms, user_consent,
    n_events: int | None = None, click_spend: dict[str, float] | None = None,
) -> Iterator[pd.DataFrame]:  # fmt: skip
    """Sessions of page views, ad clicks and purchases; a sample of CRM orders is tracked.
    Yields the events in blocks of about EVENT_BLOCK, in time order.

    `n_events` replaces `config.events` (a part of the history); `click_spend` the channels'
    configured weekly spend in how ad clicks are shared out among channels."""
    E, D = (config.events if n_events is None else n_events), len(days)
    N = len(o_user)
    n_track = min(int(0.8 * N), int(0.35 * E / 4.55))
    n_browse = max(0, int((E - n_track * 4.55) / 2.3))
    order_idx = np.sort(rng.choice(N, size=n_track, replace=False)) if n_track else np.zeros(0, int)
    n_users = len(user_geo)

    # Ad click sources: digital channels, weighted by how many clicks each drives.
    click_channels = [ch for ch in config.channels if _CLICK_WEIGHT.get(ch, 0) > 0]
    spend_of = click_spend or {ch: config.channel_truth[ch].weekly_spend for ch in click_channels}
    w = np.array([_CLICK_WEIGHT[ch] * spend_of.get(ch, 0.0) for ch in click_channels])
    by_channel = {
        ch: (
            [c for c in campaigns if c["channel"] == ch],
            {
                c["campaign_id"]: [x for x in creatives if x["campaign_id"] == c["campaign_id"]]
                for c in campaigns
            },
        )
        for ch in click_channels
    }

    S = n_track + n_browse
    s_conv = np.zeros(S, bool)
    s_conv[:n_track] = True
    users_browse = rng.choice(n_users, size=n_browse)
    s_user = np.concatenate([o_user[order_idx], users_browse]).astype(int)
    s_gap = rng.integers(15, 200, S)
    s_click = rng.random(S) < np.where(s_conv, 0.55, 0.5)
    if click_spend is not None and not w.sum() > 0:
        s_click[:] = False  # no channel buys clicks this period
    s_pages = np.where(s_conv, 4, rng.choice([1, 2, 3], S, p=[0.5, 0.3, 0.2]))
    s_count = s_click.astype(int) + s_pages
    browse_day = rng.integers(0, D, n_browse)
    browse_start = day0 + browse_day * 86400 + rng.integers(0, 86400 - 1200, n_browse)
    conv_start = o_epoch[order_idx] - (s_count[:n_track] - 1) * s_gap[:n_track]
    s_start = np.concatenate([conv_start, browse_start])
    s_ids = _hex_ids(rng, S, "s-", 8)

    # Per-session click attribution.
    s_channel = np.full(S, -1)
    s_channel[s_click] = (
        rng.choice(len(click_channels), size=int(s_click.sum()), p=w / w.sum())
        if len(w) and w.sum() > 0
        else -1
    )
    s_campaign = np.full(S, None, dtype=object)
    s_creative = np.full(S, None, dtype=object)
    s_campaign_name = np.full(S, None, dtype=object)
    for k, ch in enumerate(click_channels):
        idx = np.flatnonzero(s_channel == k)
        camps, crs = by_channel[ch]
        shares = np.array([c["_share"] for c in camps])
        pick = rng.choice(len(camps), size=len(idx), p=shares / shares.sum())
        for j, camp in enumerate(camps):
            sel = idx[pick == j]
            s_campaign[sel] = camp["campaign_id"]
            s_campaign_name[sel] = camp["campaign_name"]
            cr_list = crs[camp["campaign_id"]]
            cr_shares = np.array([c["_share"] for c in cr_list])
            s_creative[sel] = np.array([c["creative_id"] for c in cr_list], dtype=object)[
                rng.choice(len(cr_list), size=len(sel), p=cr_shares / cr_shares.sum())
            ]

    locals_ = dict(locals())
    # Expand sessions into events, a block of sessions at a time (time order), so memory stays
    # flat however many events are asked for.
    by_time = np.argsort(s_start, kind="stable")
    ends = np.cumsum(s_count[by_time])
    block_bounds = (
        np.searchsorted(ends, np.arange(EVENT_BLOCK, ends[-1] + EVENT_BLOCK, EVENT_BLOCK))
        if S
        else []
    )
    lo = 0
    for hi in [*block_bounds, S]:
        hi = min(int(hi) + 1, S)
        if hi <= lo:
            continue
        yield _expand_sessions(by_time[lo:hi], rng, locals_)
        lo = hi


def _expand_sessions(sel: np.ndarray, rng: np.random.Generator, v: dict) -> pd.DataFrame:
    """Events of the sessions `sel`, sorted by day and time."""
    s_count, s_click, s_start, s_gap, s_user, s_channel = (
        v["s_count"], v["s_click"], v["s_start"], v["s_gap"], v["s_user"], v["s_channel"]
    )  # fmt: skip
    click_channels, order_idx, o_amount, o_cur, o_ids = (
        v["click_channels"], v["order_idx"], v["o_amount"], v["o_cur"], v["o_ids"]
    )  # fmt: skip
    user_geo, offsets, geos, day0, D = v["user_geo"], v["offsets"], v["geos"], v["day0"], v["D"]
    counts = s_count[sel]
    sess = np.repeat(sel, counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    pos = np.arange(len(sess)) - first
    click = s_click[sess]
    page_pos = pos - click.astype(int)
    types = np.array(["page_view", "product_view", "add_to_cart", "purchase"], dtype=object)
    etype = np.where(click & (pos == 0), "ad_click", types[np.clip(page_pos, 0, 3)]).astype(object)
    epoch = s_start[sess] + pos * s_gap[sess]
    user = s_user[sess]
    is_click = etype == "ad_click"
    is_purchase = etype == "purchase"
    n_ev = len(sess)

    ch_names = np.array([*click_channels, None], dtype=object)[
        np.where(s_channel[sess] >= 0, s_channel[sess], -1)
    ]
    utm_source = np.full(n_ev, None, dtype=object)
    utm_medium = np.full(n_ev, None, dtype=object)
    click_id = np.full(n_ev, None, dtype=object)
    for ch, (src, med) in _UTM.items():
        m = is_click & (ch_names == ch)
        utm_source[m] = src
        utm_medium[m] = med
        if CHANNEL_PLATFORM.get(ch) in ("google_ads", "meta"):
            prefix = "Cj0KCQ" if CHANNEL_PLATFORM[ch] == "google_ads" else "IwAR"
            click_id[m] = _hex_ids(rng, int(m.sum()), prefix, 16)
    order_of_event = np.full(n_ev, -1)
    order_of_event[is_purchase] = order_idx[sess[is_purchase]]
    revenue = np.full(n_ev, np.nan)
    revenue[is_purchase] = o_amount[order_of_event[is_purchase]]
    currency = np.full(n_ev, None, dtype=object)
    currency[is_purchase] = o_cur[order_of_event[is_purchase]]
    order_col = np.full(n_ev, None, dtype=object)
    order_col[is_purchase] = o_ids[order_of_event[is_purchase]]
    carries_email = is_purchase | (etype == "add_to_cart")
    page_url = np.select(
        [is_click, etype == "page_view", etype == "product_view", etype == "add_to_cart"],
        ["https://shop.northwind.example/?utm=1", "https://shop.northwind.example/",
         "https://shop.northwind.example/products/tempo", "https://shop.northwind.example/cart"],
        "https://shop.northwind.example/checkout/complete",
    )  # fmt: skip
    geo_arr = np.array(geos, dtype=object)
    g = user_geo[user]
    df = pd.DataFrame(
        {
            "event_id": _hex_ids(rng, n_ev, "", 16),
            "event_type": etype,
            "event_ts": _fmt_ts(epoch, offsets[g]),
            "anonymous_id": v["anon_ids"][user],
            "user_id": v["user_ids"][user],
            "session_id": v["s_ids"][sess],
            "platform": v["platforms"][user],
            "page_url": page_url,
            "utm_source": utm_source,
            "utm_medium": utm_medium,
            "utm_campaign": np.where(is_click, v["s_campaign_name"][sess], None),
            "click_id": click_id,
            "campaign_id": np.where(is_click, v["s_campaign"][sess], None),
            "creative_id": np.where(is_click, v["s_creative"][sess], None),
            "geo": geo_arr[g],
            "device": v["devices"][user],
            "revenue": revenue,
            "currency": currency,
            "order_id": order_col,
            "consent_string": v["user_consent"][user],
            "email": np.where(carries_email, v["emails"][user], None),
            "ip": v["ips"][user],
        }
    )
    df["_true_day"] = ((epoch - day0) // 86400).astype(int)
    df["_day"] = np.clip(df["_true_day"], 0, D - 1)
    return df.sort_values(["_day", "event_ts"], kind="stable").reset_index(drop=True)


def _write_events(blocks: Iterable[pd.DataFrame], landing: Path, days, config, rng, log) -> dict:
    """One JSON Lines file per arrival day, with duplicates, late arrivals and broken lines.

    Blocks come in time order; a late event may land in a later day's file, so files are
    appended to, after being emptied first.
    """
    D = len(days)
    dirt = config.dirt
    root = landing / "events"
    files = [root / f"date={d.isoformat()}" / "events.jsonl" for d in days]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("")
    totals = dict.fromkeys(
        (
            "events_written",
            "duplicate_lines",
            "late_events",
            "malformed_lines",
            "extra_field_events",
            "lines_total",
        ),
        0,
    )
    for events in blocks:
        n = len(events)
        arrival = events["_day"].to_numpy().copy()
        late = rng.random(n) < dirt.late_events
        delay = rng.integers(1, 4, n)
        late &= arrival + delay <= D - 1
        arrival[late] += delay[late]
        lines = np.array(
            events.drop(columns=["_day", "_true_day"])
            .to_json(orient="records", lines=True)
            .splitlines(),
            dtype=object,
        )
        extra = rng.random(n) < dirt.extra_field_events
        lines[extra] = [s[:-1] + ',"sdk_debug":{"build":"7.3.1","queue":2}}' for s in lines[extra]]
        dup = rng.random(n) < dirt.duplicate_events
        broken = rng.random(n) < dirt.malformed_lines
        order = np.argsort(arrival, kind="stable")
        bounds = np.searchsorted(arrival[order], np.arange(D + 1))
        for d in np.unique(arrival):
            out: list[str] = []
            for i in order[bounds[d] : bounds[d + 1]]:
                s = lines[i]
                out.append(s)
                if dup[i]:
                    out.append(s)  # a tracker retry: the same event, byte for byte
                if broken[i]:
                    cut = int(rng.integers(10, max(11, len(s) - 2)))
                    out.append(s[:cut])  # a write cut short; the full event is still delivered
            with files[d].open("a") as fh:
                fh.write("\n".join(out) + "\n")
        totals["events_written"] += n
        totals["duplicate_lines"] += int(dup.sum())
        # Late = arriving after its UTC day; sessions that began just before the first day count too.
        totals["late_events"] += int((arrival > events["_true_day"].to_numpy()).sum())
        totals["malformed_lines"] += int(broken.sum())
        totals["extra_field_events"] += int(extra.sum())
        totals["lines_total"] += int(n + dup.sum() + broken.sum())
        log(f"  events: {totals['events_written']:,} written")
    return totals


def _performance_rows(config, rng, leaves, leaf_cents, geos) -> dict[str, pd.DataFrame]:
    """Leaf rows (creative or campaign x geo x day) per platform, with delivery metrics."""
    D, G, _ = leaf_cents.shape
    day_idx = np.repeat(np.arange(D), G)
    geo_idx = np.tile(np.arange(G), D)
    frames: dict[str, list[pd.DataFrame]] = {"google_ads": [], "meta": [], "offline": []}
    for li, (c, camp, cr, _share) in enumerate(leaves):
        ch = config.channels[c]
        platform = CHANNEL_PLATFORM[ch]
        cents = leaf_cents[:, :, li].reshape(-1)
        base = {
            "_day": day_idx,
            "_geo": np.array(geos, dtype=object)[geo_idx],
            "_cents": cents,
            "_channel": ch,
            "campaign": camp,
            "creative_id": cr["creative_id"] if cr else None,
        }
        if platform != "offline":
            impressions = rng.poisson(cents / 100.0 / _CPM[ch] * 1000)
            clicks = rng.binomial(impressions, min(cr["_ctr"], 1.0))
            conversions = rng.binomial(clicks, min(cr["_cvr"], 1.0))
            value = np.round(
                conversions * config.average_order_value * rng.lognormal(0, 0.2, len(cents)), 2
            )
            base.update(
                impressions=impressions, clicks=clicks, conversions=conversions, value=value
            )
        frame = pd.DataFrame({k: v for k, v in base.items() if k != "campaign"})
        frame = frame.assign(campaign_id=camp["campaign_id"], campaign_name=camp["campaign_name"])
        frames[platform].append(frame[frame["_cents"] > 0])  # platforms omit days without delivery
    return {k: pd.concat(v, ignore_index=True) for k, v in frames.items() if v}


def _apply_fatigue(config, rng, perf: dict[str, pd.DataFrame], creatives) -> dict[str, dict]:
    """Wear-out: a share of the digital creatives lose click rate with cumulative exposure,
    CTR(t) = CTR x exp(-rate x cumulative impressions in millions). Applied by thinning the
    clicks already drawn (each click survives with that probability, conversions with their
    click), from its own random stream, so every other number stays as it was. Returns the
    truth per creative: the rate and the decay over the whole history."""
    truth: dict[str, dict] = {}
    fatigued = {
        cr["creative_id"]
        for cr in creatives
        if cr["channel"] in _CTR and rng.random() < config.fatigued_creative_share
    }
    for frame in perf.values():
        if "clicks" not in frame:
            continue
        order = frame.sort_values(["creative_id", "_day", "_geo"], kind="stable").index
        f = frame.loc[order]
        daily = f.groupby(["creative_id", "_day"], sort=True)["impressions"].sum()
        # exposure before each day, so a creative's launch day is at full strength
        before = daily.groupby(level=0).cumsum() - daily
        for cid in sorted(set(f["creative_id"]) & fatigued):
            total = float(daily.loc[cid].sum()) / 1e6
            target = float(rng.uniform(0.3, 0.6))  # CTR lost over the history
            rate = -np.log1p(-target) / max(total, 1e-9)
            idx = f.index[f["creative_id"] == cid]
            exposure = before.loc[cid].reindex(f.loc[idx, "_day"]).to_numpy() / 1e6
            _thin_clicks(frame, idx, np.exp(-rate * exposure), rng)
            truth[cid] = {
                "fatigued": True,
                "fatigue_rate_per_million_impressions": rate,
                "ctr_decay_over_history": 1 - float(np.exp(-rate * total)),
            }
    for cr in creatives:
        if cr["channel"] in _CTR and cr["creative_id"] not in truth:
            truth[cr["creative_id"]] = {"fatigued": False}
    return truth


def _thin_clicks(frame: pd.DataFrame, idx, keep: np.ndarray, rng: np.random.Generator) -> None:
    """Keep each click of rows `idx` with probability `keep` (conversions with their click),
    scaling conversion value with the conversions kept."""
    conv = frame.loc[idx, "conversions"].to_numpy()
    clicks = frame.loc[idx, "clicks"].to_numpy()
    conv_kept = rng.binomial(conv, keep)
    clicks_kept = conv_kept + rng.binomial(clicks - conv, keep)
    value = frame.loc[idx, "value"].to_numpy()
    frame.loc[idx, "value"] = np.round(
        np.where(conv > 0, value * conv_kept / np.maximum(conv, 1), 0.0), 2
    )
    frame.loc[idx, "clicks"] = clicks_kept
    frame.loc[idx, "conversions"] = conv_kept


def _inject_spend_dirt(
    df: pd.DataFrame, column: str, rng, rate_neg: float, rate_missing: float, negate
):
    """Append copies of random rows with negative or missing spend; they must be quarantined."""
    n_neg = round(len(df) * rate_neg)
    n_miss = round(len(df) * rate_missing)
    neg = df.iloc[rng.choice(len(df), n_neg, replace=False)].copy() if n_neg else df.iloc[:0].copy()
    neg[column] = [negate(v) for v in neg[column]]
    miss = (
        df.iloc[rng.choice(len(df), n_miss, replace=False)].copy() if n_miss else df.iloc[:0].copy()
    )
    miss[column] = None
    out = pd.concat([df, neg, miss], ignore_index=True).sort_values("_day", kind="stable")
    return out, {"negative_spend_rows": n_neg, "missing_spend_rows": n_miss}


def _write_spend(
    perf: dict[str, pd.DataFrame],
    landing: Path,
    config,
    rng,
    fx,
    days: list[date] | None = None,
    tag: str | None = None,
    written: list[Path] | None = None,
    reported_by_geo: dict[tuple[str, str], float] | None = None,
):
    """Write the platforms' spend reports, with dirt: monthly files of the history's days, or
    with `days` and `tag` one `{stem}_{tag}` file per platform. Paths written are appended to
    `written`, the reported USD per (channel, geo) added into `reported_by_geo`."""
    if days is None:
        days = [config.start_date + timedelta(days=d) for d in range(config.days)]
    written = [] if written is None else written
    day_iso = np.array([d.isoformat() for d in days], dtype=object)
    spend_truth = dict.fromkeys(config.channels, 0.0)
    dirt = config.dirt
    counts = {}
    for platform in ("google_ads", "meta", "offline"):
        key = {"google_ads": "google_ads", "meta": "meta_ads", "offline": "offline_media"}[platform]
        counts[key] = {"negative_spend_rows": 0, "missing_spend_rows": 0}
        if platform not in perf:
            continue
        df = perf[platform]
        if platform == "google_ads":
            out = pd.DataFrame(
                {
                    "segments.date": day_iso[df["_day"]],
                    "customer.id": _ACCOUNTS["google_ads"],
                    "customer.currency_code": "USD",
                    "campaign.id": df["campaign_id"],
                    "campaign.name": df["campaign_name"],
                    "ad_group.id": df["campaign_id"].astype(str) + "1",
                    "ad_group_ad.ad.id": df["creative_id"],
                    "segments.geo_target_region": df["_geo"],
                    "metrics.cost_micros": (df["_cents"] * 10_000).astype("int64").astype(object),
                    "metrics.impressions": df["impressions"],
                    "metrics.clicks": df["clicks"],
                    "metrics.conversions": df["conversions"].astype(float),
                    "metrics.conversions_value": df["value"],
                    "_day": df["_day"],
                }
            )
            reported = df["_cents"].to_numpy() / 100.0
            spend_col, negate = "metrics.cost_micros", lambda v: -int(v)
        elif platform == "meta":
            cur = config.meta_account_currency
            rate = fx[cur][df["_day"].to_numpy()]
            spend_str = [f"{c / 100.0 / r:.2f}" for c, r in zip(df["_cents"], rate, strict=True)]
            reported = np.array([float(s) for s in spend_str]) * rate
            value_str = [f"{v / r:.2f}" for v, r in zip(df["value"], rate, strict=True)]
            out = pd.DataFrame(
                {
                    "date_start": day_iso[df["_day"]],
                    "date_stop": day_iso[df["_day"]],
                    "account_id": _ACCOUNTS["meta"],
                    "account_currency": cur,
                    "campaign_id": df["campaign_id"],
                    "campaign_name": df["campaign_name"],
                    "adset_id": df["campaign_id"].astype(str) + "01",
                    "ad_id": df["creative_id"],
                    "region": df["_geo"],
                    "spend": spend_str,
                    "impressions": df["impressions"].astype(str),
                    "clicks": df["clicks"].astype(str),
                    "_purchases": df["conversions"].astype(str),
                    "_purchase_value": value_str,
                    "_day": df["_day"],
                }
            )
            spend_col, negate = "spend", lambda v: "-" + v
        else:
            out = pd.DataFrame(
                {
                    "date": day_iso[df["_day"]],
                    "channel": df["_channel"],
                    "geo": df["_geo"],
                    "vendor": np.where(
                        df["_channel"] == "tv", "Harbor Media Group", "Sendwell ESP"
                    ),
                    "campaign_id": df["campaign_id"],
                    "spend": [f"{c / 100.0:.2f}" for c in df["_cents"]],
                    "currency": "USD",
                    "_day": df["_day"],
                }
            )
            reported = df["_cents"].to_numpy() / 100.0
            spend_col, negate = "spend", lambda v: "-" + v

        # The truth is what the files say, converted as the warehouse converts it.
        for ch, v in pd.Series(reported).groupby(df["_channel"].to_numpy()).sum().items():
            spend_truth[ch] += float(v)
        if reported_by_geo is not None:
            units = pd.MultiIndex.from_arrays([df["_channel"].to_numpy(), df["_geo"].to_numpy()])
            for unit, v in pd.Series(reported, index=units).groupby(level=[0, 1]).sum().items():
                reported_by_geo[unit] = reported_by_geo.get(unit, 0.0) + float(v)
        out, counts[key] = _inject_spend_dirt(
            out, spend_col, rng, dirt.negative_spend_rows, dirt.missing_spend_rows, negate
        )
        if platform == "meta":
            folder = landing / "meta_ads"
            folder.mkdir(parents=True, exist_ok=True)
            months = _month_keys(out["_day"].to_numpy(), days, tag)
            for month in sorted(set(months)):
                items = []
                for rec in out[months == month].drop(columns="_day").to_dict("records"):
                    purchases, value = rec.pop("_purchases"), rec.pop("_purchase_value")
                    if rec["spend"] is None:
                        del rec["spend"]  # Meta omits fields it has no value for
                    if purchases != "0":
                        rec["actions"] = [{"action_type": "purchase", "value": purchases}]
                        rec["action_values"] = [{"action_type": "purchase", "value": value}]
                    items.append(rec)
                doc = {"data": items, "paging": {"cursors": {"before": "MAZDZD", "after": "MjQZD"}}}
                (folder / f"insights_{month}.json").write_text(json.dumps(doc))
                written.append(folder / f"insights_{month}.json")
        else:
            folder, stem = (
                (landing / "google_ads", "ad_performance")
                if platform == "google_ads"
                else (landing / "offline_media", "spend")
            )
            written += _write_monthly_csv(
                out.drop(columns="_day"), out["_day"].to_numpy(), days, folder, stem, tag
            )
    return spend_truth, counts["google_ads"], counts["meta_ads"], counts["offline_media"]
