"""Grounded creative generation: chunking, versioned prompts, the answer schema, message building,
seeds, near-duplicates, and `generate_variants` end to end against a scripted LLM."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time

import jsonschema
import numpy as np
import pytest

from connectors.llm.base import LLM, CallRecord
from models.creative.chunking import chunk_markdown, load_brand_documents
from models.creative.duplicates import (
    dedupe_variants,
    near_duplicates,
    split_duplicates,
)
from models.creative.generation import (
    PROMPT_CHAR_BUDGET,
    SCHEMA_NAME,
    VARIANTS_SCHEMA,
    ChannelLimits,
    CreativeBrief,
    Exemplar,
    InMemoryRetriever,
    Passage,
    PromptBudgetError,
    brief_query,
    build_messages,
    derive_seed,
    generate_variants,
    messages_chars,
    split_exemplars,
    variants_schema,
)
from models.creative.prompts import PROMPTS_DIR, PromptError, load_prompt
from models.creative.variant import Variant

BRAND_DOC = """# Northwind Running

Northwind makes running shoes for road and trail.

## Product facts

The Tempo weighs 210 g per shoe. It has a recycled mesh upper.

Sizes run from 36 to 48.

## Returns

Free returns within 30 days.

```
## not a heading: inside a code fence
```

## Voice
Plain, warm and short. No hype.
"""

SEARCH = ChannelLimits(headline_max=30, body_max=90)
SOCIAL = ChannelLimits(headline_max=40, body_max=125)


# --- chunking ------------------------------------------------------------------------------------


def test_chunks_follow_sections_and_keep_their_heading_path():
    chunks = chunk_markdown("brand", BRAND_DOC)
    assert [c.chunk_id for c in chunks] == [
        "brand#intro-1",
        "brand#product-facts-1",
        "brand#returns-1",
        "brand#voice-1",
    ]
    facts = chunks[1]
    assert facts.heading_path == ("Northwind Running", "Product facts")
    assert facts.text.startswith("# Northwind Running\n## Product facts\n\n")
    assert "210 g" in facts.text and "36 to 48" in facts.text
    # A `##` inside a code fence is content, not a new section.
    assert "not a heading" in chunks[2].text
    assert facts.sha256 == hashlib.sha256(facts.text.encode()).hexdigest()


def test_chunk_ids_are_stable_and_hashes_follow_the_wording():
    again = chunk_markdown("brand", BRAND_DOC)
    assert again == chunk_markdown("brand", BRAND_DOC)
    edited = chunk_markdown("brand", BRAND_DOC.replace("210 g", "205 g"))
    assert [c.chunk_id for c in edited] == [c.chunk_id for c in again]
    changed = [a.chunk_id for a, b in zip(again, edited, strict=True) if a.sha256 != b.sha256]
    assert changed == ["brand#product-facts-1"]


def test_long_sections_split_on_paragraphs_within_the_size_bound():
    paragraphs = [f"Paragraph {i}. " + "The Tempo is light and quick. " * 6 for i in range(12)]
    giant = "One sentence that never ends " * 40  # longer than a chunk: split on words
    doc = "# Guide\n\n## Claims\n\n" + "\n\n".join([*paragraphs, giant]) + "\n\n## Claims\n\nAgain."
    chunks = chunk_markdown("guide", doc, max_chars=400)
    assert all(len(c.text) <= 400 for c in chunks)
    claims = [
        c for c in chunks if c.chunk_id.startswith("guide#claims-") and "-2-" not in c.chunk_id
    ]
    assert len(claims) > 3
    assert [c.chunk_id for c in claims] == [f"guide#claims-{n}" for n in range(1, len(claims) + 1)]
    assert all(c.text.startswith("# Guide\n## Claims\n\n") for c in chunks)
    # A repeated heading gets its own ids rather than colliding.
    assert chunks[-1].chunk_id == "guide#claims-2-1" and chunks[-1].text.endswith("Again.")
    # No paragraph is cut when it fits: each starts a chunk or follows a blank line.
    joined = "\n\n".join(c.text.split("\n\n", 1)[1] for c in chunks)
    for p in paragraphs:
        assert p.strip() in joined
    assert len(set(c.chunk_id for c in chunks)) == len(chunks)


def test_a_document_without_headings_is_one_intro_section():
    chunks = chunk_markdown("notes", "Just a note.\n\nAnd another paragraph.")
    assert [c.chunk_id for c in chunks] == ["notes#intro-1"]
    assert chunks[0].heading_path == ()
    assert chunks[0].text == "Just a note.\n\nAnd another paragraph."
    assert chunk_markdown("empty", "   \n") == []
    with pytest.raises(ValueError, match="max_chars"):
        chunk_markdown("x", "text", max_chars=10)


def test_brand_documents_load_sorted_and_fail_loudly(tmp_path):
    (tmp_path / "b_voice.md").write_text("# Voice\n\n## Tone\n\nWarm.")
    (tmp_path / "a_products.md").write_text(BRAND_DOC)
    (tmp_path / "ignored.txt").write_text("## Not markdown")
    chunks = load_brand_documents(tmp_path)
    doc_order = [c.doc_id for c in chunks]
    assert doc_order == sorted(doc_order) and doc_order[0] == "a_products"
    assert chunks[-1].chunk_id == "b_voice#tone-1"
    assert {c.doc_id for c in chunks} == {"a_products", "b_voice"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no brand documents"):
        load_brand_documents(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        load_brand_documents(tmp_path / "missing")


# --- prompts -------------------------------------------------------------------------------------


def test_prompt_loads_at_highest_version_and_edits_change_the_version(tmp_path):
    shipped = load_prompt("creative_variants")
    assert shipped.prompt_version.startswith(f"creative_variants@{shipped.version}+")
    assert shipped.prompt_version.endswith(shipped.sha256[:8])
    assert {"passages", "top_creatives", "bottom_creatives", "channel"} <= shipped.placeholders

    shutil.copytree(PROMPTS_DIR / "creative_variants", tmp_path / "creative_variants")
    v1 = (tmp_path / "creative_variants" / "v1.md").read_text()
    for n in (2, 10):
        (tmp_path / "creative_variants" / f"v{n}.md").write_text(v1.replace("short", f"v{n}"))
    assert load_prompt("creative_variants", root=tmp_path).version == "v10"  # not "v2"
    before = load_prompt("creative_variants", "v1", root=tmp_path)
    # same bytes, same version string
    assert before.prompt_version == load_prompt("creative_variants", "v1").prompt_version

    (tmp_path / "creative_variants" / "v1.md").write_text(v1 + "\nOne more line.")
    after = load_prompt("creative_variants", "v1", root=tmp_path)
    assert after.prompt_version != before.prompt_version
    assert after.prompt_version.startswith("creative_variants@v1+")

    with pytest.raises(PromptError, match="no version"):
        load_prompt("creative_variants", "v3", root=tmp_path)
    with pytest.raises(PromptError, match="no prompt named"):
        load_prompt("nope", root=tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "v1.md").write_text("no markers at all")
    with pytest.raises(PromptError, match="exactly one"):
        load_prompt("broken", root=tmp_path)


def test_rendering_requires_exactly_the_placeholders():
    prompt = load_prompt("creative_variants")
    values = {name: "x" for name in prompt.placeholders}
    assert "{{" not in prompt.render_user(**values)
    with pytest.raises(PromptError, match="missing"):
        prompt.render_user(**{k: v for k, v in values.items() if k != "passages"})
    with pytest.raises(PromptError, match="unexpected"):
        prompt.render_user(**values, surprise="!")


# --- schema --------------------------------------------------------------------------------------


def _variant(headline="Light trail shoes", body="210 g per shoe.", rationale="brand#facts-1"):
    return {"headline": headline, "body": body, "rationale": rationale}


def test_variants_schema_accepts_good_answers_and_rejects_bad_ones():
    schema = variants_schema(2, SEARCH)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator.check_schema(VARIANTS_SCHEMA)
    valid = jsonschema.Draft202012Validator(schema)
    assert valid.is_valid({"variants": [_variant()]})
    assert valid.is_valid({"variants": [_variant(), _variant(headline="x" * 30)]})
    bad = {
        "too many": {"variants": [_variant()] * 3},
        "none": {"variants": []},
        "long headline": {"variants": [_variant(headline="x" * 31)]},
        "long body": {"variants": [_variant(body="x" * 91)]},
        "empty headline": {"variants": [_variant(headline="")]},
        "extra field": {"variants": [{**_variant(), "cta": "Buy"}]},
        "missing rationale": {"variants": [{"headline": "a", "body": "b"}]},
        "extra top-level": {"variants": [_variant()], "notes": ""},
    }
    for name, answer in bad.items():
        assert not valid.is_valid(answer), name
    # Limits come from the channel: social allows the 40-character headline search refuses.
    assert jsonschema.Draft202012Validator(variants_schema(2, SOCIAL)).is_valid(
        {"variants": [_variant(headline="x" * 40)]}
    )
    with pytest.raises(ValueError):
        variants_schema(0, SEARCH)


# --- messages, exemplars, seeds ------------------------------------------------------------------

BRIEF = CreativeBrief(
    campaign_id="21000000001",
    channel="search",
    objective="conversions",
    audience="trail runners",
    key_message="The Tempo is light",
    n_variants=3,
)
EXEMPLARS = [
    Exemplar("2100000000010", "Trail Shoes, 210 g Light", "Cushioned and breathable.", 0.031, 9000),
    Exemplar("2100000000011", "Run Farther in Comfort", "Recycled mesh upper.", 0.024, 8000),
    Exemplar("2100000000012", "Free Returns on Runners", "Sizes 36 to 48.", 0.012, 7000),
    Exemplar("2100000000013", "Brand new", "Barely served.", 0.5, 10),
]


def test_exemplars_are_split_into_disjoint_best_and_worst():
    top, bottom = split_exemplars(EXEMPLARS, n_top=2, n_bottom=1, min_impressions=1000)
    assert [e.creative_id for e in top] == ["2100000000010", "2100000000011"]
    assert [e.creative_id for e in bottom] == ["2100000000012"]
    top, bottom = split_exemplars(EXEMPLARS[:2], n_top=2, n_bottom=2)
    assert len(top) == 2 and bottom == []
    top, _ = split_exemplars(EXEMPLARS)
    assert top[0].creative_id == "2100000000013"  # without a floor the noisy one wins


def test_messages_carry_passages_exemplars_and_limits_within_budget():
    prompt = load_prompt("creative_variants")
    passages = [Passage(c.chunk_id, c.text) for c in chunk_markdown("brand", BRAND_DOC)]
    top, bottom = split_exemplars(EXEMPLARS, min_impressions=1000)
    messages = build_messages(prompt, BRIEF, passages, top, bottom, SEARCH)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    for p in passages:
        assert f"[{p.passage_id}]" in user
    assert "210 g per shoe" in user
    assert "Trail Shoes, 210 g Light" in user and "(CTR 3.10%)" in user
    assert "Free Returns on Runners" in user and "(CTR 1.20%)" in user
    assert "at most 30 characters" in user and "at most 90 characters" in user
    assert "trail runners" in user and "3 new, different ads for search" in user
    assert messages_chars(messages) <= PROMPT_CHAR_BUDGET
    with pytest.raises(PromptBudgetError, match="over the budget"):
        build_messages(prompt, BRIEF, passages, top, bottom, SEARCH, max_chars=500)


def test_derived_seeds_are_stable_distinct_and_in_range():
    a = derive_seed(7, BRIEF.brief_id)
    assert a == derive_seed(7, BRIEF.brief_id)
    assert 0 <= a < 2**31
    others = {derive_seed(7, f"brief-{i}") for i in range(200)} | {derive_seed(8, BRIEF.brief_id)}
    assert a not in others and len(others) == 201
    # Stable across processes, whatever Python's string-hash salt.
    code = (
        "from models.creative.generation import derive_seed, CreativeBrief;"
        "b = CreativeBrief('21000000001', 'search', 'conversions', 'trail runners',"
        " 'The Tempo is light', 3); print(derive_seed(7, b.brief_id))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == a
    with pytest.raises(ValueError):
        derive_seed(-1)


# --- near-duplicates -----------------------------------------------------------------------------


def _unit(*v: float) -> np.ndarray:
    a = np.array(v, dtype=float)
    return a / np.linalg.norm(a)


def test_near_duplicates_against_existing_and_among_candidates():
    existing = np.stack([_unit(1, 0, 0), _unit(0, 1, 0)])
    candidates = np.stack(
        [
            _unit(1, 0.1, 0),  # 0: cosine 0.995 with existing 0 -> dropped
            _unit(0, 0, 1),  # 1: new -> kept
            _unit(0.05, 0, 1),  # 2: cosine 0.999 with candidate 1 -> dropped
            _unit(0.6, 0.8, 0),  # 3: at most 0.8 with anything -> kept
            _unit(1, 0.45, 0),  # 4: 0.91 with existing 0, 0.93 with candidate 0 (dropped) -> kept
        ]
    )
    matches = near_duplicates(
        candidates, existing, 0.92, existing_ids=["2100000000010", "2100000000011"]
    )
    assert [m.is_duplicate for m in matches] == [True, False, True, False, False]
    assert matches[0].nearest_existing_id == "2100000000010"
    assert matches[0].existing_cosine == pytest.approx(1 / np.sqrt(1.01))
    assert matches[0].reason == "near-duplicate of creative 2100000000010 (cosine 0.995 ≥ 0.92)"
    assert matches[2].nearest_candidate_index == 1 and matches[2].duplicate_of_candidate
    assert matches[2].reason.startswith("near-duplicate of candidate 1 (cosine 0.999")
    assert matches[3].nearest_existing_id == "2100000000011"
    assert matches[3].existing_cosine == pytest.approx(0.8)
    assert matches[4].nearest_candidate_index == 3  # the dropped candidate 0 is not a reference

    items = ["a", "b", "c", "d", "e"]
    split = split_duplicates(items, candidates, existing, 0.92, existing_ids=["x0", "x1"])
    assert split.kept == ["b", "d", "e"]
    assert [item for item, _ in split.dropped] == ["a", "c"]
    assert "creative x0" in split.dropped[0][1]

    # The threshold is inclusive, and with no existing creatives only candidates compete.
    same = near_duplicates(np.stack([_unit(1, 0), _unit(1, 0)]), np.zeros((0, 2)), threshold=1.0)
    assert [m.is_duplicate for m in same] == [False, True]
    assert same[1].nearest_existing_index is None
    assert near_duplicates(np.zeros((0, 3)), existing) == []
    with pytest.raises(ValueError, match="dimension"):
        near_duplicates(np.stack([_unit(1, 0)]), existing)
    with pytest.raises(ValueError, match="zero vectors"):
        near_duplicates(np.zeros((1, 3)), existing)


class WordEmbedder:
    """Bag of words hashed into 64 dimensions: identical wording, identical vector."""

    model_id = "test-bag-of-words"
    dimensions = 64

    def embed(self, texts):
        out = np.zeros((len(texts), self.dimensions), np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace(",", " ").split():
                out[i, int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dimensions] += 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_dedupe_variants_drops_a_copy_of_an_existing_creative():
    variants = [
        Variant("Trail Shoes, 210 g Light", "Cushioned and breathable.", "search"),
        Variant("Sizes 36 to 48", "Recycled mesh upper, free returns.", "search"),
    ]
    existing = [("2100000000010", "Trail Shoes, 210 g Light\nCushioned and breathable.")]
    result = dedupe_variants(variants, WordEmbedder(), existing)
    assert result.kept == [variants[1]]
    assert result.dropped[0][0] == variants[0]
    assert result.dropped[0][1].startswith("near-duplicate of creative 2100000000010 (cosine 1.000")
    assert dedupe_variants([], WordEmbedder(), existing).kept == []


def test_in_memory_retriever_ranks_by_cosine():
    chunks = chunk_markdown("brand", BRAND_DOC)
    retrieve = InMemoryRetriever(chunks, WordEmbedder())
    hits = retrieve("free returns within 30 days", 2)
    assert hits[0].passage_id == "brand#returns-1"
    assert len(hits) == 2 and hits[0].score >= hits[1].score
    assert retrieve("free returns within 30 days", 2) == hits


# --- generate_variants against a scripted LLM ----------------------------------------------------
# A test double of the LLM protocol is acceptable here only because the real local server is
# exercised by the connector's own tests and by test_unit_creative_generation_llm.py; this one
# checks what generation does with answers and failures, which a real model cannot be made to
# produce on demand.


class ScriptedLLMError(RuntimeError):
    def __init__(self, message: str, record: CallRecord) -> None:
        super().__init__(message)
        self.record = record


class ScriptedLLM:
    """Answers from `script(messages, schema, seed)`; validates like the real client promises
    unless `validate=False`, to let malformed answers through to generation's own checks."""

    model = "scripted-test-llm"

    def __init__(self, script, *, validate: bool = True) -> None:
        self.script = script
        self.validate = validate
        self.calls: list[dict] = []

    def complete_json(
        self,
        messages,
        schema,
        *,
        schema_name,
        prompt_version,
        seed,
        temperature=0.0,
        max_tokens=512,
    ):
        self.calls.append(
            {
                "messages": messages,
                "schema": schema,
                "schema_name": schema_name,
                "seed": seed,
                "prompt_version": prompt_version,
                "temperature": temperature,
            }
        )
        call_id = hashlib.sha256(repr((messages, seed, prompt_version)).encode()).hexdigest()

        def record(ok: bool, error: str | None = None) -> CallRecord:
            return CallRecord(
                call_id,
                self.model,
                prompt_version,
                seed,
                temperature,
                100,
                50,
                0.0,
                0.0,
                time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "test://",
                ok,
                error,
            )

        try:
            answer = self.script(messages, schema, seed)
            if self.validate:
                jsonschema.validate(answer, schema)
        except Exception as exc:
            raise ScriptedLLMError(str(exc), record(False, str(exc))) from exc
        return answer, record(True)


def seeded_copy(messages, schema, seed):
    """Copy picked by the seed from the facts in the prompt: same seed, same answer."""
    rng = np.random.default_rng(seed)
    words = ["Light", "Tempo", "Trail", "Fast", "Comfort", "Grip", "Mesh", "Runner"]
    n = schema["properties"]["variants"]["maxItems"]
    return {
        "variants": [
            {
                "headline": "  " + " ".join(rng.choice(words, 3)) + "  ",
                "body": "210 g per shoe. Free returns within 30 days.\n",
                "rationale": "brand#product-facts-1",
            }
            for _ in range(n)
        ]
    }


def chunk_retriever(query, k):
    return [Passage(c.chunk_id, c.text) for c in chunk_markdown("brand", BRAND_DOC)][:k]


def run(llm, brief=BRIEF, retrieve=chunk_retriever, seed=7, **kwargs):
    return generate_variants(
        llm,
        brief,
        retrieve,
        EXEMPLARS,
        prompt=load_prompt("creative_variants"),
        limits=SEARCH,
        seed=seed,
        **kwargs,
    )


def test_scripted_llm_implements_the_protocol():
    assert isinstance(ScriptedLLM(seeded_copy), LLM)


def test_generated_variants_carry_provenance():
    llm = ScriptedLLM(seeded_copy)
    result = run(llm, k_passages=3)
    prompt = load_prompt("creative_variants")
    assert result.ok and len(result.variants) == 3
    call = llm.calls[0]
    assert call["schema"] == variants_schema(3, SEARCH)
    assert call["schema_name"] == SCHEMA_NAME
    assert call["seed"] == derive_seed(7, BRIEF.brief_id) == result.seed
    assert call["prompt_version"] == prompt.prompt_version
    shown = ("brand#intro-1", "brand#product-facts-1", "brand#returns-1")
    assert tuple(p.passage_id for p in result.passages) == shown
    assert brief_query(BRIEF).startswith("The Tempo is light")
    for v in result.variants:
        assert v.campaign_id == BRIEF.campaign_id and v.channel == "search"
        assert v.prompt_version == prompt.prompt_version
        assert v.model == "scripted-test-llm" and v.seed == result.seed
        assert v.retrieved_passage_ids == shown
        assert v.headline == v.headline.strip() and v.body.endswith("days.")
    assert len(result.records) == 1 and result.records[0].ok


def test_generation_is_deterministic_given_the_seed():
    first = run(ScriptedLLM(seeded_copy))
    again_llm = ScriptedLLM(seeded_copy)
    again = run(again_llm)
    assert again.variants == first.variants
    other = run(ScriptedLLM(seeded_copy), seed=8)
    assert other.seed != first.seed
    assert [v.headline for v in other.variants] != [v.headline for v in first.variants]
    # Another brief under the same base seed gets its own seed.
    social = CreativeBrief("23851000000001", "social", "conversions", "commuters", "Light", 2)
    assert run(ScriptedLLM(seeded_copy), brief=social).seed != first.seed


def test_llm_failures_are_recorded_not_raised():
    def broken(messages, schema, seed):
        raise TimeoutError("server did not answer in 30 s")

    failed = run(ScriptedLLM(broken))
    assert failed.variants == [] and not failed.ok
    (error,) = failed.errors
    assert error.stage == "llm" and "did not answer" in error.message
    assert error.record is not None and error.record.ok is False
    assert failed.records == [error.record]

    # One bad brief in a batch does not stop the next.
    flaky = ScriptedLLM(
        lambda m, s, seed: (
            broken(m, s, seed) if "commuters" in m[1]["content"] else seeded_copy(m, s, seed)
        )
    )
    briefs = [
        CreativeBrief("23851000000001", "search", "conversions", "commuters", "Light", 2),
        BRIEF,
    ]
    results = [run(flaky, brief=b) for b in briefs]
    assert [r.ok for r in results] == [False, True]
    assert len(results[1].variants) == 3


def test_bad_items_are_dropped_and_reported_never_rewritten():
    def sloppy(messages, schema, seed):
        return {
            "variants": [
                {
                    "headline": "The best shoe ever made!!",
                    "body": "Guaranteed PR.",
                    "rationale": "",
                },
                {"headline": "x" * 45, "body": "Too long a headline.", "rationale": ""},
                {"headline": "   ", "body": "Empty headline.", "rationale": ""},
                {"headline": "Fine", "body": "Fine.", "rationale": ""},
                {"headline": "Extra", "body": "One too many.", "rationale": ""},
            ]
        }

    result = run(ScriptedLLM(sloppy, validate=False))
    # The claim stays as written: moderation, not generation, judges it.
    assert [v.headline for v in result.variants] == ["The best shoe ever made!!"]
    messages = [e.message for e in result.errors]
    assert any("5 variants returned for 3 asked" in m for m in messages)
    assert any("exceeds the limits (headline 45/30" in m for m in messages)
    assert any("empty headline" in m for m in messages)
    assert all(e.stage == "output" for e in result.errors)

    garbage = run(ScriptedLLM(lambda m, s, seed: {"text": "hello"}, validate=False))
    assert garbage.variants == [] and "no 'variants' list" in garbage.errors[0].message


def test_no_passages_means_no_call():
    llm = ScriptedLLM(seeded_copy)
    result = run(llm, retrieve=lambda query, k: [])
    assert llm.calls == [] and result.errors[0].stage == "retrieve"


def test_the_lowest_ranked_passages_give_way_to_the_budget():
    long = [Passage(f"doc#p-{i}", f"Fact {i}. " + "The Tempo is light. " * 75) for i in range(4)]
    llm = ScriptedLLM(seeded_copy)
    result = run(llm, retrieve=lambda query, k: long[:k])
    assert 1 <= len(result.passages) < 4
    assert [p.passage_id for p in result.passages] == [
        p.passage_id for p in long[: len(result.passages)]
    ]
    assert messages_chars(llm.calls[0]["messages"]) <= PROMPT_CHAR_BUDGET
    assert result.variants[0].retrieved_passage_ids == tuple(p.passage_id for p in result.passages)

    too_big = run(ScriptedLLM(seeded_copy), retrieve=lambda q, k: long[:k], max_prompt_chars=900)
    assert too_big.errors[0].stage == "budget" and too_big.variants == []
