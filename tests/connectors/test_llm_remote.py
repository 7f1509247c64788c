"""The LLM client against OpenAI or another OpenAI-compatible server; runs only when
OPENAI_API_KEY is set (OPENAI_BASE_URL and ADLOOP_LLM_MODEL optional). Costs a few cents."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import jsonschema
import pytest

from connectors.llm import OpenAIChatLLM, PriceTable, stream_first_token_latency

API_KEY = os.environ.get("OPENAI_API_KEY", "")
MODEL = os.environ.get("ADLOOP_LLM_MODEL", "gpt-4o-mini")
BASE_URL = os.environ.get("OPENAI_BASE_URL") or None

pytestmark = pytest.mark.skipif(
    not API_KEY,
    reason="OPENAI_API_KEY is not set: the remote LLM tests call a paid API and run only with a "
    "key (OPENAI_BASE_URL and ADLOOP_LLM_MODEL choose another server or model)",
)

# OpenAI's strict mode wants every property required and no extra properties; length limits
# are left to the local validation.
AD_COPY_SCHEMA = {
    "type": "object",
    "properties": {
        "variants": {
            "type": "array",
            "minItems": 2,
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "headline": {"type": "string"},
                    "body": {"type": "string"},
                    "channel": {"type": "string", "enum": ["search", "social", "display"]},
                    "rationale": {"type": "string"},
                },
                "required": ["headline", "body", "channel", "rationale"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["variants"],
    "additionalProperties": False,
}
MESSAGES = [
    {"role": "system", "content": "You write concise ad copy."},
    {"role": "user", "content": "Write two or three ad variants for a lightweight trail shoe."},
]


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    table = PriceTable.load()
    if MODEL not in table:
        pytest.skip(
            f"{MODEL!r} has no price in {table.source}: add it there or set ADLOOP_LLM_PRICES"
        )
    return table


def test_remote_ad_copy_is_schema_valid_and_recorded(prices):
    # json_schema only: the json_object style adds llama.cpp's `schema` key, which OpenAI's
    # request validation is not documented to accept.
    llm = OpenAIChatLLM(MODEL, BASE_URL, API_KEY, prices=prices)
    obj, record = llm.complete_json(
        MESSAGES, AD_COPY_SCHEMA, schema_name="ad_copy", prompt_version="remote-v1", seed=7
    )
    jsonschema.validate(obj, AD_COPY_SCHEMA)
    assert record.ok and record.tokens_in > 0 and record.tokens_out > 0
    assert record.cost_usd == pytest.approx(prices.cost(MODEL, record.tokens_in, record.tokens_out))
    assert API_KEY not in json.dumps(asdict(record)) + repr(llm)


def test_remote_streaming_first_token(prices):
    llm = OpenAIChatLLM(MODEL, BASE_URL, API_KEY, prices=prices)
    timing = stream_first_token_latency(llm, MESSAGES, max_tokens=32)
    assert 0 < timing.ttft_s < timing.total_s and timing.tokens_out > 0
