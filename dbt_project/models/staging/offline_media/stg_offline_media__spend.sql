with

source as (

    select * from {{ source('offline_media', 'offline_media_spend') }}

),

fx_rates as (

    {{ reporting_fx_rates() }}

),

renamed as (

    select

        ---------- grain
        source.date as date_day,
        'offline' as platform,
        source.campaign_id,
        source.geo,
        lower(source.channel) as channel,

        ---------- money
        upper(source.currency) as currency,
        cast(source.spend as decimal(18, 6)) as spend,
        {{ to_reporting_currency('source.spend', 'upper(source.currency)') }} as spend_usd,

        ---------- labels
        source.vendor

    from source
    asof left join fx_rates
        on upper(source.currency) = fx_rates.currency
        and source.date >= fx_rates.date_day

)

select * from renamed
