with

source as (

    select * from {{ source('adloop', 'experiments') }}

),

renamed as (

    select

        ---------- ids
        experiment_id,

        ---------- text
        lower(channel) as channel,
        design,
        status,
        hypothesis,

        ---------- geo lists
        list_filter(
            list_transform(string_split(treatment_geos, ';'), lambda g: trim(g)), lambda g: g <> ''
        ) as treatment_geos,
        list_filter(
            list_transform(string_split(coalesce(control_geos, ''), ';'), lambda g: trim(g)), lambda g: g <> ''
        ) as control_geos,

        ---------- dates
        start_date,
        end_date

    from source

)

select * from renamed
