"""Parameters of a simulated advertiser: everything the generator needs, with demo defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date

DEFAULT_CHANNELS: tuple[str, ...] = ("search", "social", "display", "video", "tv", "email")

# Which platform reports each channel's spend, and in which landing shape.
CHANNEL_PLATFORM: dict[str, str] = {
    "search": "google_ads",
    "display": "google_ads",
    "video": "google_ads",
    "social": "meta",
    "tv": "offline",
    "email": "offline",
}

GEO_CODES: tuple[str, ...] = (
    "US-CA", "US-TX", "US-NY", "US-FL", "US-IL", "US-PA", "US-OH", "US-GA", "US-NC", "US-MI",
    "US-WA", "US-AZ", "US-MA", "US-NJ", "US-VA", "US-TN", "US-IN", "US-MO", "US-MD", "US-CO",
)  # fmt: skip

# Fixed UTC offsets per geo (standard time); the tracker stamps local time with its offset.
GEO_UTC_OFFSET_HOURS: dict[str, int] = {
    "US-CA": -8, "US-WA": -8, "US-AZ": -7, "US-CO": -7, "US-TX": -6, "US-IL": -6,
    "US-MO": -6, "US-TN": -6,
}  # fmt: skip
DEFAULT_UTC_OFFSET_HOURS = -5


@dataclass(frozen=True)
class ChannelTruth:
    """True response parameters of one channel (the DGP the MMM assumes)."""

    weekly_spend: float  # national mean weekly spend, USD
    roas: float  # true average ROAS over the simulated period (contribution / spend)
    adstock_alpha: float  # geometric decay per week
    saturation_lambda: float  # logistic saturation steepness on spend in units of its mean
    flighting: str  # "always_on", "bursts" or "pulsed"


# A mid-size direct-to-consumer advertiser: about $23M revenue and $8M media a year, the scale
# at which MMMs are used; smaller advertisers' weekly order counts are too noisy to measure.
DEFAULT_CHANNEL_TRUTH: dict[str, ChannelTruth] = {
    "search": ChannelTruth(40_000, 2.2, 0.20, 1.6, "always_on"),
    "social": ChannelTruth(30_000, 1.5, 0.35, 1.2, "always_on"),
    "display": ChannelTruth(16_000, 0.6, 0.30, 2.0, "pulsed"),
    "video": ChannelTruth(20_000, 1.1, 0.50, 1.0, "bursts"),
    "tv": ChannelTruth(50_000, 0.8, 0.65, 0.8, "bursts"),
    "email": ChannelTruth(4_000, 3.5, 0.10, 2.5, "always_on"),
}


@dataclass(frozen=True)
class ExperimentPlan:
    """A geo holdout: the channel goes dark in the treatment geos for the window."""

    channel: str
    start_week: int
    weeks: int
    n_treatment_geos: int = 0  # 0: two geos in five (at least one), whatever the market's size

    def treated_count(self, geos: int) -> int:
        return self.n_treatment_geos or max(1, round(0.4 * geos))


@dataclass(frozen=True)
class DirtRates:
    """How much known dirt to inject, as fractions of the clean rows."""

    duplicate_events: float = 0.01
    late_events: float = 0.02
    malformed_lines: float = 0.002
    extra_field_events: float = 0.01
    negative_spend_rows: float = 0.001
    missing_spend_rows: float = 0.001
    foreign_currency_orders: float = 0.05


@dataclass(frozen=True)
class SimulationConfig:
    seed: int = 42
    start_date: date = date(2024, 1, 1)  # a Monday: weeks start on Mondays
    weeks: int = 104
    geos: int = 10
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    campaigns_per_channel: int = 2
    creatives_per_campaign: int = 3
    events: int = 200_000  # approximate number of clean tracking events
    base_weekly_revenue: float = 440_000.0  # national baseline revenue, USD
    average_order_value: float = 80.0
    trend_per_year: float = 0.06
    seasonality_amplitude: float = 0.15
    promo_effect: float = 0.12  # relative lift of baseline revenue on promotion days
    noise_sigma: float = 0.02  # multiplicative weekly noise on expected revenue per geo
    geo_spend_dispersion: float = 0.3  # log-sd of each geo's weekly share of a channel's spend
    channel_truth: dict[str, ChannelTruth] = field(
        default_factory=lambda: dict(DEFAULT_CHANNEL_TRUTH)
    )
    # A measurement programme of one geo holdout a quarter, each followed by a cool-down of
    # adstock lags before the next, all before the MMM's out-of-time holdout weeks.
    experiments: tuple[ExperimentPlan, ...] = (
        ExperimentPlan("search", start_week=20, weeks=8),
        ExperimentPlan("video", start_week=40, weeks=8),
        ExperimentPlan("social", start_week=60, weeks=8),
        ExperimentPlan("tv", start_week=78, weeks=8),
    )
    dirt: DirtRates = field(default_factory=DirtRates)
    meta_account_currency: str = "EUR"
    # Logged impressions of the digital campaigns' creative serving, with the logging policy's
    # propensities. At ~1% average CTR, 100k impressions give ~1,000 clicks: enough for
    # off-policy estimates of a creative policy's CTR to land within ~5% (one standard error).
    serving_log_impressions: int = 100_000
    # Share of digital creatives that wear out: their click rate falls by 30-60% over the
    # history with cumulative impressions (truth.json says which, and by how much).
    fatigued_creative_share: float = 0.25

    def __post_init__(self) -> None:
        if self.start_date.weekday() != 0:
            raise ValueError(f"start_date must be a Monday, got {self.start_date:%A %Y-%m-%d}")
        if not 1 <= self.geos <= len(GEO_CODES):
            raise ValueError(f"geos must be between 1 and {len(GEO_CODES)}, got {self.geos}")
        if self.weeks < 2:
            raise ValueError("weeks must be at least 2")
        if not 0 <= self.fatigued_creative_share <= 1:
            raise ValueError(
                f"fatigued_creative_share must be in [0, 1], got {self.fatigued_creative_share}"
            )
        if self.serving_log_impressions < 0:
            raise ValueError(
                f"serving_log_impressions must be >= 0, got {self.serving_log_impressions}"
            )
        unknown = [c for c in self.channels if c not in CHANNEL_PLATFORM]
        if unknown:
            raise ValueError(f"unknown channels {unknown}; known: {sorted(CHANNEL_PLATFORM)}")
        missing = [c for c in self.channels if c not in self.channel_truth]
        if missing:
            raise ValueError(f"no true parameters for channels {missing}")
        for exp in self.active_experiments():
            if exp.treated_count(self.geos) >= self.geos:
                raise ValueError(f"experiment on {exp.channel} needs more geos than {self.geos}")

    @property
    def geo_codes(self) -> tuple[str, ...]:
        return GEO_CODES[: self.geos]

    @property
    def days(self) -> int:
        return self.weeks * 7

    def active_experiments(self) -> tuple[ExperimentPlan, ...]:
        return tuple(
            e
            for e in self.experiments
            if e.channel in self.channels and e.start_week + e.weeks <= self.weeks
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["start_date"] = self.start_date.isoformat()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SimulationConfig:
        """The inverse of `to_dict` (also of its JSON round trip, e.g. truth.json's config)."""
        d = dict(d)
        d["start_date"] = date.fromisoformat(str(d["start_date"]))
        d["channels"] = tuple(d["channels"])
        d["channel_truth"] = {ch: ChannelTruth(**t) for ch, t in d["channel_truth"].items()}
        d["experiments"] = tuple(ExperimentPlan(**e) for e in d["experiments"])
        d["dirt"] = DirtRates(**d["dirt"])
        return cls(**d)
