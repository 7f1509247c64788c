"""Grounding: every number, unit and product attribute in ad copy must be backed by the product
facts the copy was generated from (the retrieved brand passages)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from models.creative.variant import Variant

CLAIM_KINDS: tuple[str, ...] = (
    "price",
    "percent",
    "weight",
    "length",
    "size",
    "duration",
    "date",
    "count",
    "number",
)

# --- number syntax ------------------------------------------------------------------------------

# "40,000" and "1,299.00" use thousands separators; "0,21" is a decimal comma.
_NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?)"
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_WORD_NUMBERS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fourteen": 14,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "ninety": 90,
}
# Number words only count next to a unit ("thirty days"): alone, "one" is rarely a claim.
_NUMW = r"(?:" + _NUM + "|" + "|".join(sorted(_WORD_NUMBERS, key=len, reverse=True)) + ")"
_START = r"(?<![\w.,#])"  # not inside a word, a code (SUMMER20), a rank (#1) or a number
_RANGE = r"\s*(?:-|–|—|to|through)\s*"


def parse_number(text: str) -> float:
    """'40,000' -> 40000, '0,21' -> 0.21, '1,299.00' -> 1299, 'thirty' -> 30."""
    raw = text.strip().lower()
    if raw in _WORD_NUMBERS:
        return float(_WORD_NUMBERS[raw])
    if _THOUSANDS.fullmatch(raw):
        return float(raw.replace(",", ""))
    return float(raw.replace(",", "."))


# --- claims -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A checkable statement in text: a number with its kind and canonical unit."""

    kind: str  # one of CLAIM_KINDS
    value: float  # in the canonical unit: USD/EUR/GBP, %, g, mm, EU size, day/month, MMDD
    unit: str
    text: str  # as written
    high: float | None = None  # upper end of a range ("sizes 36 to 48", "3-5 days")
    context: frozenset[str] = field(default_factory=frozenset)  # a count's nouns ("runner")
    year: int | None = None  # dates only

    @property
    def values(self) -> tuple[float, ...]:
        return (self.value,) if self.high is None else (self.value, self.high)

    def describe(self) -> str:
        def fmt(x: float) -> str:
            return f"{x:.2f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))

        span = "–".join(fmt(v) for v in self.values)
        if self.kind == "price":
            return f"{span} {self.unit}"
        if self.kind == "date":
            ends = [f"{int(v) // 100:02d}-{int(v) % 100:02d}" for v in self.values]
            return "–".join(ends) + (f" {self.year}" if self.year else "")
        if self.kind == "count":
            return f"{span} {' '.join(sorted(self.context))}"
        if self.kind == "size":
            return f"EU size {span}"
        if self.kind == "number":
            return span
        return f"{span} {self.unit}"


_WEIGHT_UNITS = {
    "g": 1.0,
    "gr": 1.0,
    "gram": 1.0,
    "grams": 1.0,
    "gramme": 1.0,
    "grammes": 1.0,
    "kg": 1000.0,
    "kgs": 1000.0,
    "kilogram": 1000.0,
    "kilograms": 1000.0,
    "oz": 28.349523125,
    "ounce": 28.349523125,
    "ounces": 28.349523125,
    "lb": 453.59237,
    "lbs": 453.59237,
    "pound": 453.59237,
    "pounds": 453.59237,
}
_LENGTH_UNITS = {
    "mm": 1.0,
    "millimetre": 1.0,
    "millimetres": 1.0,
    "millimeter": 1.0,
    "millimeters": 1.0,
    "cm": 10.0,
    "centimetre": 10.0,
    "centimetres": 10.0,
    "centimeter": 10.0,
    "centimeters": 10.0,
    "km": 1e6,
    "kilometre": 1e6,
    "kilometres": 1e6,
    "kilometer": 1e6,
    "kilometers": 1e6,
    "mile": 1.609344e6,
    "miles": 1.609344e6,
}
# Days and months are kept apart: "30 days" and "1 month" are not the same promise.
_DURATION_UNITS = {
    "hour": ("day", 1 / 24),
    "hours": ("day", 1 / 24),
    "hr": ("day", 1 / 24),
    "hrs": ("day", 1 / 24),
    "h": ("day", 1 / 24),
    "day": ("day", 1.0),
    "days": ("day", 1.0),
    "week": ("day", 7.0),
    "weeks": ("day", 7.0),
    "month": ("month", 1.0),
    "months": ("month", 1.0),
    "year": ("month", 12.0),
    "years": ("month", 12.0),
    "yr": ("month", 12.0),
    "yrs": ("month", 12.0),
}
_CURRENCIES = {
    "$": "USD",
    "us$": "USD",
    "usd": "USD",
    "dollar": "USD",
    "dollars": "USD",
    "us dollars": "USD",
    "€": "EUR",
    "eur": "EUR",
    "euro": "EUR",
    "euros": "EUR",
    "£": "GBP",
    "gbp": "GBP",
}
_MONTHS = {
    "january": 1,
    "february": 2,
    "march": 3,
    "april": 4,
    "may": 5,
    "june": 6,
    "july": 7,
    "august": 8,
    "september": 9,
    "october": 10,
    "november": 11,
    "december": 12,
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "sept": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
# Words after a number that say nothing about what is counted.
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "per",
        "with",
        "by",
        "from",
        "who",
        "that",
        "which",
        "than",
        "is",
        "are",
        "was",
        "were",
        "be",
        "has",
        "have",
        "our",
        "your",
        "their",
        "its",
        "this",
        "these",
        "those",
        "more",
        "over",
        "up",
        "all",
        "off",
        "just",
        "only",
        "new",
    ]
)


def _alternation(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_MONTH = rf"(?:{_alternation(_MONTHS)})\.?"
_ORD = r"(?:st|nd|rd|th)?"
_I = re.IGNORECASE

_DATE_MDY = re.compile(
    rf"\b(?P<m>{_MONTH})\s+(?P<d>\d{{1,2}}){_ORD}"
    rf"(?:{_RANGE}(?:(?P<m2>{_MONTH})\s+)?(?P<d2>\d{{1,2}}){_ORD})?"
    rf"(?:,?\s+(?P<y>\d{{4}}))?(?!\w)",
    _I,
)
_DATE_DMY = re.compile(
    rf"{_START}(?P<d>\d{{1,2}}){_ORD}(?:{_RANGE}(?P<d2>\d{{1,2}}){_ORD})?\s+(?P<m>{_MONTH})"
    rf"(?:,?\s+(?P<y>\d{{4}}))?(?!\w)",
    _I,
)
_DATE_ISO = re.compile(r"(?<![\w-])(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})(?![\w-])")
_CUR_PREFIX = r"(?P<cur>US\$|\$|€|£|USD|EUR|GBP)"
_PRICE_PREFIX = re.compile(
    rf"{_CUR_PREFIX}\s?(?P<n>{_NUM})(?:{_RANGE}(?:US\$|\$|€|£)?\s?(?P<n2>{_NUM}))?(?!\w)", _I
)
_PRICE_SUFFIX = re.compile(
    rf"{_START}(?P<n>{_NUM})\s?(?P<cur>US dollars|dollars?|USD|euros?|EUR|GBP)(?!\w)", _I
)
_PERCENT = re.compile(
    rf"{_START}(?P<n>{_NUM})(?:{_RANGE}(?P<n2>{_NUM}))?\s?(?:%|percent\b|per\s+cent\b)", _I
)
_SIZE = re.compile(
    rf"(?:\b(?:EU\s+)?sizes?\s*:?\s*(?:EU\s*)?|\bEU\s*)(?P<n>\d{{2}}(?:[.,]5)?)"
    rf"(?:{_RANGE}(?:EU\s*)?(?P<n2>\d{{2}}(?:[.,]5)?))?(?!\w)",
    _I,
)
_UNITS = {**{u: "weight" for u in _WEIGHT_UNITS}, **{u: "length" for u in _LENGTH_UNITS}}
_UNITS.update({u: "duration" for u in _DURATION_UNITS})
_MEASURE = re.compile(
    rf"{_START}(?P<n>{_NUMW})(?:{_RANGE}(?P<n2>{_NUMW}))?[\s-]*"
    rf"(?:(?:business|working|calendar)[\s-]+)?(?P<u>{_alternation(_UNITS)})(?!\w)",
    _I,
)
_PLAIN = re.compile(
    rf"{_START}(?P<n>{_NUM})(?P<k>k)?(?:{_RANGE}(?P<n2>{_NUM})(?P<k2>k)?)?\+?(?!\w)", _I
)
_WORD = re.compile(r"[^\W\d_][\w'-]*|\d+")


def _noun(word: str) -> str:
    word = word.lower().strip("'-")
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _count_context(text: str, end: int) -> frozenset[str]:
    """The words right after a number, minus filler: what the number counts."""
    words = _WORD.findall(text[end : end + 60])[:3]
    out: set[str] = set()
    for w in words:
        if w.isdigit():
            break
        if w.lower() not in _STOPWORDS:
            out.add(_noun(w))
    return frozenset(out)


def _date(m: re.Match[str]) -> Claim:
    def month(raw: str) -> int:
        raw = raw.lower().rstrip(".")
        return int(raw) if raw.isdigit() else _MONTHS[raw]

    m1 = month(m.group("m"))
    value = m1 * 100 + int(m.group("d"))
    high = None
    groups = m.groupdict()
    if groups.get("d2"):
        m2 = month(groups["m2"]) if groups.get("m2") else m1
        high = float(m2 * 100 + int(groups["d2"]))
    year = int(m.group("y")) if groups.get("y") else None
    return Claim("date", float(value), "date", m.group(0), high, year=year)


def _price(m: re.Match[str]) -> Claim:
    unit = _CURRENCIES[m.group("cur").lower()]
    n2 = m.groupdict().get("n2")
    return Claim(
        "price",
        parse_number(m.group("n")),
        unit,
        m.group(0),
        parse_number(n2) if n2 else None,
    )


def _percent(m: re.Match[str]) -> Claim:
    n2 = m.group("n2")
    return Claim(
        "percent", parse_number(m.group("n")), "%", m.group(0), parse_number(n2) if n2 else None
    )


def _size(m: re.Match[str]) -> Claim:
    n2 = m.group("n2")
    return Claim(
        "size", parse_number(m.group("n")), "EU", m.group(0), parse_number(n2) if n2 else None
    )


def _measure(m: re.Match[str]) -> Claim:
    unit = m.group("u").lower()
    kind = _UNITS[unit]
    if kind == "weight":
        canonical, factor = "g", _WEIGHT_UNITS[unit]
    elif kind == "length":
        canonical, factor = "mm", _LENGTH_UNITS[unit]
    else:
        canonical, factor = _DURATION_UNITS[unit]
    n2 = m.group("n2")
    return Claim(
        kind,
        parse_number(m.group("n")) * factor,
        canonical,
        m.group(0),
        parse_number(n2) * factor if n2 else None,
    )


def _plain(m: re.Match[str], text: str) -> Claim:
    def num(n: str, k: str | None) -> float:
        return parse_number(n) * (1000 if k else 1)

    value = num(m.group("n"), m.group("k"))
    high = num(m.group("n2"), m.group("k2")) if m.group("n2") else None
    context = _count_context(text, m.end())
    if context:
        return Claim("count", value, "count", m.group(0), high, context=context)
    return Claim("number", value, "", m.group(0), high)


# Earlier patterns win where matches overlap: "$129" is a price, not the number 129.
_EXTRACTORS = (
    (_DATE_ISO, _date),
    (_DATE_MDY, _date),
    (_DATE_DMY, _date),
    (_PRICE_PREFIX, _price),
    (_PRICE_SUFFIX, _price),
    (_PERCENT, _percent),
    (_SIZE, _size),
    (_MEASURE, _measure),
)


def extract_claims(text: str) -> list[Claim]:
    """Every number in `text` with its kind and a normalised unit, in reading order."""
    taken: list[tuple[int, int]] = []
    found: list[tuple[int, Claim]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= a or start >= b for a, b in taken)

    for pattern, build in _EXTRACTORS:
        for m in pattern.finditer(text):
            if free(*m.span()):
                taken.append(m.span())
                found.append((m.start(), build(m)))
    for m in _PLAIN.finditer(text):
        if free(*m.span()):
            taken.append(m.span())
            found.append((m.start(), _plain(m, text)))
    return [c for _, c in sorted(found, key=lambda x: x[0])]


# --- attributes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribute:
    """A product attribute copy may only claim when the facts state it (waterproof, vegan...)."""

    name: str
    pattern: re.Pattern[str]


# A mention is negative when one of these words precedes it in the same sentence, at most three
# words before: "not waterproof", "no carbon plate", "never call it vegan", "non-waterproof".
_NEGATION = re.compile(
    r"(?:\b(?:not|no|non|never|neither|nor|without|isn't|aren't|doesn't|don't)|n't)[\s-]+(?:[\w'-]+[\s,]+){0,3}$",
    re.IGNORECASE,
)
_SENTENCE_START = re.compile(r"[.!?\n][^.!?\n]*$")


def attribute_mentions(text: str, attribute: Attribute) -> set[bool]:
    """The polarities (True: affirmed, False: negated) with which `text` mentions `attribute`."""
    out: set[bool] = set()
    for m in attribute.pattern.finditer(text):
        before = text[: m.start()]
        cut = _SENTENCE_START.search(before)
        sentence = before[cut.start() + 1 :] if cut else before
        out.add(_NEGATION.search(sentence) is None)
    return out


# --- facts and the check ------------------------------------------------------------------------

# Facts documents mark approved wording for claims that need substantiation like this:
#   - Claim: "lightest shoe in the Northwind range". Source: ...
_SUBSTANTIATED = re.compile(r"Claim:\s*[\"“]([^\"”]+)[\"”]")


@dataclass(frozen=True)
class ProductFacts:
    """What the copy may state: the claims found in the retrieved fact passages, their text (for
    attributes) and the approved wording of substantiated claims."""

    claims: tuple[Claim, ...]
    text: str
    substantiated: tuple[str, ...] = ()

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> ProductFacts:
        text = "\n\n".join(texts)
        return cls(
            claims=tuple(extract_claims(text)),
            text=text,
            substantiated=tuple(
                dict.fromkeys(" ".join(p.split()) for p in _SUBSTANTIATED.findall(text))
            ),
        )

    @classmethod
    def from_text(cls, text: str) -> ProductFacts:
        return cls.from_texts([text])


@dataclass(frozen=True)
class GroundingSettings:
    checked_kinds: frozenset[str] = frozenset(CLAIM_KINDS)
    # Room for unit conversions and rounding: 7.4 oz is 209.8 g and supports 210 g, 211 g does not.
    relative_tolerance: float = 0.003
    attributes: tuple[Attribute, ...] = ()


def _close(a: float, b: float, tol: float) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=1e-9)


def _supported_by(claim: Claim, fact: Claim, tol: float) -> bool:
    if claim.kind == "number":
        return all(any(_close(v, f, tol) for f in fact.values) for v in claim.values)
    if claim.kind != fact.kind or claim.unit != fact.unit:
        return False
    if claim.kind == "size":
        # A size range in the facts covers every size inside it.
        low, high = fact.value, fact.high if fact.high is not None else fact.value
        return all(low <= v <= high for v in claim.values)
    if claim.kind == "count" and not (claim.context & fact.context):
        return False  # "40,000 runners" does not back "40,000 reviews"
    if claim.kind == "date":
        if claim.year and fact.year and claim.year != fact.year:
            return False
        return all(any(v == f for f in fact.values) for v in claim.values)
    return all(any(_close(v, f, tol) for f in fact.values) for v in claim.values)


def unsupported_claims(
    text: str, facts: ProductFacts, settings: GroundingSettings | None = None
) -> list[tuple[Claim, list[Claim]]]:
    """The claims in `text` no fact supports, each with the facts of its kind (for the reason)."""
    settings = settings or GroundingSettings()
    out = []
    for claim in extract_claims(text):
        if claim.kind not in settings.checked_kinds:
            continue
        if any(_supported_by(claim, f, settings.relative_tolerance) for f in facts.claims):
            continue
        same = [f for f in facts.claims if f.kind == claim.kind and f.unit == claim.unit]
        out.append((claim, same))
    return out


def check_grounding(
    variant: Variant, facts: ProductFacts, settings: GroundingSettings | None = None
) -> list[str]:
    """A reason for every number and attribute in the variant that the facts do not support;
    empty when the copy is fully grounded."""
    settings = settings or GroundingSettings()
    reasons = []
    for claim, same in unsupported_claims(variant.text, facts, settings):
        known = list(dict.fromkeys(f.describe() for f in same))
        hint = f"; the facts say {', '.join(known[:6])}" if known else ""
        reasons.append(
            f"{claim.text.strip()!r} ({claim.kind} {claim.describe()}) "
            f"is not in the product facts{hint}"
        )
    for attribute in settings.attributes:
        claimed = attribute_mentions(variant.text, attribute)
        if not claimed:
            continue
        stated = attribute_mentions(facts.text, attribute)
        for polarity in sorted(claimed - stated, reverse=True):
            if not stated:
                reasons.append(f"attribute {attribute.name!r} is not in the product facts")
            elif polarity:
                reasons.append(
                    f"attribute {attribute.name!r} is claimed but the product facts say it is not"
                )
            else:
                reasons.append(
                    f"attribute {attribute.name!r} is denied but the product facts state it"
                )
    return reasons
