"""Raw contracts: the shape every landing source must have to enter the `raw` schema.

A contract names the raw table, its typed columns, which of them are required and any
extra rule a row must satisfy. Rows that break a contract go to `quarantine.rejected_rows`
with the original text and the reason; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Lineage columns every raw table carries, after the source's own columns.
LINEAGE_COLUMNS: dict[str, str] = {
    "_source_file": "VARCHAR",
    "_line_number": "BIGINT",
    "_loaded_at": "TIMESTAMP",
}


@dataclass(frozen=True)
class Rule:
    """A row-level rule: a DuckDB boolean expression over the typed columns, and its reason."""

    sql: str
    reason: str


@dataclass(frozen=True)
class Contract:
    source: str  # stable name of the landing source, e.g. "google_ads"
    table: str  # table in the raw schema
    columns: dict[str, str]  # column -> DuckDB type, in source order
    required: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    extra_lineage: dict[str, str] = field(default_factory=dict)

    @property
    def qualified_table(self) -> str:
        return f"raw.{self.table}"

    def all_columns(self) -> dict[str, str]:
        return {**self.columns, **self.extra_lineage, **LINEAGE_COLUMNS}

    def ddl(self) -> str:
        cols = ",\n  ".join(f"{name} {typ}" for name, typ in self.all_columns().items())
        return f"create table if not exists {self.qualified_table} (\n  {cols}\n)"


TRACKING_EVENTS = Contract(
    source="tracking_events",
    table="tracking_events",
    columns={
        "event_id": "VARCHAR",
        "event_type": "VARCHAR",
        "event_ts": "VARCHAR",  # ISO 8601 with the tracker's UTC offset; staging normalises
        "anonymous_id": "VARCHAR",
        "user_id": "VARCHAR",
        "session_id": "VARCHAR",
        "platform": "VARCHAR",
        "page_url": "VARCHAR",
        "utm_source": "VARCHAR",
        "utm_medium": "VARCHAR",
        "utm_campaign": "VARCHAR",
        "click_id": "VARCHAR",
        "campaign_id": "VARCHAR",
        "creative_id": "VARCHAR",
        "geo": "VARCHAR",
        "device": "VARCHAR",
        "revenue": "DOUBLE",
        "currency": "VARCHAR",
        "order_id": "VARCHAR",
        "consent_string": "VARCHAR",
        "email": "VARCHAR",
        "ip": "VARCHAR",
        "extra_fields": "JSON",  # fields the contract does not know, kept rather than lost
    },
    required=("event_id", "event_type", "event_ts", "anonymous_id", "session_id", "geo"),
    rules=(
        Rule(
            "try_cast(event_ts as timestamptz) is not null", "event_ts is not an ISO 8601 timestamp"
        ),
        Rule("revenue is null or revenue >= 0", "revenue is negative"),
    ),
    extra_lineage={"_received_date": "DATE"},
)

GOOGLE_ADS = Contract(
    source="google_ads",
    table="google_ads_ad_performance",
    columns={
        "segments_date": "DATE",
        "customer_id": "VARCHAR",
        "customer_currency_code": "VARCHAR",
        "campaign_id": "VARCHAR",
        "campaign_name": "VARCHAR",
        "ad_group_id": "VARCHAR",
        "ad_group_ad_ad_id": "VARCHAR",
        "segments_geo_target_region": "VARCHAR",
        "metrics_cost_micros": "BIGINT",
        "metrics_impressions": "BIGINT",
        "metrics_clicks": "BIGINT",
        "metrics_conversions": "DOUBLE",
        "metrics_conversions_value": "DOUBLE",
    },
    required=(
        "segments_date",
        "customer_id",
        "customer_currency_code",
        "campaign_id",
        "ad_group_ad_ad_id",
        "segments_geo_target_region",
        "metrics_cost_micros",
    ),
    rules=(
        Rule("metrics_cost_micros >= 0", "negative spend"),
        Rule(
            "coalesce(metrics_clicks, 0) <= coalesce(metrics_impressions, 0)",
            "clicks exceed impressions",
        ),
    ),
)

META_ADS = Contract(
    source="meta_ads",
    table="meta_ads_insights",
    columns={
        "date_start": "DATE",
        "date_stop": "DATE",
        "account_id": "VARCHAR",
        "account_currency": "VARCHAR",
        "campaign_id": "VARCHAR",
        "campaign_name": "VARCHAR",
        "adset_id": "VARCHAR",
        "ad_id": "VARCHAR",
        "region": "VARCHAR",
        "spend": "VARCHAR",  # Meta sends money as strings in account currency
        "impressions": "VARCHAR",
        "clicks": "VARCHAR",
        "actions_purchase": "VARCHAR",
        "action_values_purchase": "VARCHAR",
    },
    required=(
        "date_start",
        "account_id",
        "account_currency",
        "campaign_id",
        "ad_id",
        "region",
        "spend",
    ),
    rules=(
        Rule("try_cast(spend as decimal(18, 2)) is not null", "spend is not a number"),
        Rule("try_cast(spend as decimal(18, 2)) >= 0", "negative spend"),
    ),
)

OFFLINE_MEDIA = Contract(
    source="offline_media",
    table="offline_media_spend",
    columns={
        "date": "DATE",
        "channel": "VARCHAR",
        "geo": "VARCHAR",
        "vendor": "VARCHAR",
        "campaign_id": "VARCHAR",
        "spend": "DOUBLE",
        "currency": "VARCHAR",
    },
    required=("date", "channel", "geo", "campaign_id", "spend", "currency"),
    rules=(Rule("spend >= 0", "negative spend"),),
)

CRM_ORDERS = Contract(
    source="crm_orders",
    table="crm_orders",
    columns={
        "order_id": "VARCHAR",
        "customer_id": "VARCHAR",
        "email": "VARCHAR",
        "ordered_at": "VARCHAR",
        "geo": "VARCHAR",
        "currency": "VARCHAR",
        "order_total": "DOUBLE",
        "status": "VARCHAR",
    },
    required=("order_id", "ordered_at", "geo", "currency", "order_total", "status"),
    rules=(
        Rule(
            "try_cast(ordered_at as timestamptz) is not null",
            "ordered_at is not an ISO 8601 timestamp",
        ),
        Rule("order_total >= 0", "negative order total"),
    ),
)

CREATIVES = Contract(
    source="creatives",
    table="creatives",
    columns={
        "creative_id": "VARCHAR",
        "campaign_id": "VARCHAR",
        "channel": "VARCHAR",
        "headline": "VARCHAR",
        "body": "VARCHAR",
        "launched_on": "DATE",
    },
    required=("creative_id", "campaign_id", "channel", "headline"),
)

CAMPAIGNS = Contract(
    source="campaigns",
    table="campaigns",
    columns={
        "campaign_id": "VARCHAR",
        "platform": "VARCHAR",
        "account_id": "VARCHAR",
        "channel": "VARCHAR",
        "campaign_name": "VARCHAR",
        "objective": "VARCHAR",
        "started_on": "DATE",
    },
    required=("campaign_id", "platform", "channel"),
)

EXPERIMENTS = Contract(
    source="experiments",
    table="experiments",
    columns={
        "experiment_id": "VARCHAR",
        "channel": "VARCHAR",
        "design": "VARCHAR",
        "treatment_geos": "VARCHAR",  # semicolon-separated geo codes
        "control_geos": "VARCHAR",
        "start_date": "DATE",
        "end_date": "DATE",
        "status": "VARCHAR",
        "hypothesis": "VARCHAR",
    },
    required=("experiment_id", "channel", "design", "treatment_geos", "start_date", "end_date"),
    rules=(Rule("end_date >= start_date", "experiment ends before it starts"),),
)

FX_RATES = Contract(
    source="fx_rates",
    table="fx_rates",
    columns={"date": "DATE", "currency": "VARCHAR", "usd_per_unit": "DOUBLE"},
    required=("date", "currency", "usd_per_unit"),
    rules=(Rule("usd_per_unit > 0", "non-positive exchange rate"),),
)

PROMOTIONS = Contract(
    source="promotions",
    table="promotions",
    columns={
        "promo_id": "VARCHAR",
        "name": "VARCHAR",
        "start_date": "DATE",
        "end_date": "DATE",
        "discount_pct": "DOUBLE",
    },
    required=("promo_id", "start_date", "end_date"),
    rules=(Rule("end_date >= start_date", "promotion ends before it starts"),),
)

CREATIVE_SERVING = Contract(
    source="creative_serving",
    table="creative_serving",
    columns={
        "impression_id": "VARCHAR",
        "served_on": "DATE",
        "campaign_id": "VARCHAR",
        "creative_id": "VARCHAR",
        "channel": "VARCHAR",
        "geo": "VARCHAR",
        "device": "VARCHAR",
        "propensity": "DOUBLE",  # the logging policy's probability of the served creative
        "clicked": "INTEGER",
        "logging_policy": "VARCHAR",
    },
    required=(
        "impression_id",
        "served_on",
        "campaign_id",
        "creative_id",
        "device",
        "propensity",
        "clicked",
        "logging_policy",
    ),
    rules=(
        # Off-policy estimates divide by the propensity: a row without a usable one is unusable.
        Rule("propensity > 0 and propensity <= 1", "propensity outside (0, 1]"),
        Rule("clicked in (0, 1)", "clicked is not 0 or 1"),
    ),
)

ALL_CONTRACTS: tuple[Contract, ...] = (
    TRACKING_EVENTS,
    GOOGLE_ADS,
    META_ADS,
    OFFLINE_MEDIA,
    CRM_ORDERS,
    CREATIVES,
    CAMPAIGNS,
    EXPERIMENTS,
    FX_RATES,
    PROMOTIONS,
    CREATIVE_SERVING,
)
CONTRACTS_BY_SOURCE: dict[str, Contract] = {c.source: c for c in ALL_CONTRACTS}
