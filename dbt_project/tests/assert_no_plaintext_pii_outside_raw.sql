-- Plaintext email and IP addresses live only in the raw schema: no relation dbt builds may
-- carry a column named like them (the hashed *_hash columns are fine). Runs after the two
-- models that read plaintext PII:
-- depends_on: {{ ref('stg_tracking__events') }}
-- depends_on: {{ ref('stg_crm__orders') }}
select
    table_schema,
    table_name,
    column_name
from information_schema.columns
where table_catalog = '{{ target.database }}'
    and table_schema in ('staging', 'intermediate', 'marts')
    and lower(column_name) in ('email', 'ip', 'ip_address', 'email_address')
