{#
    Keyed hash of a PII value (email, IP): HMAC-SHA256(key, lower(trim(value))) as hex; null
    stays null. The key is $ADLOOP_PII_HASH_KEY; the dbt-duckdb plugin
    connectors.warehouse.dbt_pii_plugin turns it into the RFC 2104 inner and outer pads and sets
    them as DuckDB session variables, so the key never appears in compiled SQL, target/ or logs.
    Hashing a value without a key fails loudly rather than producing unkeyed or null hashes.
#}
{% macro pii_hash(col) -%}
    case
        when {{ col }} is null then null
        when getvariable('adloop_pii_ipad') is null
            then error('PII hash key missing: set ADLOOP_PII_HASH_KEY')
        else sha256(
            getvariable('adloop_pii_opad')
            || unhex(sha256(getvariable('adloop_pii_ipad') || encode(lower(trim({{ col }})))))
        )
    end
{%- endmacro %}
