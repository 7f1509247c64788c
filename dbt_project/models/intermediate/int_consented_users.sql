{{ config(materialized='table') }}

{#-
    Users adloop may measure: one row per user_key whose most recent event carries
    measurement consent (TCF purposes 1 and 7). Everything about the user is computed from
    consented events only; a user who withdrew consent drops out entirely.
-#}

with

events as (

    select
        *,
        coalesce(user_id, anonymous_id) as user_key
    from {{ ref('stg_tracking__events') }}

),

latest_event as (

    select * from events
    qualify row_number() over (
        partition by user_key
        order by occurred_at desc, received_date desc, event_id desc
    ) = 1

),

consented_events as (

    select * from events
    where has_measurement_consent

),

activity as (

    select
        user_key,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at,
        count(*) as n_events,
        count(distinct session_id) as n_sessions

    from consented_events
    group by user_key

),

final as (

    select
        latest_event.user_key,
        latest_event.user_id,
        latest_event.anonymous_id,
        latest_event.geo,

        latest_event.occurred_at as consent_observed_at,
        latest_event.consent_tcf_version,
        latest_event.consent_store_access,
        latest_event.consent_personalised_ads,
        latest_event.consent_measurement,
        latest_event.consent_market_research,
        latest_event.has_measurement_consent,

        activity.first_seen_at,
        activity.last_seen_at,
        activity.n_events,
        activity.n_sessions

    from latest_event
    inner join activity
        on latest_event.user_key = activity.user_key
    where latest_event.has_measurement_consent

)

select * from final
