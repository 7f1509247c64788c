{#-
    The marketing-mix-model panel: one row per ISO week (starting Monday) per geo, every
    geo x week present. Revenue and orders are completed CRM orders; one spend_<channel> and
    impressions_<channel> column per entry of var('channels'); promo_days counts the days of
    the week (0..7) inside any promotion. n_days_observed is how many days of the week lie
    inside the data range (the first and last weeks can be partial).
-#}

{%- set channels = var('channels') %}

with

spine as (

    select
        cast(date_trunc('week', date_day) as date) as week_start,
        geo,
        count(*) as n_days_observed

    from {{ ref('int_geo_day_spine') }}
    group by 1, 2

),

orders as (

    select
        cast(date_trunc('week', order_date) as date) as week_start,
        geo,
        count(*) as orders,
        sum(order_total_usd) as revenue_usd

    from {{ ref('stg_crm__orders') }}
    where is_completed
    group by 1, 2

),

media as (

    select
        cast(date_trunc('week', date_day) as date) as week_start,
        geo,
        {%- for channel in channels %}
        sum(case when channel = '{{ channel }}' then spend_usd else 0 end) as spend_{{ channel }},
        cast(sum(case when channel = '{{ channel }}' then impressions else 0 end) as bigint) as impressions_{{ channel }}
        {%- if not loop.last %},{% endif %}
        {%- endfor %}

    from {{ ref('int_ad_spend__conformed') }}
    group by 1, 2

),

week_days as (

    select
        week_start,
        cast(unnest(generate_series(week_start, week_start + 6, interval 1 day)) as date) as date_day

    from (select distinct week_start from spine) as weeks

),

promotions as (

    select * from {{ ref('stg_adloop__promotions') }}

),

promo_days as (

    select
        week_days.week_start,
        count(distinct week_days.date_day) filter (where promotions.promo_id is not null) as promo_days

    from week_days
    left join promotions
        on week_days.date_day between promotions.start_date and promotions.end_date
    group by week_days.week_start

),

final as (

    select
        spine.week_start,
        spine.geo,
        coalesce(orders.revenue_usd, 0) as revenue_usd,
        coalesce(orders.orders, 0) as orders,
        {%- for channel in channels %}
        coalesce(media.spend_{{ channel }}, 0) as spend_{{ channel }},
        {%- endfor %}
        {%- for channel in channels %}
        coalesce(media.impressions_{{ channel }}, 0) as impressions_{{ channel }},
        {%- endfor %}
        coalesce(promo_days.promo_days, 0) as promo_days,
        spine.n_days_observed

    from spine
    left join orders
        on spine.week_start = orders.week_start
        and spine.geo = orders.geo
    left join media
        on spine.week_start = media.week_start
        and spine.geo = media.geo
    left join promo_days
        on spine.week_start = promo_days.week_start

)

select * from final
