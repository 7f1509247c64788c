{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='received_date',
        tags=['partitioned_by_day'],
    )
}}

{#-
    Partitioned by arrival day. Dagster passes min_received_date/max_received_date for the
    partitions it runs; delete+insert on received_date replaces exactly those days. Without
    the vars the whole history is (re)processed.
-#}
{%- set min_received_date = var('min_received_date', none) -%}
{%- set max_received_date = var('max_received_date', none) -%}

with

source as (

    select * from {{ source('tracking', 'tracking_events') }}
    where true
    {%- if min_received_date is not none %}
        and _received_date >= cast('{{ min_received_date }}' as date)
    {%- endif %}
    {%- if max_received_date is not none %}
        and _received_date <= cast('{{ max_received_date }}' as date)
    {%- endif %}

),

deduplicated as (

    -- The SDK re-sends events: keep the first arrival of each event_id.
    select * from source
    qualify row_number() over (
        partition by event_id
        order by _received_date, _source_file, _line_number
    ) = 1

),

{% if is_incremental() %}

already_loaded as (

    -- Events kept under an arrival day outside this run's window: the copy that arrived
    -- in the window is a duplicate. (Days inside the window are replaced wholesale.)
    select distinct event_id
    from {{ this }}
    where received_date not in (select distinct _received_date from source)

),

new_events as (

    select deduplicated.*
    from deduplicated
    left join already_loaded
        on deduplicated.event_id = already_loaded.event_id
    where already_loaded.event_id is null

),

{% else %}

new_events as (

    select * from deduplicated

),

{% endif %}

fx_rates as (

    {{ reporting_fx_rates() }}

),

renamed as (

    select

        ---------- ids
        new_events.event_id,
        new_events.anonymous_id,
        new_events.user_id,
        new_events.session_id,
        new_events.order_id,
        new_events.click_id,
        new_events.campaign_id,
        new_events.creative_id,

        ---------- text
        new_events.event_type,
        new_events.platform,
        new_events.page_url,
        new_events.utm_source,
        new_events.utm_medium,
        new_events.utm_campaign,
        new_events.geo,
        new_events.device,

        ---------- timestamps (UTC)
        {{ to_utc_timestamp('new_events.event_ts') }} as occurred_at,
        cast({{ to_utc_timestamp('new_events.event_ts') }} as date) as event_date,
        new_events._received_date as received_date,

        ---------- money
        new_events.revenue,
        upper(new_events.currency) as currency,
        {{ to_reporting_currency('new_events.revenue', 'upper(new_events.currency)') }} as revenue_usd,

        ---------- consent (IAB TCF v2.2 purposes; undecodable = no consent)
        {{ decode_tcf_version('new_events.consent_string') }} as consent_tcf_version,
        {{ decode_tcf_purpose('new_events.consent_string', 1) }} as consent_store_access,
        (
            {{ decode_tcf_purpose('new_events.consent_string', 3) }}
            and {{ decode_tcf_purpose('new_events.consent_string', 4) }}
        ) as consent_personalised_ads,
        {{ decode_tcf_purpose('new_events.consent_string', 7) }} as consent_measurement,
        {{ decode_tcf_purpose('new_events.consent_string', 9) }} as consent_market_research,
        (
            {{ decode_tcf_purpose('new_events.consent_string', 1) }}
            and {{ decode_tcf_purpose('new_events.consent_string', 7) }}
        ) as has_measurement_consent,

        ---------- PII, keyed hashes only (plaintext stays in raw)
        {{ pii_hash('new_events.email') }} as email_hash,
        {{ pii_hash('new_events.ip') }} as ip_hash,

        ---------- lineage
        new_events._source_file as source_file,
        new_events._line_number as source_line_number

    from new_events
    asof left join fx_rates
        on upper(new_events.currency) = fx_rates.currency
        and cast({{ to_utc_timestamp('new_events.event_ts') }} as date) >= fx_rates.date_day

)

select * from renamed
