with

source as (

    select * from {{ source('adloop', 'creative_serving') }}

),

renamed as (

    select

        ---------- ids
        impression_id,
        campaign_id,
        creative_id,

        ---------- context
        lower(channel) as channel,
        geo,
        lower(device) as device,

        ---------- logging policy
        logging_policy,
        cast(propensity as double) as propensity,

        ---------- outcome
        cast(clicked as integer) as clicked,

        ---------- dates
        served_on

    from source

)

select * from renamed
