{#-
    Every source of paid media in one conformed schema (fivetran ad_reporting style), at the
    grain each source reports: date_day x platform x account x campaign x ad group x creative
    x geo for Google Ads and Meta, invoice line (date_day x campaign x geo) for offline media.
    Channel comes from the campaign registry. Delivery metrics a source does not report
    (offline: impressions, clicks, conversions) or leaves null are 0.
-#}

with

google_ads as (

    select * from {{ ref('stg_google_ads__ad_performance') }}

),

meta_ads as (

    select * from {{ ref('stg_meta_ads__ad_insights') }}

),

offline_media as (

    select * from {{ ref('stg_offline_media__spend') }}

),

campaigns as (

    select * from {{ ref('stg_adloop__campaigns') }}

),

unioned as (

    {% for relation in ['google_ads', 'meta_ads'] %}
    select
        date_day,
        platform,
        account_id,
        campaign_id,
        ad_group_id,
        creative_id,
        cast(null as varchar) as reported_channel,
        geo,
        currency,
        spend,
        spend_usd,
        impressions,
        clicks,
        conversions,
        conversion_value,
        conversion_value_usd
    from {{ relation }}

    union all
    {% endfor %}

    select
        date_day,
        platform,
        cast(null as varchar) as account_id,
        campaign_id,
        cast(null as varchar) as ad_group_id,
        cast(null as varchar) as creative_id,
        channel as reported_channel,
        geo,
        currency,
        spend,
        spend_usd,
        cast(null as bigint) as impressions,
        cast(null as bigint) as clicks,
        cast(null as double) as conversions,
        cast(null as double) as conversion_value,
        cast(null as double) as conversion_value_usd
    from offline_media

),

final as (

    select
        unioned.date_day,
        unioned.platform,
        coalesce(unioned.account_id, campaigns.account_id) as account_id,
        unioned.campaign_id,
        unioned.ad_group_id,
        unioned.creative_id,
        coalesce(campaigns.channel, unioned.reported_channel) as channel,
        unioned.geo,
        unioned.currency,
        unioned.spend,
        unioned.spend_usd,
        coalesce(unioned.impressions, 0) as impressions,
        coalesce(unioned.clicks, 0) as clicks,
        coalesce(unioned.conversions, 0) as conversions,
        coalesce(unioned.conversion_value, 0) as conversion_value,
        coalesce(unioned.conversion_value_usd, 0) as conversion_value_usd

    from unioned
    left join campaigns
        on unioned.campaign_id = campaigns.campaign_id

)

select * from final
