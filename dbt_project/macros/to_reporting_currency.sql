{#
    Money to the reporting currency. The rate comes from an ASOF join to stg_fx__rates on the
    row's own day (the latest rate on or before that day), written the same way in every model
    that converts:

        asof left join fx_rates
            on <table>.currency = fx_rates.currency
            and <table>.<date> >= fx_rates.date_day

    Rates are quoted as USD per unit, so the reporting currency has to be USD; amounts already
    in it are kept as they are even when no rate row exists.
#}
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
