{#
    IAB TCF v2.2 consent strings, read in SQL with the same bit offsets as the Python
    reference (models/privacy/consent.py). Only the core segment (the text before the first
    '.') is decoded; it is base64url without padding, most significant bit first.

    Anything that is not a decodable TCF v2 core segment (null, garbage, too short, another
    version) means "no consent": the macros return false/null, never an error.
#}

{% macro tcf_core_bits(consent_col) -%}
    from_base64(
        rpad(
            replace(replace(split_part({{ consent_col }}, '.', 1), '-', '+'), '_', '/'),
            (ceil(length(split_part({{ consent_col }}, '.', 1)) / 4) * 4)::int,
            '='
        )
    )::bit
{%- endmacro %}


{# Version: the first 6 bits of the core segment (2 for TCF v2.x); null when undecodable. #}
{% macro decode_tcf_version(consent_col) -%}
    try(substring(({{ tcf_core_bits(consent_col) }})::varchar, 1, 6)::bit::integer)
{%- endmacro %}


{#
    Consent for one purpose: PurposesConsent starts at bit 152 (0-based), so purpose p is at
    bit 151 + p. The string must be version 2 and at least as long as the fields the Python
    decoder requires (213 bits), as in consent.decode().
#}
{% macro decode_tcf_purpose(consent_col, purpose_number) -%}
    {%- if purpose_number < 1 or purpose_number > 24 -%}
        {{ exceptions.raise_compiler_error("TCF purposes are numbered 1..24, got " ~ purpose_number) }}
    {%- endif -%}
    coalesce(
        try(
            {{ decode_tcf_version(consent_col) }} = 2
            and bit_length({{ tcf_core_bits(consent_col) }}) >= 213
            and get_bit({{ tcf_core_bits(consent_col) }}, {{ 151 + purpose_number }}) = 1
        ),
        false
    )
{%- endmacro %}
