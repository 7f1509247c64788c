"""Grounded ad-copy generation: retrieve brand passages for a brief, show the model its best and
worst existing creatives, ask for schema-constrained variants and keep full provenance."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from connectors.embeddings.base import Embedder
from connectors.llm.base import LLM
from models.creative.prompts import Prompt
from models.creative.variant import Variant

SCHEMA_NAME = "creative_variants"
# SmolLM2's window is 2048 tokens; 512 go to the answer, and at roughly 3 characters a token
# (its tokenizer on short English copy) about 4,200 characters of prompt leaves a margin for the
# chat template.
PROMPT_CHAR_BUDGET = 4200
MAX_VARIANTS = 10


# --- interfaces: the connectors' own protocols (types only; implementations are passed in) ----

ChatLLM = LLM
TextEmbedder = Embedder


class PassageLike(Protocol):
    @property
    def passage_id(self) -> str: ...

    @property
    def text(self) -> str: ...


Retriever = Callable[[str, int], Sequence[PassageLike]]


@dataclass(frozen=True)
class Passage:
    passage_id: str
    text: str
    score: float | None = None


class InMemoryRetriever:
    """Cosine search over passages embedded once; enough for a brand corpus of a few hundred
    chunks, and what notebooks and tests use where no vector store is running."""

    def __init__(self, passages: Sequence[PassageLike], embedder: TextEmbedder) -> None:
        if not passages:
            raise ValueError("InMemoryRetriever needs at least one passage")
        self._passages = list(passages)
        self._ids = np.array([p.passage_id for p in self._passages])
        self._embedder = embedder
        self._vectors = np.asarray(embedder.embed([p.text for p in self._passages]), np.float32)

    def __call__(self, query: str, k: int) -> list[Passage]:
        q = np.asarray(self._embedder.embed([query]), np.float32)[0]
        scores = self._vectors @ q
        # Ties broken by id so that the same query always yields the same passages.
        order = np.lexsort((self._ids, -scores))[:k]
        return [
            Passage(self._passages[i].passage_id, self._passages[i].text, float(scores[i]))
            for i in order
        ]


# --- briefs, limits, exemplars ------------------------------------------------------------------


class CopyLimits(Protocol):
    """Per-channel copy limits; the creative policy's `channels` entries (policies/creative.yaml,
    the single source of these numbers) have this shape."""

    @property
    def headline_max(self) -> int: ...

    @property
    def body_max(self) -> int: ...

    @property
    def rationale_max(self) -> int: ...


@dataclass(frozen=True)
class ChannelLimits:
    headline_max: int
    body_max: int
    rationale_max: int = 120


@dataclass(frozen=True)
class CreativeBrief:
    campaign_id: str
    channel: str
    objective: str
    audience: str
    key_message: str
    n_variants: int = 3

    def __post_init__(self) -> None:
        if not self.campaign_id or not self.channel:
            raise ValueError("a brief needs a campaign_id and a channel")
        if not 1 <= self.n_variants <= MAX_VARIANTS:
            raise ValueError(f"n_variants must be in 1..{MAX_VARIANTS}, got {self.n_variants}")

    @property
    def brief_id(self) -> str:
        """Stable across runs and processes; any change to the brief changes it."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        return f"{self.campaign_id}/{self.channel}/{digest[:12]}"


def brief_query(brief: CreativeBrief) -> str:
    """The retrieval query: what the copy must say, and for whom."""
    return f"{brief.key_message}. {brief.objective} for {brief.audience} ({brief.channel} ads)."


@dataclass(frozen=True)
class Exemplar:
    """An existing creative and its observed click-through rate."""

    creative_id: str
    headline: str
    body: str
    ctr: float
    impressions: int = 0


def split_exemplars(
    exemplars: Sequence[Exemplar], n_top: int = 2, n_bottom: int = 1, min_impressions: int = 0
) -> tuple[list[Exemplar], list[Exemplar]]:
    """Best and worst creatives by CTR, disjoint; creatives with fewer than `min_impressions`
    are left out because their CTR is mostly noise. Ties break by creative id."""
    pool = sorted(
        (e for e in exemplars if e.impressions >= min_impressions),
        key=lambda e: (-e.ctr, e.creative_id),
    )
    top = pool[:n_top]
    rest = pool[len(top) :]
    bottom = rest[::-1][: max(n_bottom, 0)]
    return top, bottom


# --- schema and messages ------------------------------------------------------------------------


def variants_schema(n: int, limits: CopyLimits) -> dict[str, Any]:
    """The answer's JSON schema. Only keywords llama.cpp turns into a grammar (type, properties,
    required, additionalProperties false, min/maxItems, min/maxLength), so the server can
    enforce the limits while sampling rather than us truncating afterwards."""
    if not 1 <= n <= MAX_VARIANTS:
        raise ValueError(f"n must be in 1..{MAX_VARIANTS}, got {n}")
    return {
        "type": "object",
        "properties": {
            "variants": {
                "type": "array",
                "minItems": 1,
                "maxItems": n,
                "items": {
                    "type": "object",
                    # Body first: llama.cpp's grammar emits the fields in this order, and a small
                    # model that writes the headline first mostly repeats it as the body; from a
                    # body sentence it writes a shorter headline (scripts/eval_creative_prompt.py).
                    "properties": {
                        "body": {"type": "string", "minLength": 1, "maxLength": limits.body_max},
                        "headline": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": limits.headline_max,
                        },
                        "rationale": {"type": "string", "maxLength": limits.rationale_max},
                    },
                    "required": ["body", "headline", "rationale"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["variants"],
        "additionalProperties": False,
    }


# The shape at search-ad limits, for docs and contract tests; calls build theirs per brief.
VARIANTS_SCHEMA = variants_schema(3, ChannelLimits(headline_max=30, body_max=90))


class PromptBudgetError(ValueError):
    pass


def _one_line(text: str) -> str:
    return " ".join(text.split())


_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+")


def _passage_lines(text: str) -> tuple[str, list[str]]:
    """A chunk's section heading (the last markdown heading) and its content as short lines: a
    line per bullet or paragraph, headings and markup left out, wording unchanged."""
    heading, lines, para = "", [], []

    def flush() -> None:
        if para:
            lines.append(" ".join(para))
            para.clear()

    for raw in text.splitlines():
        line = raw.strip()
        m = _HEADING.match(line)
        if m:
            flush()
            heading = m.group(1)
        elif not line:
            flush()
        elif _BULLET.match(line):
            flush()
            para.append(_BULLET.sub("", line))
        else:
            para.append(line)
    flush()
    return heading, [_one_line(x) for x in lines if x.strip()]


def _format_passages(passages: Sequence[PassageLike]) -> str:
    """One block per passage: `[id] section heading`, then its facts as `- ` lines. A small model
    copies markdown headings and long run-on lines into its answers; short bullet lines read
    like the facts they are."""
    blocks = []
    for p in passages:
        heading, lines = _passage_lines(p.text)
        body = "\n".join(f"- {line}" for line in lines)
        blocks.append(f"[{p.passage_id}] {heading}".rstrip() + (f"\n{body}" if body else ""))
    return "\n".join(blocks)


def _format_exemplars(exemplars: Sequence[Exemplar]) -> str:
    if not exemplars:
        return "(none)"
    return "\n".join(
        f'- "{_one_line(e.headline)}" / "{_one_line(e.body)}" (CTR {e.ctr:.2%})' for e in exemplars
    )


def messages_chars(messages: Sequence[Mapping[str, str]]) -> int:
    return sum(len(m["content"]) for m in messages)


def build_messages(
    prompt: Prompt,
    brief: CreativeBrief,
    passages: Sequence[PassageLike],
    top_creatives: Sequence[Exemplar],
    bottom_creatives: Sequence[Exemplar],
    limits: CopyLimits,
    *,
    max_chars: int = PROMPT_CHAR_BUDGET,
) -> list[dict[str, str]]:
    """System and user chat messages; raises PromptBudgetError when they exceed `max_chars`
    (the caller drops the lowest-ranked passages rather than letting the server cut the
    prompt somewhere we cannot see)."""
    user = prompt.render_user(
        n_variants=brief.n_variants,
        channel=brief.channel,
        objective=_one_line(brief.objective),
        audience=_one_line(brief.audience),
        key_message=_one_line(brief.key_message),
        headline_max=limits.headline_max,
        body_max=limits.body_max,
        passages=_format_passages(passages) if passages else "(none)",
        top_creatives=_format_exemplars(top_creatives),
        bottom_creatives=_format_exemplars(bottom_creatives),
    )
    messages = [{"role": "system", "content": prompt.system}, {"role": "user", "content": user}]
    size = messages_chars(messages)
    if size > max_chars:
        raise PromptBudgetError(
            f"prompt is {size} characters, over the budget of {max_chars} "
            f"({len(passages)} passages)"
        )
    return messages


# --- generation ---------------------------------------------------------------------------------


def derive_seed(base: int, *parts: object) -> int:
    """A seed in [0, 2**31) from a base seed and identifying parts (a brief id, an attempt):
    stable across processes, unlike `hash()`, and within what llama.cpp and OpenAI accept."""
    if base < 0:
        raise ValueError(f"base seed must be non-negative, got {base}")
    key = "\x1f".join([str(int(base)), *(str(p) for p in parts)])
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class GenerationFailure:
    campaign_id: str
    channel: str
    stage: str  # retrieve, budget, llm, output
    message: str
    record: Any = None  # the LLM call record, when a call was made


@dataclass
class GenerationResult:
    brief: CreativeBrief
    seed: int  # the per-brief seed sent to the model
    prompt_version: str
    variants: list[Variant] = field(default_factory=list)
    passages: list[PassageLike] = field(default_factory=list)  # those shown to the model
    records: list[Any] = field(default_factory=list)
    errors: list[GenerationFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _parse_variants(
    payload: Any, n: int, limits: CopyLimits
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(headline, body, rationale) triples that meet the limits, and a problem per item that
    does not. Nothing is shortened or reworded: an over-long or empty item is dropped and said
    so, and claims are left for moderation to judge."""
    items = payload.get("variants") if isinstance(payload, Mapping) else None
    if not isinstance(items, list):
        return [], [f"answer has no 'variants' list: {str(payload)[:200]!r}"]
    problems: list[str] = []
    if len(items) > n:
        problems.append(f"{len(items)} variants returned for {n} asked; the extra were dropped")
        items = items[:n]
    good: list[tuple[str, str, str]] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            problems.append(f"variant {i} is not an object")
            continue
        fields = {k: item.get(k, "") for k in ("headline", "body", "rationale")}
        if not all(isinstance(v, str) for v in fields.values()):
            problems.append(f"variant {i} has a non-string field")
            continue
        headline, body, rationale = (fields[k].strip() for k in ("headline", "body", "rationale"))
        if not headline or not body:
            problems.append(f"variant {i} has an empty headline or body")
        elif len(headline) > limits.headline_max or len(body) > limits.body_max:
            problems.append(
                f"variant {i} exceeds the limits (headline {len(headline)}/{limits.headline_max}, "
                f"body {len(body)}/{limits.body_max} characters)"
            )
        else:
            good.append((headline, body, rationale))
    return good, problems


def generate_variants(
    llm: ChatLLM,
    brief: CreativeBrief,
    retrieve: Retriever,
    exemplars: Sequence[Exemplar],
    *,
    prompt: Prompt,
    limits: CopyLimits,
    seed: int,
    k_passages: int = 4,
    n_top: int = 2,
    n_bottom: int = 1,
    temperature: float = 0.0,
    max_tokens: int = 512,
    max_prompt_chars: int = PROMPT_CHAR_BUDGET,
) -> GenerationResult:
    """Variants for one brief, grounded on retrieved passages. `seed` is the run's base seed;
    the brief's own seed derives from it and the brief id. LLM and output failures land in
    `errors` instead of raising, so one bad brief does not stop a batch; retrieval errors do
    raise, since a broken index breaks every brief alike."""
    brief_seed = derive_seed(seed, brief.brief_id)
    result = GenerationResult(brief=brief, seed=brief_seed, prompt_version=prompt.prompt_version)

    def fail(stage: str, message: str, record: Any = None) -> GenerationResult:
        result.errors.append(
            GenerationFailure(brief.campaign_id, brief.channel, stage, message, record)
        )
        return result

    retrieved: list[PassageLike] = []
    seen: set[str] = set()
    for p in retrieve(brief_query(brief), k_passages):
        if p.passage_id not in seen and len(retrieved) < k_passages:
            seen.add(p.passage_id)
            retrieved.append(p)
    if not retrieved:
        return fail("retrieve", "no passages retrieved; ungrounded copy is not generated")

    top, bottom = split_exemplars(exemplars, n_top, n_bottom)
    messages: list[dict[str, str]] | None = None
    for m in range(len(retrieved), 0, -1):
        try:
            messages = build_messages(
                prompt, brief, retrieved[:m], top, bottom, limits, max_chars=max_prompt_chars
            )
        except PromptBudgetError:
            continue
        result.passages = retrieved[:m]
        break
    if messages is None:
        return fail("budget", f"even one passage overflows the {max_prompt_chars}-char budget")

    try:
        payload, record = llm.complete_json(
            messages,
            variants_schema(brief.n_variants, limits),
            schema_name=SCHEMA_NAME,
            prompt_version=prompt.prompt_version,
            seed=brief_seed,
            temperature=temperature,
            max_tokens=max_tokens,
        )
    except Exception as exc:
        record = getattr(exc, "record", None)
        if record is not None:
            result.records.append(record)
        return fail("llm", f"{type(exc).__name__}: {exc}", record)
    result.records.append(record)

    triples, problems = _parse_variants(payload, brief.n_variants, limits)
    for problem in problems:
        fail("output", problem, record)
    passage_ids = tuple(p.passage_id for p in result.passages)
    model = getattr(record, "model", None) or llm.model
    result.variants = [
        Variant(
            headline=headline,
            body=body,
            channel=brief.channel,
            rationale=rationale,
            campaign_id=brief.campaign_id,
            prompt_version=prompt.prompt_version,
            model=model,
            seed=brief_seed,
            retrieved_passage_ids=passage_ids,
        )
        for headline, body, rationale in triples
    ]
    return result
