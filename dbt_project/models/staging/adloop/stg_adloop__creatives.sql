with

source as (

    select * from {{ source('adloop', 'creatives') }}

),

renamed as (

    select

        ---------- ids
        creative_id,
        campaign_id,

        ---------- text
        lower(channel) as channel,
        headline,
        body,

        ---------- dates
        launched_on

    from source

)

select * from renamed
