{#- The campaign dimension: the registry plus lifetime spend and creative counts. -#}

with

campaigns as (

    select * from {{ ref('stg_adloop__campaigns') }}

),

spend as (

    select
        campaign_id,
        min(date_day) filter (where spend_usd > 0) as first_spend_date,
        max(date_day) filter (where spend_usd > 0) as last_spend_date,
        sum(spend_usd) as total_spend_usd

    from {{ ref('int_ad_spend__conformed') }}
    group by campaign_id

),

creatives as (

    select
        campaign_id,
        count(distinct creative_id) as n_creatives

    from {{ ref('stg_adloop__creatives') }}
    group by campaign_id

),

final as (

    select
        campaigns.campaign_id,
        campaigns.platform,
        campaigns.account_id,
        campaigns.channel,
        campaigns.campaign_name,
        campaigns.objective,
        campaigns.started_on,
        spend.first_spend_date,
        spend.last_spend_date,
        coalesce(spend.total_spend_usd, 0) as total_spend_usd,
        coalesce(creatives.n_creatives, 0) as n_creatives

    from campaigns
    left join spend
        on campaigns.campaign_id = spend.campaign_id
    left join creatives
        on campaigns.campaign_id = creatives.campaign_id

)

select * from final
