"""TCF v2.2 consent strings: the Python reference and the SQL used by the dbt macro."""

from __future__ import annotations

import base64
import random
import re
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from models.privacy import consent
from models.privacy.consent import ConsentStringError, decode, encode

CREATED = datetime(2024, 3, 4, 12, 30, 15, 300_000, tzinfo=UTC)  # a whole number of deciseconds
MACRO = Path(__file__).resolve().parents[2] / "dbt_project" / "macros" / "decode_tcf.sql"

# The expression the dbt macro compiles to, for a string column `s` and purpose `p`.
SQL_PURPOSE = (
    "get_bit(from_base64(rpad(replace(replace(s,'-','+'),'_','/'), "
    "(ceil(length(s)/4)*4)::int, '='))::bit, (151+p)::int)"
)
SQL_VERSION = (
    "substring(from_base64(rpad(replace(replace(s,'-','+'),'_','/'), "
    "(ceil(length(s)/4)*4)::int, '='))::bit::varchar, 1, 6)::bit::integer"
)
SQL_BIT_LENGTH = (
    "bit_length(from_base64(rpad(replace(replace(s,'-','+'),'_','/'), "
    "(ceil(length(s)/4)*4)::int, '='))::bit)"
)


def bits_to_tc_string(bits: str) -> str:
    """A string of '0'/'1' (MSB first) as unpadded base64url, padding the bits to whole bytes."""
    bits = bits + "0" * (-len(bits) % 8)
    raw = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def field(value: int, width: int) -> str:
    return format(value, f"0{width}b")


def hand_bits(
    purposes: set[int], *, version: int = 2, cmp_id: int = 0, cc: str = "AA", total_bits: int = 256
) -> str:
    """A core segment's bits, built from the TCF v2.2 field table rather than via consent.encode."""
    bits = (
        field(version, 6)
        + field(0, 36)  # Created
        + field(0, 36)  # LastUpdated
        + field(cmp_id, 12)  # CmpId starts at bit 78
        + "0" * (152 - 90)  # everything up to PurposesConsent
    )
    assert len(bits) == 152
    bits += "".join("1" if p in purposes else "0" for p in range(1, 25))  # PurposesConsent
    bits += "0" * 24  # PurposesLITransparency
    bits += "0"  # PurposeOneTreatment
    bits += "".join(field(ord(ch) - ord("A"), 6) for ch in cc)  # PublisherCC at bit 201
    bits += "0" * (total_bits - len(bits))
    return bits


def hand_built(purposes: set[int], **kwargs) -> str:
    return bits_to_tc_string(hand_bits(purposes, **kwargs))


@pytest.mark.parametrize(
    "purposes",
    [
        set(),
        {1},
        {24},
        {1, 7},
        {1, 3, 4, 7, 9},
        set(range(1, 25)),
        {2, 5, 11, 17, 23},
    ],
)
def test_round_trip_keeps_purposes(purposes):
    decoded = decode(encode(purposes, created=CREATED))
    assert decoded.purposes_consent == frozenset(purposes)
    assert decoded.purposes_legitimate_interest == frozenset()
    assert decoded.version == 2


def test_round_trip_keeps_header_fields():
    s = encode(
        {1, 7},
        created=CREATED,
        cmp_id=4095,
        vendor_list_version=321,
        policy_version=4,
        publisher_cc="DE",
        vendor_consents=(1, 755),
    )
    d = decode(s)
    assert d.created == CREATED
    assert d.cmp_id == 4095
    assert d.vendor_list_version == 321
    assert d.policy_version == 4
    assert d.publisher_cc == "DE"


def test_encoded_string_is_unpadded_base64url():
    s = encode(set(range(1, 25)), created=CREATED, vendor_consents=tuple(range(1, 300)))
    assert re.fullmatch(r"[A-Za-z0-9_-]+", s)


def test_allows_needs_every_purpose():
    d = decode(encode({1, 7}, created=CREATED))
    assert d.allows(1)
    assert d.allows(*consent.MEASUREMENT_PURPOSES)
    assert not d.allows(1, 3)
    assert not d.allows(consent.PURPOSE_PERSONALISED_ADS)
    assert d.allows()  # nothing asked, nothing refused


def test_denied_string_allows_nothing():
    d = decode(encode(set(), created=CREATED))
    assert not any(d.allows(p) for p in range(1, 25))


def test_purposes_start_at_bit_152_in_hand_built_string():
    d = decode(hand_built({2, 5, 24}, cmp_id=300, cc="FR"))
    assert d.purposes_consent == frozenset({2, 5, 24})
    assert d.cmp_id == 300
    assert d.publisher_cc == "FR"
    assert consent.PURPOSES_CONSENT_OFFSET == 152


def test_a_bit_just_before_the_purposes_is_not_purpose_one():
    # SpecialFeatureOptIns' last bit is 151; setting it must not read as purpose 1.
    bits = field(2, 6) + "0" * (151 - 6) + "1" + "0" * 104
    d = decode(bits_to_tc_string(bits))
    assert d.purposes_consent == frozenset()


def test_only_core_segment_is_decoded():
    core = encode({1, 3}, created=CREATED)
    assert decode(core + ".YAAAAAAAAAAA").purposes_consent == frozenset({1, 3})


def test_other_version_is_rejected():
    with pytest.raises(ConsentStringError, match="version 1"):
        decode(hand_built({1}, version=1))


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "CPXxRfAPXxRfAAfKABENB", "A" * 5, "not a consent string!", "é" * 60],
)
def test_garbage_and_short_strings_raise(garbage):
    with pytest.raises(ConsentStringError):
        decode(garbage)


def test_minimum_length_is_213_bits():
    # 213 bits are enough (PublisherCC ends at bit 213); 208 are not.
    bits = hand_bits({4}, total_bits=213)
    assert len(bits) == 213
    assert decode(bits_to_tc_string(bits)).purposes_consent == frozenset({4})
    short = bits_to_tc_string(bits[:208])
    with pytest.raises(ConsentStringError, match="too short"):
        decode(short)


def test_encode_rejects_values_that_do_not_fit():
    with pytest.raises(ValueError):
        encode({1}, created=CREATED, cmp_id=4096)


# --- the SQL the dbt macro uses ------------------------------------------------------------------


def test_sql_expression_agrees_with_python_for_random_purpose_sets():
    rng = random.Random(20240304)
    strings, expected = [], []
    for _ in range(60):
        purposes = {p for p in range(1, 25) if rng.random() < 0.4}
        vendors = tuple(sorted(rng.sample(range(1, 900), rng.randint(0, 5))))
        s = encode(purposes, created=CREATED, vendor_consents=vendors)
        strings.append(s)
        expected.append(decode(s).purposes_consent)
    conn = duckdb.connect()
    rows = conn.execute(
        f"""select i, list(p order by p) filter (where {SQL_PURPOSE} = 1)
            from (select unnest(?::varchar[]) as s, generate_subscripts(?::varchar[], 1) as i)
            cross join range(1, 25) t(p)
            group by i order by i""",
        [strings, strings],
    ).fetchall()
    got = [frozenset(r[1] or []) for r in rows]
    assert got == expected


def test_sql_reads_version_and_length_like_python():
    conn = duckdb.connect()
    for purposes in ({1}, set(range(1, 25))):
        s = encode(purposes, created=CREATED)
        version, nbits = conn.execute(
            f"select {SQL_VERSION}, {SQL_BIT_LENGTH} from (select ?::varchar s)", [s]
        ).fetchone()
        assert version == decode(s).version == 2
        assert nbits >= 213
    s1 = hand_built({1}, version=1)
    assert conn.execute(f"select {SQL_VERSION} from (select ?::varchar s)", [s1]).fetchone()[0] == 1


def test_sql_reads_hand_built_purposes_at_bit_151_plus_p():
    s = hand_built({3, 9, 20})
    conn = duckdb.connect()
    got = {
        p
        for p in range(1, 25)
        if conn.execute(
            f"select {SQL_PURPOSE} from (select ?::varchar s, ?::int p)", [s, p]
        ).fetchone()[0]
        == 1
    }
    assert got == {3, 9, 20}


def test_dbt_macro_uses_the_same_offsets_as_python():
    text = MACRO.read_text()
    # Purpose p sits at 0-based bit 151 + p, i.e. PurposesConsent starts at 152.
    assert re.search(r"get_bit\([^)]*\)[^,]*,\s*\{\{\s*151\s*\+\s*purpose_number\s*\}\}", text)
    assert consent.PURPOSES_CONSENT_OFFSET == 151 + 1
    # The minimum length matches the Python decoder's requirement.
    min_bits = consent.PURPOSES_LI_OFFSET + consent.N_PURPOSES + 13
    assert re.search(rf"bit_length\(.*\)\s*>=\s*{min_bits}\b", text)
    # Version is the first 6 bits; base64url is mapped to base64 and padded to a multiple of 4.
    assert re.search(r"substring\(.*,\s*1,\s*6\)", text)
    assert "'-', '+'" in text and "'_', '/'" in text
    assert re.search(r"ceil\(length\(.*\)\s*/\s*4\)\s*\*\s*4", text)
