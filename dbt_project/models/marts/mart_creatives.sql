{#-
    The creative dimension: each creative's copy with its campaign and its delivery over the
    whole history and the last 28 days of data. The creative loop reads it for exemplars and
    embeddings; BI tools read it to compare copy.
-#}

with

creatives as (

    select * from {{ ref('stg_adloop__creatives') }}

),

campaigns as (

    select * from {{ ref('stg_adloop__campaigns') }}

),

daily as (

    select * from {{ ref('mart_creative_daily') }}

),

last_day as (

    select max(date_day) as last_day from daily

),

delivery as (

    select
        daily.creative_id,
        sum(daily.impressions) as impressions,
        sum(daily.clicks) as clicks,
        sum(daily.conversions) as conversions,
        sum(daily.spend_usd) as spend_usd,
        sum(daily.impressions) filter (
            where daily.date_day > last_day.last_day - interval 28 day
        ) as impressions_28d,
        sum(daily.clicks) filter (
            where daily.date_day > last_day.last_day - interval 28 day
        ) as clicks_28d

    from daily
    cross join last_day
    group by daily.creative_id

),

final as (

    select
        creatives.creative_id,
        creatives.campaign_id,
        campaigns.platform,
        creatives.channel,
        creatives.headline,
        creatives.body,
        creatives.launched_on,
        coalesce(delivery.impressions, 0) as impressions,
        coalesce(delivery.clicks, 0) as clicks,
        coalesce(delivery.conversions, 0) as conversions,
        coalesce(delivery.spend_usd, 0) as spend_usd,
        delivery.clicks / nullif(delivery.impressions, 0) as ctr,
        coalesce(delivery.impressions_28d, 0) as impressions_28d,
        coalesce(delivery.clicks_28d, 0) as clicks_28d,
        delivery.clicks_28d / nullif(delivery.impressions_28d, 0) as ctr_28d

    from creatives
    left join campaigns
        on creatives.campaign_id = campaigns.campaign_id
    left join delivery
        on creatives.creative_id = delivery.creative_id

)

select * from final
