{#
    Custom schemas are used as-is (staging, intermediate, marts) rather than dbt's default
    `<target_schema>_<custom>`: Dagster, BI tools and the notebooks read fixed schema names.
    Models without a custom schema land in the target schema (main).
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
