-- A table, not a view: the PII hash key is only present while dbt runs, so hashing must
-- happen at build time rather than whenever someone reads the view.
{{ config(materialized='table') }}

with

source as (

    select * from {{ source('crm', 'crm_orders') }}

),

fx_rates as (

    {{ reporting_fx_rates() }}

),

renamed as (

    select

        ---------- ids
        source.order_id,
        source.customer_id,
        {{ pii_hash('source.email') }} as email_hash,

        ---------- timestamps (UTC)
        {{ to_utc_timestamp('source.ordered_at') }} as ordered_at,
        cast({{ to_utc_timestamp('source.ordered_at') }} as date) as order_date,

        ---------- text
        source.geo,
        lower(source.status) as status,
        lower(source.status) = 'completed' as is_completed,

        ---------- money
        upper(source.currency) as currency,
        source.order_total,
        {{ to_reporting_currency('source.order_total', 'upper(source.currency)') }} as order_total_usd

    from source
    asof left join fx_rates
        on upper(source.currency) = fx_rates.currency
        and cast({{ to_utc_timestamp('source.ordered_at') }} as date) >= fx_rates.date_day

)

select * from renamed
