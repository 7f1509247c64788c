"""Hashing of policy-as-code files, shared by every policy (budget, creative, actuation): the
hash of a file's parsed content, so comments and layout do not change it. Kept import-light:
loading a policy must not load the optimiser or the engine that uses it."""

from __future__ import annotations

import hashlib
import json
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
