"""The creative policy (`policies/creative.yaml`): copy limits, blocklists, claim rules, toxicity,
PII, AI label and grounding settings that moderation applies; hashed into every verdict."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from models.creative.grounding import CLAIM_KINDS, Attribute, GroundingSettings
from models.policy_files import canonical_sha256, yaml_sha256

DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[2] / "policies" / "creative.yaml"
CLAIM_CATEGORIES: tuple[str, ...] = (
    "superlative",
    "comparative",
    "guarantee",
    "health",
    "financial",
    "environmental",
)
PROVENANCE_FIELDS: tuple[str, ...] = ("model", "prompt_version", "seed", "campaign_id")

_TOP_KEYS = {
    "version",
    "channels",
    "blocklist",
    "competitors",
    "claim_rules",
    "toxicity",
    "pii",
    "ai_label",
    "grounding",
}
_REQUIRED = ("version", "channels", "claim_rules", "toxicity", "pii", "ai_label", "grounding")


@dataclass(frozen=True)
class ChannelFormat:
    """Copy limits of one channel; field names match generation's `ChannelLimits`."""

    headline_max: int
    body_max: int
    rationale_max: int = 120
    note: str = ""


@dataclass(frozen=True)
class ClaimRule:
    id: str
    category: str
    pattern: re.Pattern[str]
    reason: str
    substantiable: bool  # True: allowed inside approved wording from the product facts


@dataclass(frozen=True)
class PiiPattern:
    name: str
    pattern: re.Pattern[str]
    reason: str


@dataclass(frozen=True)
class AiLabelSettings:
    text: str
    regulation: str
    required_provenance: tuple[str, ...]


@dataclass(frozen=True)
class CreativePolicy:
    version: str
    channels: dict[str, ChannelFormat]
    blocklist: tuple[str, ...]
    competitors: tuple[str, ...]
    claim_rules: tuple[ClaimRule, ...]
    toxicity_threshold: float
    pii: tuple[PiiPattern, ...]
    ai_label: AiLabelSettings
    grounding: GroundingSettings
    policy_sha256: str  # of the parsed document (canonical JSON): comments and layout excluded

    def limits_for(self, channel: str) -> ChannelFormat:
        if channel not in self.channels:
            raise ValueError(
                f"no copy limits for channel {channel!r} in creative policy {self.version}; "
                f"known: {sorted(self.channels)}"
            )
        return self.channels[channel]

    @property
    def blocklist_patterns(self) -> tuple[tuple[str, re.Pattern[str]], ...]:
        return tuple((t, term_pattern(t)) for t in self.blocklist)

    @property
    def competitor_patterns(self) -> tuple[tuple[str, re.Pattern[str]], ...]:
        return tuple((t, term_pattern(t)) for t in self.competitors)


def term_pattern(term: str) -> re.Pattern[str]:
    """A whole-word, case-insensitive match for a word or phrase, any whitespace between words."""
    words = [re.escape(w) for w in term.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def compile_rule_pattern(pattern: str, where: str) -> re.Pattern[str]:
    """Case-insensitive and word-bounded; (?<!\\w) rather than \\b so '#1' works too."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError(f"{where} must be a non-empty regular expression, got {pattern!r}")
    try:
        return re.compile(rf"(?<!\w)(?:{pattern})(?!\w)", re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"{where}: bad regular expression {pattern!r}: {exc}") from exc


def policy_sha256(path: str | Path = DEFAULT_POLICY_PATH) -> str:
    """Hash of a policy file's parsed content; comments and layout do not change it."""
    return yaml_sha256(path)


# --- validation ---------------------------------------------------------------------------------


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a mapping, got {value!r}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list, got {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where} must be a non-empty string, got {value!r}")
    return value.strip()


def _keys(raw: Mapping[str, Any], where: str, required: set[str], optional: set[str]) -> None:
    missing = sorted(required - set(raw))
    if missing:
        raise ValueError(f"{where} is missing required fields {missing}")
    unknown = sorted(set(raw) - required - optional)
    if unknown:
        raise ValueError(
            f"{where} has unknown fields {unknown}; allowed: {sorted(required | optional)}"
        )


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where} must be a positive integer, got {value!r}")
    return value


def _channels(raw: Any) -> dict[str, ChannelFormat]:
    raw = _mapping(raw, "channels")
    if not raw:
        raise ValueError("channels must list at least one channel")
    out = {}
    for name, spec in raw.items():
        where = f"channels.{name}"
        spec = _mapping(spec, where)
        _keys(spec, where, {"headline_max", "body_max"}, {"rationale_max", "note"})
        out[str(name)] = ChannelFormat(
            headline_max=_positive_int(spec["headline_max"], f"{where}.headline_max"),
            body_max=_positive_int(spec["body_max"], f"{where}.body_max"),
            rationale_max=_positive_int(spec.get("rationale_max", 120), f"{where}.rationale_max"),
            note=str(spec.get("note", "")),
        )
    return out


def _terms(raw: Any, where: str) -> tuple[str, ...]:
    return tuple(_text(t, f"{where}[{i}]") for i, t in enumerate(_list(raw, where)))


def _claim_rules(raw: Any) -> tuple[ClaimRule, ...]:
    rules, seen = [], set()
    for i, spec in enumerate(_list(raw, "claim_rules")):
        where = f"claim_rules[{i}]"
        spec = _mapping(spec, where)
        _keys(spec, where, {"id", "category", "pattern", "reason", "substantiable"}, set())
        rule_id = _text(spec["id"], f"{where}.id")
        if rule_id in seen:
            raise ValueError(f"{where}.id {rule_id!r} is used twice")
        seen.add(rule_id)
        if spec["category"] not in CLAIM_CATEGORIES:
            raise ValueError(
                f"{where}.category must be one of {CLAIM_CATEGORIES}, got {spec['category']!r}"
            )
        if not isinstance(spec["substantiable"], bool):
            raise ValueError(f"{where}.substantiable must be true or false")
        rules.append(
            ClaimRule(
                id=rule_id,
                category=spec["category"],
                pattern=compile_rule_pattern(spec["pattern"], f"{where}.pattern"),
                reason=_text(spec["reason"], f"{where}.reason"),
                substantiable=spec["substantiable"],
            )
        )
    if not rules:
        raise ValueError("claim_rules must hold at least one rule")
    return tuple(rules)


def _threshold(raw: Any) -> float:
    raw = _mapping(raw, "toxicity")
    _keys(raw, "toxicity", {"threshold"}, {"classifier"})
    value = raw["threshold"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(f"toxicity.threshold must be a probability in (0, 1), got {value!r}")
    return float(value)


def _pii(raw: Any) -> tuple[PiiPattern, ...]:
    out = []
    for i, spec in enumerate(_list(raw, "pii")):
        where = f"pii[{i}]"
        spec = _mapping(spec, where)
        _keys(spec, where, {"name", "pattern", "reason"}, set())
        try:
            pattern = re.compile(_text(spec["pattern"], f"{where}.pattern"), re.IGNORECASE)
        except re.error as exc:
            raise ValueError(
                f"{where}.pattern: bad regular expression {spec['pattern']!r}: {exc}"
            ) from exc
        out.append(
            PiiPattern(
                _text(spec["name"], f"{where}.name"),
                pattern,
                _text(spec["reason"], f"{where}.reason"),
            )
        )
    if not out:
        raise ValueError("pii must hold at least one pattern")
    return tuple(out)


def _ai_label(raw: Any) -> AiLabelSettings:
    raw = _mapping(raw, "ai_label")
    _keys(raw, "ai_label", {"text", "regulation", "required_provenance"}, set())
    fields = tuple(_terms(raw["required_provenance"], "ai_label.required_provenance"))
    unknown = sorted(set(fields) - set(PROVENANCE_FIELDS))
    if unknown:
        raise ValueError(
            f"ai_label.required_provenance has unknown fields {unknown}; "
            f"known: {list(PROVENANCE_FIELDS)}"
        )
    return AiLabelSettings(
        text=_text(raw["text"], "ai_label.text"),
        regulation=_text(raw["regulation"], "ai_label.regulation"),
        required_provenance=fields,
    )


def _grounding(raw: Any) -> GroundingSettings:
    raw = _mapping(raw, "grounding")
    _keys(raw, "grounding", {"checked_kinds", "relative_tolerance"}, {"attributes"})
    kinds = _terms(raw["checked_kinds"], "grounding.checked_kinds")
    unknown = sorted(set(kinds) - set(CLAIM_KINDS))
    if unknown:
        raise ValueError(
            f"grounding.checked_kinds has unknown kinds {unknown}; known: {list(CLAIM_KINDS)}"
        )
    tol = raw["relative_tolerance"]
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 <= tol < 0.1:
        raise ValueError(f"grounding.relative_tolerance must be in [0, 0.1), got {tol!r}")
    attributes = []
    for i, spec in enumerate(_list(raw.get("attributes"), "grounding.attributes")):
        where = f"grounding.attributes[{i}]"
        spec = _mapping(spec, where)
        _keys(spec, where, {"name", "pattern"}, set())
        attributes.append(
            Attribute(
                _text(spec["name"], f"{where}.name"),
                compile_rule_pattern(spec["pattern"], f"{where}.pattern"),
            )
        )
    return GroundingSettings(
        checked_kinds=frozenset(kinds), relative_tolerance=float(tol), attributes=tuple(attributes)
    )


def policy_from_dict(document: Any, *, sha256: str | None = None) -> CreativePolicy:
    """Validate a parsed policy document; every error names the field at fault."""
    if not isinstance(document, Mapping):
        raise ValueError(f"a creative policy must be a mapping, got {type(document).__name__}")
    _keys(document, "creative policy", set(_REQUIRED), _TOP_KEYS - set(_REQUIRED))
    version = document["version"]
    if version is None or isinstance(version, bool) or str(version).strip() == "":
        raise ValueError("creative policy needs a version")
    return CreativePolicy(
        version=str(version),
        channels=_channels(document["channels"]),
        blocklist=_terms(document.get("blocklist"), "blocklist"),
        competitors=_terms(document.get("competitors"), "competitors"),
        claim_rules=_claim_rules(document["claim_rules"]),
        toxicity_threshold=_threshold(document["toxicity"]),
        pii=_pii(document["pii"]),
        ai_label=_ai_label(document["ai_label"]),
        grounding=_grounding(document["grounding"]),
        policy_sha256=sha256 if sha256 is not None else canonical_sha256(document),
    )


def load_creative_policy(path: str | Path | None = None) -> CreativePolicy:
    """Read, validate and hash a creative policy YAML file (default `policies/creative.yaml`)."""
    path = Path(path) if path is not None else DEFAULT_POLICY_PATH
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"creative policy not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return policy_from_dict(document, sha256=canonical_sha256(document))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
