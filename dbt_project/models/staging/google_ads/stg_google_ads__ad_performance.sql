with

source as (

    select * from {{ source('google_ads', 'google_ads_ad_performance') }}

),

fx_rates as (

    {{ reporting_fx_rates() }}

),

renamed as (

    select

        ---------- grain
        source.segments_date as date_day,
        'google_ads' as platform,
        source.customer_id as account_id,
        source.campaign_id,
        source.ad_group_id,
        source.ad_group_ad_ad_id as creative_id,
        source.segments_geo_target_region as geo,

        ---------- money
        upper(source.customer_currency_code) as currency,
        cast(source.metrics_cost_micros / 1e6 as decimal(18, 6)) as spend,
        {{ to_reporting_currency('source.metrics_cost_micros / 1e6', 'upper(source.customer_currency_code)') }} as spend_usd,

        ---------- delivery
        source.metrics_impressions as impressions,
        source.metrics_clicks as clicks,
        source.metrics_conversions as conversions,
        source.metrics_conversions_value as conversion_value,
        {{ to_reporting_currency('source.metrics_conversions_value', 'upper(source.customer_currency_code)') }} as conversion_value_usd,

        ---------- labels
        source.campaign_name

    from source
    asof left join fx_rates
        on upper(source.customer_currency_code) = fx_rates.currency
        and source.segments_date >= fx_rates.date_day

)

select * from renamed
