"""RFC 8785 JSON Canonicalization Scheme (JCS), for the JSON subset the audit log holds.

`canonical_json(obj)` returns the UTF-8 bytes that RFC 8785 prescribes, so that a hash over them
does not depend on key order, whitespace, escaping choices or float formatting:

- objects: members sorted by their keys' UTF-16 code units (not code points), no whitespace;
- strings: only the escapes JSON requires (`"`, `\\`, control characters; `\\b \\f \\n \\r \\t`
  by their short forms, the rest as lower-case `\\u00xx`); everything else, non-ASCII included,
  as UTF-8;
- numbers: IEEE 754 doubles written as ECMAScript's `Number.prototype.toString` writes them
  (shortest round trip; `1.0` -> `1`, `1e21` -> `1e+21`, `1e-7` -> `1e-7`, `-0` -> `0`);
  NaN and infinities are refused, and so are integers a double cannot hold exactly;
- `true`, `false`, `null`; lists and tuples as arrays.

Anything else (datetimes, Decimals, sets, bytes) is refused with a TypeError: convert it first,
explicitly, so the hashed form is a decision rather than an accident.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}  # fmt: skip
_MAX_SAFE_INT = 2**53


def canonical_json(obj: Any) -> bytes:
    """The RFC 8785 canonical form of `obj`, as UTF-8 bytes."""
    parts: list[str] = []
    _write(obj, parts, "$")
    text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate cannot be valid I-JSON
        raise ValueError(f"string holds a lone surrogate, not valid I-JSON: {exc}") from None


def format_number(value: float | int) -> str:
    """A number as ECMAScript's Number.prototype.toString (RFC 8785 section 3.2.2.3) writes it."""
    if isinstance(value, bool):
        raise TypeError("a bool is not a number here")
    if isinstance(value, numbers.Integral):
        as_float = float(value)
        if int(as_float) != int(value):
            raise ValueError(
                f"integer {value} cannot be held exactly by an IEEE 754 double; store it as a string"
            )
        value = as_float
    x = float(value)
    if math.isnan(x) or math.isinf(x):
        raise ValueError(f"{x} is not a JSON number (RFC 8785 refuses NaN and infinities)")
    if x == 0:
        return "0"  # also -0
    sign = "-" if x < 0 else ""
    # repr gives the shortest digits that round-trip, as ECMAScript requires
    mantissa, _, exp = repr(abs(x)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    # position of the decimal point relative to the start of `digits`: x = 0.d1d2..dk * 10^n
    n = (
        len(int_part.lstrip("0"))
        if int_part.strip("0")
        else -(len(frac_part) - len(frac_part.lstrip("0")))
    )
    n += int(exp) if exp else 0
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        exp_text = f"e{'+' if e >= 0 else '-'}{abs(e)}"
        out = (digits if k == 1 else digits[0] + "." + digits[1:]) + exp_text
    return sign + out


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _write_string(s: str, parts: list[str]) -> None:
    parts.append('"')
    for ch in s:
        if ch in _SHORT_ESCAPES:
            parts.append(_SHORT_ESCAPES[ch])
        elif ch < " ":
            parts.append(f"\\u{ord(ch):04x}")
        else:
            parts.append(ch)
    parts.append('"')


def _write(obj: Any, parts: list[str], path: str) -> None:
    if obj is None:
        parts.append("null")
    elif obj is True:
        parts.append("true")
    elif obj is False:
        parts.append("false")
    elif isinstance(obj, str):
        _write_string(obj, parts)
    elif isinstance(obj, numbers.Real) and not isinstance(obj, bool):
        try:
            parts.append(format_number(obj))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    elif isinstance(obj, dict):
        for key in obj:
            if not isinstance(key, str):
                raise TypeError(f"{path}: object keys must be strings, got {type(key).__name__}")
        parts.append("{")
        for i, key in enumerate(sorted(obj, key=_utf16_key)):
            if i:
                parts.append(",")
            _write_string(key, parts)
            parts.append(":")
            _write(obj[key], parts, f"{path}.{key}")
        parts.append("}")
    elif isinstance(obj, list | tuple):
        parts.append("[")
        for i, item in enumerate(obj):
            if i:
                parts.append(",")
            _write(item, parts, f"{path}[{i}]")
        parts.append("]")
    else:
        raise TypeError(
            f"{path}: {type(obj).__name__} is not JSON; convert it explicitly before hashing"
        )
