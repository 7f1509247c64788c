{{ config(materialized='table') }}

{#-
    Sessions built from events with measurement consent only (TCF purposes 1 and 7); events
    without it are never stitched into sessions. The landing campaign/creative/channel come
    from the session's first ad_click, if it has one.
-#}

with

events as (

    select * from {{ ref('stg_tracking__events') }}
    where has_measurement_consent

),

campaigns as (

    select * from {{ ref('stg_adloop__campaigns') }}

),

landing_clicks as (

    select
        session_id,
        campaign_id,
        creative_id,
        click_id

    from events
    where event_type = 'ad_click'
    qualify row_number() over (
        partition by session_id
        order by occurred_at, event_id
    ) = 1

),

sessions as (

    select
        session_id,

        -- A session belongs to the logged-in user if it ever logs in, else to its device id.
        coalesce(
            arg_min(user_id, occurred_at) filter (where user_id is not null),
            arg_min(anonymous_id, occurred_at)
        ) as user_key,
        arg_min(geo, occurred_at) as geo,
        arg_min(device, occurred_at) as device,
        arg_min(platform, occurred_at) as platform,

        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        count(*) as n_events,
        count(*) filter (where event_type = 'purchase') as n_purchases,
        coalesce(sum(revenue_usd) filter (where event_type = 'purchase'), 0) as revenue_usd

    from events
    group by session_id

),

final as (

    select
        sessions.session_id,
        sessions.user_key,
        sessions.geo,
        sessions.device,
        sessions.platform,
        sessions.started_at,
        sessions.ended_at,
        cast(sessions.started_at as date) as session_date,
        sessions.n_events,

        landing_clicks.click_id as landing_click_id,
        campaigns.channel as landing_channel,
        landing_clicks.campaign_id as landing_campaign_id,
        landing_clicks.creative_id as landing_creative_id,

        sessions.n_purchases > 0 as converted,
        sessions.n_purchases,
        sessions.revenue_usd

    from sessions
    left join landing_clicks
        on sessions.session_id = landing_clicks.session_id
    left join campaigns
        on landing_clicks.campaign_id = campaigns.campaign_id

)

select * from final
