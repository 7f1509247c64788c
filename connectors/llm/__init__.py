"""The LLM edge: an OpenAI-compatible chat client with schema-checked JSON output and call
records, a local llama.cpp server (SmolLM2-135M) by default, and a token price table."""

from connectors.llm.base import LLM, CallRecord, LLMError, LLMServerError
from connectors.llm.local_server import LocalLLMServer, default_model_path
from connectors.llm.openai_client import OpenAIChatLLM, StreamTiming, stream_first_token_latency
from connectors.llm.prices import ModelPrice, PriceTable, PriceTableError
from connectors.llm.validation import OutputValidationError, validate_json_output

__all__ = [
    "LLM",
    "CallRecord",
    "LLMError",
    "LLMServerError",
    "LocalLLMServer",
    "ModelPrice",
    "OpenAIChatLLM",
    "OutputValidationError",
    "PriceTable",
    "PriceTableError",
    "StreamTiming",
    "default_model_path",
    "stream_first_token_latency",
    "validate_json_output",
]
