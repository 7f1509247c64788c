"""The moderation chain for generated ad copy: format, blocklist, claims, toxicity, PII,
grounding and the AI label, all run on every variant so a rejection carries every reason."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from models.creative.grounding import ProductFacts, check_grounding
from models.creative.policy import CreativePolicy, term_pattern
from models.creative.variant import Variant

STAGES: tuple[str, ...] = (
    "format",
    "blocklist",
    "claims",
    "toxicity",
    "pii",
    "grounding",
    "ai_label",
)

_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")


@functools.cache
def _predict_prob() -> Callable[[list[str]], Any]:
    # Importing alt-profanity-check unpickles its model (~4 s): once per process, on first use.
    from profanity_check import predict_prob

    return predict_prob


class ProfanityClassifier:
    """alt-profanity-check's probability that a text is profane or offensive."""

    def predict_prob(self, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        return [float(p) for p in _predict_prob()(list(texts))]


@dataclass(frozen=True)
class StageVerdict:
    stage: str
    passed: bool
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModerationResult:
    passed: bool
    stages: tuple[StageVerdict, ...]
    label: dict[str, Any]
    policy_version: str
    policy_sha256: str

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every failure as 'stage: reason', in stage order."""
        return tuple(f"{s.stage}: {r}" for s in self.stages for r in s.reasons)

    @property
    def failed_stages(self) -> tuple[str, ...]:
        return tuple(s.stage for s in self.stages if not s.passed)

    def verdict(self, stage: str) -> StageVerdict:
        for s in self.stages:
            if s.stage == stage:
                return s
        raise KeyError(f"no stage {stage!r}; stages: {[s.stage for s in self.stages]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "stages": [
                {"stage": s.stage, "passed": s.passed, "reasons": list(s.reasons)}
                for s in self.stages
            ],
            "reasons": list(self.reasons),
            "label": dict(self.label),
            "policy_version": self.policy_version,
            "policy_sha256": self.policy_sha256,
        }


def _unique(reasons: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(reasons))


def _fields(variant: Variant) -> tuple[tuple[str, str], ...]:
    return (("headline", variant.headline or ""), ("body", variant.body or ""))


# --- stages -------------------------------------------------------------------------------------


def check_format(variant: Variant, policy: CreativePolicy) -> list[str]:
    reasons = []
    limits = policy.channels.get(variant.channel)
    if limits is None:
        reasons.append(
            f"unknown channel {variant.channel!r}; the policy has limits for "
            f"{sorted(policy.channels)}"
        )
    for name, text in _fields(variant):
        n = len(text.strip())
        if n == 0:
            reasons.append(f"{name} is empty")
        elif limits is not None:
            limit = limits.headline_max if name == "headline" else limits.body_max
            if n > limit:
                reasons.append(
                    f"{name} is {n} characters; {variant.channel} allows at most {limit}"
                )
    return reasons


def check_blocklist(variant: Variant, policy: CreativePolicy) -> list[str]:
    reasons = []
    for name, text in _fields(variant):
        for term, pattern in policy.blocklist_patterns:
            if pattern.search(text):
                reasons.append(f"blocklisted {term!r} in {name}")
        for term, pattern in policy.competitor_patterns:
            if pattern.search(text):
                reasons.append(f"competitor {term!r} named in {name}")
    return reasons


def _approved_spans(text: str, facts: ProductFacts) -> list[tuple[int, int]]:
    return [m.span() for phrase in facts.substantiated for m in term_pattern(phrase).finditer(text)]


def check_claims(variant: Variant, policy: CreativePolicy, facts: ProductFacts) -> list[str]:
    reasons = []
    for name, text in _fields(variant):
        approved = _approved_spans(text, facts)
        for rule in policy.claim_rules:
            for m in rule.pattern.finditer(text):
                # A substantiable claim passes only inside the approved wording itself: the
                # facts back "lightest shoe in the Northwind range", not "lightest shoe ever".
                if rule.substantiable and any(a <= m.start() and m.end() <= b for a, b in approved):
                    continue
                why = "unsubstantiated" if rule.substantiable else "not allowed"
                reasons.append(
                    f"{rule.category} claim {m.group(0)!r} in {name} ({rule.id}, {why}): "
                    f"{rule.reason}"
                )
    return reasons


def check_toxicity(
    variant: Variant, policy: CreativePolicy, classifier: ProfanityClassifier
) -> list[str]:
    # Scored whole and per sentence: one profane sentence in a long body would otherwise be
    # diluted below the threshold by the words around it.
    texts: dict[str, str] = {}
    for name, text in _fields(variant):
        if text.strip():
            texts.setdefault(text.strip(), name)
            for sentence in _SENTENCES.split(text):
                if sentence.strip():
                    texts.setdefault(sentence.strip(), name)
    if not texts:
        return []
    try:
        scores = classifier.predict_prob(list(texts))
    except Exception as exc:
        # Fail closed: copy nobody could screen for profanity is not proposed.
        return [f"profanity classifier failed: {type(exc).__name__}: {exc}"]
    reasons = []
    for (text, name), p in zip(texts.items(), scores, strict=True):
        if p >= policy.toxicity_threshold:
            reasons.append(
                f"{name} scores {p:.2f} for profanity (threshold "
                f"{policy.toxicity_threshold:.2f}): {text!r}"
            )
    return reasons


def _redact(found: str) -> str:
    # Reasons are stored and logged; they must not copy the personal data they flag.
    return f"{found[:1]}…{found[-1:]} ({len(found)} characters)"


def check_pii(variant: Variant, policy: CreativePolicy) -> list[str]:
    reasons = []
    for name, text in _fields(variant):
        for pii in policy.pii:
            for m in pii.pattern.finditer(text):
                reasons.append(f"{pii.reason} ({pii.name}) in {name}: {_redact(m.group(0))}")
    return reasons


def ai_label(variant: Variant, policy: CreativePolicy) -> dict[str, Any]:
    """The machine-readable transparency label stored with the variant (EU AI Act Art. 50)."""
    return {
        "ai_generated": True,
        "label": policy.ai_label.text,
        "regulation": policy.ai_label.regulation,
        "generator": variant.model,
        "prompt_version": variant.prompt_version,
        "seed": variant.seed,
        "campaign_id": variant.campaign_id,
        "grounded_on": list(variant.retrieved_passage_ids),
        "policy_version": policy.version,
        "policy_sha256": policy.policy_sha256,
    }


def check_ai_label(variant: Variant, policy: CreativePolicy) -> list[str]:
    return [
        f"provenance lacks {name}: the AI label cannot say how the copy was made"
        for name in policy.ai_label.required_provenance
        if getattr(variant, name) in (None, "")
    ]


# --- the chain ----------------------------------------------------------------------------------


def moderate(
    variant: Variant,
    policy: CreativePolicy,
    facts: ProductFacts,
    *,
    classifier: ProfanityClassifier | None = None,
) -> ModerationResult:
    """Run every stage (no short-circuit) and pass the variant only if all of them pass."""
    classifier = classifier or ProfanityClassifier()
    found = {
        "format": check_format(variant, policy),
        "blocklist": check_blocklist(variant, policy),
        "claims": check_claims(variant, policy, facts),
        "toxicity": check_toxicity(variant, policy, classifier),
        "pii": check_pii(variant, policy),
        "grounding": check_grounding(variant, facts, policy.grounding),
        "ai_label": check_ai_label(variant, policy),
    }
    stages = tuple(StageVerdict(s, not found[s], _unique(found[s])) for s in STAGES)
    return ModerationResult(
        passed=all(s.passed for s in stages),
        stages=stages,
        label=ai_label(variant, policy),
        policy_version=policy.version,
        policy_sha256=policy.policy_sha256,
    )
