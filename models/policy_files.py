"""Hashing of policy-as-code files, shared by every policy (budget, creative, actuation): the
hash of a file's parsed content, so comments and layout do not change it. Kept import-light:
loading a policy must not load the optimiser or the engine that uses it."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def canonical_sha256(document: Any) -> str:
    """sha256 of json.dumps(document, sort_keys=True): stable across key order and formatting."""
    # default=str only matters for YAML values JSON lacks (dates): they hash as their text.
    text = json.dumps(document, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def yaml_sha256(path: str | Path) -> str:
    """Hash of a YAML policy file's parsed content."""
    return canonical_sha256(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


def finite_number(value: Any, where: str, *, allow_none: bool = False) -> float | None:
    """A finite number (never a bool); None passes with `allow_none`; the error names the field."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{where} must be finite, got {value!r}")
    return value


def number(value: Any, where: str, *, allow_none: bool = False, positive: bool = False):
    """A policy number: finite, >= 0 (> 0 with `positive`); the error names the field."""
    value = finite_number(value, where, allow_none=allow_none)
    if value is not None and (value < 0 or (positive and value == 0)):
        raise ValueError(f"{where} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return value


def version_and_usd(document: Mapping[str, Any], what: str, why_usd: str) -> tuple[str, str]:
    """Every policy file's `version` (required) and `currency` (USD, the warehouse's)."""
    version = document.get("version")
    if version is None or isinstance(version, bool) or str(version).strip() == "":
        raise ValueError(f"{what} needs a version")
    currency = document.get("currency", "USD")
    if currency != "USD":
        raise ValueError(f"currency must be 'USD' ({why_usd}), got {currency!r}")
    return str(version), currency
