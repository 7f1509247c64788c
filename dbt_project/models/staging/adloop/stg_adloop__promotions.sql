with

source as (

    select * from {{ source('adloop', 'promotions') }}

),

renamed as (

    select

        ---------- ids
        promo_id,

        ---------- text
        name as promo_name,

        ---------- numerics
        discount_pct,

        ---------- dates (inclusive)
        start_date,
        end_date

    from source

)

select * from renamed
