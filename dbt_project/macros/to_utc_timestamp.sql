{#
    ISO 8601 text with a UTC offset ('2025-01-06T14:03:22-05:00') to a naive TIMESTAMP in UTC,
    the reporting time zone (see DECISIONLOG.md).
#}
{% macro to_utc_timestamp(col) -%}
    (cast({{ col }} as timestamptz) at time zone 'UTC')
{%- endmacro %}
