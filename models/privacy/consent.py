"""IAB TCF v2.2 consent strings: encode (for the simulator) and decode (the reference for staging).

Only the core segment is handled; it carries the purposes adloop needs. The dbt macro
`decode_tcf_purpose` reads the same bit offsets, and the tests hold the two together.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime

# Bit offset of PurposesConsent in the core segment (0-based, most significant bit first):
# Version 6, Created 36, LastUpdated 36, CmpId 12, CmpVersion 12, ConsentScreen 6,
# ConsentLanguage 12, VendorListVersion 12, TcfPolicyVersion 6, IsServiceSpecific 1,
# UseNonStandardTexts 1, SpecialFeatureOptIns 12 = 152.
PURPOSES_CONSENT_OFFSET = 152
PURPOSES_LI_OFFSET = PURPOSES_CONSENT_OFFSET + 24
N_PURPOSES = 24

# Purposes adloop reads, by their TCF numbers.
PURPOSE_STORE_ACCESS = 1
PURPOSE_PERSONALISED_ADS_PROFILE = 3
PURPOSE_PERSONALISED_ADS = 4
PURPOSE_MEASUREMENT = 7
PURPOSE_MARKET_RESEARCH = 9
# User-level measurement (sessions, paths, user features) needs storage and measurement.
MEASUREMENT_PURPOSES = (PURPOSE_STORE_ACCESS, PURPOSE_MEASUREMENT)


class ConsentStringError(ValueError):
    """The string is not a decodable TCF v2 core segment."""


@dataclass(frozen=True)
class TcfConsent:
    version: int
    created: datetime
    cmp_id: int
    vendor_list_version: int
    policy_version: int
    purposes_consent: frozenset[int]
    purposes_legitimate_interest: frozenset[int]
    publisher_cc: str

    def allows(self, *purposes: int) -> bool:
        return all(p in self.purposes_consent for p in purposes)


class _Bits:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def put(self, value: int, width: int) -> None:
        if value < 0 or value >= 1 << width:
            raise ValueError(f"{value} does not fit in {width} bits")
        self.bits.extend((value >> (width - 1 - i)) & 1 for i in range(width))

    def put_letters(self, letters: str) -> None:
        for ch in letters.upper():
            self.put(ord(ch) - ord("A"), 6)

    def to_base64url(self) -> str:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        raw = bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def encode(
    purposes_consent: set[int] | frozenset[int],
    *,
    created: datetime,
    cmp_id: int = 300,
    cmp_version: int = 2,
    vendor_list_version: int = 150,
    policy_version: int = 5,
    language: str = "EN",
    publisher_cc: str = "US",
    vendor_consents: tuple[int, ...] = (),
) -> str:
    """Encode a TCF v2.2 core segment (bit-field vendor sections, no publisher restrictions)."""
    decis = int(created.timestamp() * 10)
    b = _Bits()
    b.put(2, 6)
    b.put(decis, 36)
    b.put(decis, 36)
    b.put(cmp_id, 12)
    b.put(cmp_version, 12)
    b.put(1, 6)
    b.put_letters(language)
    b.put(vendor_list_version, 12)
    b.put(policy_version, 6)
    b.put(1, 1)  # IsServiceSpecific
    b.put(0, 1)  # UseNonStandardTexts
    b.put(0, 12)  # SpecialFeatureOptIns
    for p in range(1, N_PURPOSES + 1):
        b.put(1 if p in purposes_consent else 0, 1)
    for _ in range(N_PURPOSES):
        b.put(0, 1)  # PurposesLITransparency
    b.put(0, 1)  # PurposeOneTreatment
    b.put_letters(publisher_cc)
    max_vendor = max(vendor_consents, default=0)
    for section in (vendor_consents, ()):
        b.put(max_vendor, 16)
        b.put(0, 1)  # bit field, not ranges
        for v in range(1, max_vendor + 1):
            b.put(1 if v in section else 0, 1)
    b.put(0, 12)  # NumPubRestrictions
    return b.to_base64url()


def decode(tc_string: str) -> TcfConsent:
    core = tc_string.split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(core + "=" * (-len(core) % 4))
    except (ValueError, TypeError) as exc:
        raise ConsentStringError(f"not base64url: {tc_string[:40]!r}") from exc
    bits = "".join(f"{byte:08b}" for byte in raw)
    if len(bits) < PURPOSES_LI_OFFSET + N_PURPOSES + 13:
        raise ConsentStringError(f"core segment too short ({len(bits)} bits)")

    def num(start: int, width: int) -> int:
        return int(bits[start : start + width], 2)

    version = num(0, 6)
    if version != 2:
        raise ConsentStringError(f"TCF version {version} is not supported (need 2)")

    def purposes(offset: int) -> frozenset[int]:
        return frozenset(p for p in range(1, N_PURPOSES + 1) if bits[offset + p - 1] == "1")

    cc_offset = PURPOSES_LI_OFFSET + N_PURPOSES + 1
    return TcfConsent(
        version=version,
        created=datetime.fromtimestamp(num(6, 36) / 10, tz=UTC),
        cmp_id=num(78, 12),
        vendor_list_version=num(120, 12),
        policy_version=num(132, 6),
        purposes_consent=purposes(PURPOSES_CONSENT_OFFSET),
        purposes_legitimate_interest=purposes(PURPOSES_LI_OFFSET),
        publisher_cc=chr(num(cc_offset, 6) + 65) + chr(num(cc_offset + 6, 6) + 65),
    )
