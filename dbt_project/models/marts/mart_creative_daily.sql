{#-
    Creative performance per day, for creatives the ad platforms report on (Google Ads and
    Meta; offline media has no creative-level delivery). Geos are summed. ctr = clicks /
    impressions and cvr = conversions / clicks, null when the denominator is 0.
-#}

with

ad_spend as (

    select * from {{ ref('int_ad_spend__conformed') }}
    where platform in ('google_ads', 'meta')

),

daily as (

    select
        date_day,
        creative_id,
        any_value(campaign_id) as campaign_id,
        any_value(channel) as channel,
        any_value(platform) as platform,
        sum(spend_usd) as spend_usd,
        cast(sum(impressions) as bigint) as impressions,
        cast(sum(clicks) as bigint) as clicks,
        sum(conversions) as conversions,
        sum(conversion_value_usd) as conversion_value_usd

    from ad_spend
    group by date_day, creative_id

),

final as (

    select
        *,
        clicks / nullif(impressions, 0) as ctr,
        conversions / nullif(clicks, 0) as cvr

    from daily

)

select * from final
