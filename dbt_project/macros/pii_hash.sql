{#
    Keyed hash of a PII value (email, IP): sha256(key || ':' || lower(trim(value))); null stays
    null. The key comes from DBT_ENV_SECRET_ADLOOP_PII_HASH_KEY through profiles.yml into the
    DuckDB session variable `adloop_pii_hash_key` (dbt does not allow secret env vars in model
    SQL, and this way the key never lands in compiled SQL). Hashing a value without a key fails
    loudly rather than producing unkeyed or null hashes.
#}
{% macro pii_hash(col) -%}
    case
        when {{ col }} is null then null
        when nullif(getvariable('adloop_pii_hash_key'), '') is null
            then error('PII hash key missing: set DBT_ENV_SECRET_ADLOOP_PII_HASH_KEY')
        else sha256(getvariable('adloop_pii_hash_key') || ':' || lower(trim({{ col }})))
    end
{%- endmacro %}
