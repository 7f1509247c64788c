{{ config(materialized='table') }}

{#-
    Every geo x day the geo marts report, so that a day without orders, sessions or spend is
    a row of zeros rather than a missing row. Days run from the first to the last day with
    any activity (orders, consented sessions, spend); geos are every geo seen in those plus
    every geo named in an experiment.
-#}

with

activity as (

    select date_day, geo from {{ ref('int_ad_spend__conformed') }}
    union
    select order_date as date_day, geo from {{ ref('stg_crm__orders') }}
    union
    select session_date as date_day, geo from {{ ref('int_sessions') }}

),

experiment_geos as (

    select unnest(list_concat(treatment_geos, control_geos)) as geo
    from {{ ref('stg_adloop__experiments') }}

),

geos as (

    select geo from activity where geo is not null
    union
    select geo from experiment_geos where geo is not null

),

bounds as (

    select
        min(date_day) as first_day,
        max(date_day) as last_day
    from activity

),

days as (

    select cast(unnest(generate_series(first_day, last_day, interval 1 day)) as date) as date_day
    from bounds

),

final as (

    select
        days.date_day,
        geos.geo

    from days
    cross join geos

)

select * from final
