{{ config(materialized='table') }}

{#-
    Multi-touch paths for attribution: one row per consented user (int_consented_users) with
    at least one ad click in the path window. The window is every consented click up to and
    including the moment of the user's first purchase if they converted, else all their
    consented clicks. Clicks whose campaign is not in the registry count as 'unknown'.
-#}

with

consented_users as (

    select user_key from {{ ref('int_consented_users') }}

),

campaigns as (

    select * from {{ ref('stg_adloop__campaigns') }}

),

events as (

    select
        events.*,
        coalesce(events.user_id, events.anonymous_id) as user_key
    from {{ ref('stg_tracking__events') }} as events
    where events.has_measurement_consent
        and events.event_type in ('ad_click', 'purchase')

),

user_events as (

    select events.*
    from events
    inner join consented_users
        on events.user_key = consented_users.user_key

),

first_purchases as (

    select
        user_key,
        occurred_at as first_conversion_at,
        order_id as first_order_id,
        revenue_usd

    from user_events
    where event_type = 'purchase'
    qualify row_number() over (partition by user_key order by occurred_at, event_id) = 1

),

clicks as (

    select
        user_events.user_key,
        user_events.event_id,
        user_events.occurred_at,
        coalesce(campaigns.channel, 'unknown') as channel

    from user_events
    left join campaigns
        on user_events.campaign_id = campaigns.campaign_id
    left join first_purchases
        on user_events.user_key = first_purchases.user_key
    where user_events.event_type = 'ad_click'
        and (
            first_purchases.first_conversion_at is null
            or user_events.occurred_at <= first_purchases.first_conversion_at
        )

),

paths as (

    select
        user_key,
        list(channel order by occurred_at, event_id) as channel_path,
        count(*) as n_touchpoints,
        min(occurred_at) as first_touch_at,
        max(occurred_at) as last_touch_at

    from clicks
    group by user_key

),

final as (

    select
        paths.user_key,
        paths.channel_path,
        array_to_string(paths.channel_path, ' > ') as path_string,
        paths.n_touchpoints,
        paths.first_touch_at,
        paths.last_touch_at,
        first_purchases.first_conversion_at is not null as converted,
        first_purchases.first_conversion_at,
        first_purchases.first_order_id,
        first_purchases.revenue_usd

    from paths
    left join first_purchases
        on paths.user_key = first_purchases.user_key

)

select * from final
