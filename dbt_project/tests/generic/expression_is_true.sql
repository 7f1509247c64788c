{#
    Rows where a boolean SQL expression is not true fail the test. With a column_name the
    expression is appended to it (`column_name: spend_usd`, `expression: ">= 0"`); use the
    test's `where` config to restrict the rows checked. Null results count as failures, so
    write `x is null or ...` where nulls are allowed.
#}
{% test expression_is_true(model, expression, column_name=none) %}

select *
from {{ model }}
{% if column_name is none %}
where not coalesce(({{ expression }}), false)
{% else %}
where not coalesce(({{ column_name }} {{ expression }}), false)
{% endif %}

{% endtest %}
