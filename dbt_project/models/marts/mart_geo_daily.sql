{#-
    Outcomes and spend per geo per day, with a row for every geo x day (zeros, not gaps):
    the input for geo experiments. Orders and revenue are completed CRM orders (the system
    of record); sessions are consented sessions; spend is every channel.
-#}

with

spine as (

    select * from {{ ref('int_geo_day_spine') }}

),

orders as (

    select
        order_date as date_day,
        geo,
        count(*) as orders,
        sum(order_total_usd) as revenue_usd

    from {{ ref('stg_crm__orders') }}
    where is_completed
    group by order_date, geo

),

sessions as (

    select
        session_date as date_day,
        geo,
        count(*) as sessions

    from {{ ref('int_sessions') }}
    group by session_date, geo

),

spend as (

    select
        date_day,
        geo,
        sum(spend_usd) as spend_usd

    from {{ ref('int_ad_spend__conformed') }}
    group by date_day, geo

),

final as (

    select
        spine.date_day,
        spine.geo,
        coalesce(orders.orders, 0) as orders,
        coalesce(orders.revenue_usd, 0) as revenue_usd,
        coalesce(sessions.sessions, 0) as sessions,
        coalesce(spend.spend_usd, 0) as spend_usd

    from spine
    left join orders
        on spine.date_day = orders.date_day
        and spine.geo = orders.geo
    left join sessions
        on spine.date_day = sessions.date_day
        and spine.geo = sessions.geo
    left join spend
        on spine.date_day = spend.date_day
        and spine.geo = spend.geo

)

select * from final
