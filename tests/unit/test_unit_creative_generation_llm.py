"""`generate_variants` against the real local model (SmolLM2-135M through llama.cpp): answers fit
the schema, carry provenance, and repeat exactly for the same seed."""

from __future__ import annotations

import pytest

from connectors.llm.local_server import LocalLLMServer
from models.creative.chunking import chunk_markdown
from models.creative.generation import (
    ChannelLimits,
    CreativeBrief,
    Exemplar,
    derive_seed,
    generate_variants,
)
from models.creative.prompts import load_prompt

pytestmark = pytest.mark.slow

BRAND_DOC = """# Northwind Running

## Product facts

The Tempo running shoe weighs 210 g per shoe. It has a recycled mesh upper and a grippy
outsole. Sizes run from 36 to 48.

## Service

Free returns within 30 days. Orders ship in 2 days.
"""
LIMITS = ChannelLimits(headline_max=30, body_max=90, rationale_max=80)
BRIEF = CreativeBrief(
    campaign_id="21000000001",
    channel="search",
    objective="conversions",
    audience="trail runners",
    key_message="The Tempo is a light trail shoe",
    n_variants=2,
)
EXEMPLARS = [
    Exemplar("2100000000010", "Run Farther in Comfort", "Recycled mesh upper.", 0.031, 9000),
    Exemplar("2100000000012", "Northwind Running", "New season.", 0.011, 8000),
]


class WordRetriever:
    """Passages ranked by shared words: the real embedder is not what this test is about."""

    def __init__(self, chunks):
        self.chunks = chunks

    def __call__(self, query, k):
        words = set(query.lower().split())
        ranked = sorted(
            self.chunks, key=lambda c: (-len(words & set(c.text.lower().split())), c.chunk_id)
        )
        return ranked[:k]


def _generate_on_a_fresh_server():
    # A fresh server per run: llama.cpp reuses the cached prompt prefix of the previous request,
    # which changes the arithmetic, so repeats are compared cold against cold.
    with LocalLLMServer(threads=2) as server:
        llm = server.llm(timeout_s=240.0, max_retries=0)
        return generate_variants(
            llm,
            BRIEF,
            WordRetriever(chunk_markdown("brand", BRAND_DOC)),
            EXEMPLARS,
            prompt=load_prompt("creative_variants"),
            limits=LIMITS,
            seed=11,
            k_passages=2,
            max_tokens=384,
        ), server.model


def test_real_model_variants_fit_the_schema_and_repeat_for_the_seed():
    first, model = _generate_on_a_fresh_server()
    assert not [e for e in first.errors if e.stage != "output"], first.errors
    assert first.variants, first.errors
    prompt = load_prompt("creative_variants")
    for v in first.variants:
        assert 0 < len(v.headline) <= LIMITS.headline_max
        assert 0 < len(v.body) <= LIMITS.body_max
        assert v.campaign_id == BRIEF.campaign_id and v.channel == "search"
        assert v.model == model and v.prompt_version == prompt.prompt_version
        assert v.seed == derive_seed(11, BRIEF.brief_id)
        assert set(v.retrieved_passage_ids) <= {"brand#product-facts-1", "brand#service-1"}
        assert v.retrieved_passage_ids
    (record,) = first.records
    assert record.ok and record.tokens_in > 0 and record.tokens_out > 0

    again, _ = _generate_on_a_fresh_server()
    assert again.variants == first.variants
