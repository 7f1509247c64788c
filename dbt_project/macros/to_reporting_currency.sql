{#
    Money to the reporting currency, written the same way in every model that converts:

        fx_rates as (

            {{ reporting_fx_rates() }}

        ),
        ...
        {{ to_reporting_currency('<amount>', '<currency>') }} as <amount>_usd
        ...
        from <table>
        asof left join fx_rates
            on <currency> = fx_rates.currency
            and <date> >= fx_rates.date_day

    The ASOF join takes the rate of the row's own day, or the latest earlier one when a day
    is missing. Staging models read the rates straight from the fx source (the same columns
    as stg_fx__rates) so that they depend on raw tables only; in particular the partitioned
    stg_tracking__events does not wait on another dbt model.

    Rates are quoted as USD per unit, so the reporting currency has to be USD; amounts already
    in it are kept as they are even when no rate row exists.
#}

{% macro reporting_fx_rates() -%}
    select
        date as date_day,
        upper(currency) as currency,
        usd_per_unit
    from {{ source('fx', 'fx_rates') }}
{%- endmacro %}


{% macro to_reporting_currency(amount, currency, usd_per_unit='fx_rates.usd_per_unit') -%}
    {%- if var('reporting_currency') != 'USD' -%}
        {{ exceptions.raise_compiler_error("fx_rates are quoted in USD; reporting_currency must be USD, got " ~ var('reporting_currency')) }}
    {%- endif -%}
    cast(
        case
            when {{ currency }} = '{{ var("reporting_currency") }}' then {{ amount }}
            else {{ amount }} * {{ usd_per_unit }}
        end
        as double
    )
{%- endmacro %}
