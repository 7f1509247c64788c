with

source as (

    select * from {{ source('adloop', 'campaigns') }}

),

renamed as (

    select

        ---------- ids
        campaign_id,
        account_id,

        ---------- text
        platform,
        lower(channel) as channel,
        campaign_name,
        objective,

        ---------- dates
        started_on

    from source

)

select * from renamed
