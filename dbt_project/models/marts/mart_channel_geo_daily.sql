{#-
    Paid media by channel and geo per day, all platforms, in USD, beside the ad clicks adloop's
    own tracker saw (consented events only). Rows where either side has activity.
-#}

with

ad_spend as (

    select * from {{ ref('int_ad_spend__conformed') }}

),

events as (

    select * from {{ ref('stg_tracking__events') }}

),

campaigns as (

    select * from {{ ref('stg_adloop__campaigns') }}

),

platform_daily as (

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

),

tracked_daily as (

    select
        events.event_date as date_day,
        campaigns.channel,
        events.geo,
        count(*) as tracked_ad_clicks

    from events
    inner join campaigns on events.campaign_id = campaigns.campaign_id
    where events.event_type = 'ad_click' and events.has_measurement_consent
    group by events.event_date, campaigns.channel, events.geo

),

final as (

    select
        coalesce(p.date_day, t.date_day) as date_day,
        coalesce(p.channel, t.channel) as channel,
        coalesce(p.geo, t.geo) as geo,
        coalesce(p.spend_usd, 0) as spend_usd,
        coalesce(p.impressions, 0) as impressions,
        coalesce(p.clicks, 0) as clicks,
        coalesce(p.platform_conversions, 0) as platform_conversions,
        coalesce(p.platform_conversion_value_usd, 0) as platform_conversion_value_usd,
        coalesce(t.tracked_ad_clicks, 0) as tracked_ad_clicks

    from platform_daily as p
    full outer join tracked_daily as t
        on p.date_day = t.date_day and p.channel = t.channel and p.geo = t.geo

)

select * from final
