{#- Paid media by channel and geo per day, all platforms, in USD. Only rows with spend. -#}

with

ad_spend as (

    select * from {{ ref('int_ad_spend__conformed') }}

),

final as (

    select
        date_day,
        channel,
        geo,
        sum(spend_usd) as spend_usd,
        cast(sum(impressions) as bigint) as impressions,
        cast(sum(clicks) as bigint) as clicks,
        sum(conversions) as platform_conversions,
        sum(conversion_value_usd) as platform_conversion_value_usd

    from ad_spend
    group by date_day, channel, geo

)

select * from final
