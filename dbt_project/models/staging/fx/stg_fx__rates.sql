with

source as (

    select * from {{ source('fx', 'fx_rates') }}

),

renamed as (

    select

        ---------- keys
        date as date_day,
        upper(currency) as currency,

        ---------- numerics
        usd_per_unit

    from source

)

select * from renamed
