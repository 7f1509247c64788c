{#-
    The creative-serving log at impression grain, with the campaign's platform and name and
    the creative's headline: the input of off-policy evaluation of creative policies (IPS,
    SNIPS, doubly robust), which needs every row's context, action, reward and propensity.
    Only creatives registered under the row's campaign are kept (inner join on both ids).
-#}

with

serving as (

    select * from {{ ref('stg_adloop__creative_serving') }}

),

campaigns as (

    select * from {{ ref('mart_campaigns') }}

),

creatives as (

    select * from {{ ref('stg_adloop__creatives') }}

),

final as (

    select
        serving.impression_id,
        serving.served_on,
        campaigns.platform,
        serving.campaign_id,
        campaigns.campaign_name,
        serving.creative_id,
        creatives.headline,
        serving.channel,
        serving.geo,
        serving.device,
        serving.logging_policy,
        serving.propensity,
        serving.clicked

    from serving
    inner join campaigns
        on serving.campaign_id = campaigns.campaign_id
    inner join creatives
        on serving.creative_id = creatives.creative_id
        and serving.campaign_id = creatives.campaign_id

)

select * from final
