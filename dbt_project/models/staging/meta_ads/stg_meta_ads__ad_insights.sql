with

source as (

    select * from {{ source('meta_ads', 'meta_ads_insights') }}

),

fx_rates as (

    {{ reporting_fx_rates() }}

),

renamed as (

    select

        ---------- grain (daily insights: date_stop = date_start)
        source.date_start as date_day,
        'meta' as platform,
        source.account_id,
        source.campaign_id,
        source.adset_id as ad_group_id,
        source.ad_id as creative_id,
        source.region as geo,

        ---------- money (Meta sends numbers as text)
        upper(source.account_currency) as currency,
        cast(source.spend as decimal(18, 6)) as spend,
        {{ to_reporting_currency('cast(source.spend as decimal(18, 6))', 'upper(source.account_currency)') }} as spend_usd,

        ---------- delivery
        cast(source.impressions as bigint) as impressions,
        cast(source.clicks as bigint) as clicks,
        cast(source.actions_purchase as double) as conversions,
        cast(source.action_values_purchase as double) as conversion_value,
        {{ to_reporting_currency('cast(source.action_values_purchase as double)', 'upper(source.account_currency)') }} as conversion_value_usd,

        ---------- labels
        source.campaign_name

    from source
    asof left join fx_rates
        on upper(source.account_currency) = fx_rates.currency
        and source.date_start >= fx_rates.date_day

)

select * from renamed
