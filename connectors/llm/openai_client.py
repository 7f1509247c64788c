"""The LLM interface over the OpenAI chat completions API: OpenAI itself or any compatible
server (the local llama.cpp one by default), with schema-checked JSON output and call records."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NoReturn
from urllib.parse import urlsplit

from connectors.llm.base import CallRecord, LLMError
from connectors.llm.prices import PriceTable
from connectors.llm.validation import OutputValidationError, check_schema, validate_json_output
from connectors.openai_api import OpenAIAPI

if TYPE_CHECKING:
    import openai

DEFAULT_BASE_URL = "https://api.openai.com/v1"
StructuredOutput = Literal["json_schema", "json_object"]
# OpenAI's rule for response_format.json_schema.name.
SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def call_id_for(
    model: str,
    prompt_version: str,
    messages: Sequence[Mapping[str, str]],
    schema: Mapping[str, Any],
    seed: int,
    temperature: float,
) -> str:
    """sha256 over the inputs that determine an answer, as canonical JSON."""
    payload = {
        "model": model,
        "prompt_version": prompt_version,
        "messages": [dict(m) for m in messages],
        "schema": schema,
        "seed": seed,
        "temperature": temperature,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def endpoint_of(base_url: str) -> str:
    """scheme://host:port of a URL, without path, query or credentials."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


@dataclass(frozen=True)
class StreamTiming:
    """One streamed completion: time to the first content token, total time, decode speed."""

    ttft_s: float
    total_s: float
    tokens_in: int
    tokens_out: int
    tokens_per_s: float  # output tokens over the time after the first one
    cost_usd: float


class OpenAIChatLLM:
    """`chat.completions.create` with `response_format` set from the schema, the answer parsed
    and validated with `jsonschema`, and a CallRecord for every call, successful or not, in
    `records`.

    `structured_output="json_schema"` sends OpenAI's `{"type": "json_schema", "json_schema":
    {...}}` (OpenAI and llama.cpp); `"json_object"` sends `{"type": "json_object", "schema":
    ...}`, llama.cpp's extension, which it constrains just as well; for OpenAI use json_schema. The model must be in
    the price table: a misconfigured table fails here, before any spend. The API key goes to
    the `openai` client only; it is kept out of the repr, the records and every error.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key: str,
        *,
        structured_output: StructuredOutput = "json_schema",
        prices: PriceTable | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        strict: bool = True,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if not model:
            raise ValueError("model is empty: name a chat model, e.g. gpt-4o-mini")
        if structured_output not in ("json_schema", "json_object"):
            raise ValueError(
                f"structured_output must be 'json_schema' or 'json_object', got {structured_output!r}"
            )
        if timeout_s <= 0 or max_retries < 0:
            raise ValueError(
                f"need timeout_s > 0 and max_retries >= 0, got {timeout_s}, {max_retries}"
            )
        self.model = model
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.endpoint = endpoint_of(self.base_url)
        self.structured_output: StructuredOutput = structured_output
        self.strict = strict
        self.prices = prices or PriceTable.load()
        self.prices.price(model)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.records: list[CallRecord] = []
        # Server-specific request fields (e.g. llama.cpp's cache_prompt), sent with every call.
        self.extra_body = dict(extra_body or {})
        self._api = OpenAIAPI(api_key, self.base_url, timeout_s, max_retries)

    def __repr__(self) -> str:
        return (
            f"OpenAIChatLLM(model={self.model!r}, endpoint={self.endpoint!r}, "
            f"structured_output={self.structured_output!r}, records={len(self.records)})"
        )

    def _openai(self) -> openai.OpenAI:
        return self._api.client()

    def _scrub(self, text: str) -> str:
        return self._api.scrub(text)

    def response_format(self, schema: Mapping[str, Any], schema_name: str) -> dict[str, Any]:
        if self.structured_output == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema, "strict": self.strict},
            }
        return {"type": "json_object", "schema": schema}

    def complete_json(
        self,
        messages: Sequence[Mapping[str, str]],
        schema: Mapping[str, Any],
        *,
        schema_name: str,
        prompt_version: str,
        seed: int,
        temperature: float = 0.0,
        max_tokens: int = 512,
    ) -> tuple[dict[str, Any], CallRecord]:
        """The parsed object that satisfies `schema`, and the call's record. Raises LLMError
        (record attached, ok=False) on a server error, a timeout, or output that does not parse
        or validate; ValueError for bad arguments, before anything is sent."""
        import openai

        chat = _check_messages(messages)
        check_schema(schema)
        if not SCHEMA_NAME.fullmatch(schema_name):
            raise ValueError(
                f"schema_name must be 1-64 letters, digits, '_' or '-', got {schema_name!r}"
            )
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        call = _Call(
            llm=self,
            call_id=call_id_for(self.model, prompt_version, chat, schema, seed, temperature),
            prompt_version=prompt_version,
            seed=seed,
            temperature=temperature,
        )
        failure: str | None = None
        # Failures are noted inside `except` and raised outside it, so no openai exception is
        # chained to the LLMError: one holds the request, headers and key included.
        try:
            response = self._openai().chat.completions.create(
                model=self.model,
                messages=chat,  # type: ignore[arg-type]
                temperature=temperature,
                seed=seed,
                max_tokens=max_tokens,
                response_format=self.response_format(schema, schema_name),  # type: ignore[arg-type]
                extra_body=self.extra_body or None,
            )
        except openai.APITimeoutError:
            failure = (
                f"no answer from {self.endpoint} within {self.timeout_s:.0f} s "
                f"({self.max_retries} retries); raise timeout_s or check the server's load"
            )
        except openai.APIConnectionError as exc:
            reason = self._scrub(str(exc.__cause__ or exc))
            failure = (
                f"could not reach {self.endpoint} ({reason}): check that the server is running "
                "and that the base URL is right"
            )
        except openai.APIStatusError as exc:
            failure = (
                f"{self.endpoint} answered HTTP {exc.status_code} for model {self.model!r}: "
                f"{self._scrub(str(exc.message))}"
            )
        except openai.OpenAIError as exc:
            failure = f"{type(exc).__name__}: {self._scrub(str(exc))}"
        if failure is not None:
            call.fail(failure)

        usage = response.usage
        call.tokens_in = usage.prompt_tokens if usage else 0
        call.tokens_out = usage.completion_tokens if usage else 0
        if not response.choices:
            call.fail(f"{self.endpoint} returned no choices")
        choice = response.choices[0]
        if getattr(choice.message, "refusal", None):
            call.fail(f"the model refused: {self._scrub(str(choice.message.refusal))}")
        try:
            obj = validate_json_output(choice.message.content, schema)
        except OutputValidationError as exc:
            failure = self._scrub(str(exc))
            if choice.finish_reason == "length":
                failure += f" (output cut at max_tokens={max_tokens}: raise it or ask for less)"
        if failure is not None:
            call.fail(failure)
        return obj, call.succeed()


class _Call:
    """Timing and token counts of one call in flight, turned into its record."""

    def __init__(
        self,
        *,
        llm: OpenAIChatLLM,
        call_id: str,
        prompt_version: str,
        seed: int,
        temperature: float,
    ) -> None:
        self.llm = llm
        self.call_id = call_id
        self.prompt_version = prompt_version
        self.seed = seed
        self.temperature = temperature
        self.tokens_in = 0
        self.tokens_out = 0
        self.started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        self._t0 = time.perf_counter()

    def _record(self, error: str | None) -> CallRecord:
        record = CallRecord(
            call_id=self.call_id,
            model=self.llm.model,
            prompt_version=self.prompt_version,
            seed=self.seed,
            temperature=self.temperature,
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            latency_s=time.perf_counter() - self._t0,
            # Tokens a failed call consumed are billed too.
            cost_usd=self.llm.prices.cost(self.llm.model, self.tokens_in, self.tokens_out),
            started_at=self.started_at,
            endpoint=self.llm.endpoint,
            ok=error is None,
            error=error,
        )
        self.llm.records.append(record)
        return record

    def succeed(self) -> CallRecord:
        return self._record(None)

    def fail(self, error: str) -> NoReturn:
        record = self._record(error)
        raise LLMError(
            f"LLM call {self.call_id[:12]} to {self.llm.model!r} failed: {error}", record
        )


def _check_messages(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    if isinstance(messages, str | Mapping) or not messages:
        raise ValueError(
            "messages must be a non-empty list of {'role': ..., 'content': ...} mappings"
        )
    chat = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), str):
            raise ValueError(f"message {i} needs a 'role' and a string 'content', got {message!r}")
        if message.get("role") not in ("system", "developer", "user", "assistant"):
            raise ValueError(f"message {i} has an unknown role {message.get('role')!r}")
        chat.append(dict(message))
    return chat


def stream_first_token_latency(
    llm: OpenAIChatLLM,
    messages: Sequence[Mapping[str, str]],
    *,
    max_tokens: int = 64,
    seed: int = 0,
    temperature: float = 0.0,
    schema: Mapping[str, Any] | None = None,
    schema_name: str = "output",
    extra_body: Mapping[str, Any] | None = None,
) -> StreamTiming:
    """Time one streamed completion from `llm`'s server: seconds to the first content token,
    total seconds and output tokens per second. Benchmarks only: it is not validated and not
    added to `llm.records`. With `schema`, the same response_format as `complete_json`. For
    llama.cpp pass `extra_body={"cache_prompt": False}` to time a cold prompt: by default it
    reuses the cached prefix of the previous request."""
    chat = _check_messages(messages)
    request: dict[str, Any] = {
        "model": llm.model,
        "messages": chat,
        "temperature": temperature,
        "seed": seed,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if schema is not None:
        request["response_format"] = llm.response_format(schema, schema_name)
    if extra_body:
        request["extra_body"] = dict(extra_body)
    started = time.perf_counter()
    first: float | None = None
    chunks = 0
    tokens_in = tokens_out = 0
    try:
        stream = llm._openai().chat.completions.create(**request)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                chunks += 1
                if first is None:
                    first = time.perf_counter() - started
            if chunk.usage:
                tokens_in, tokens_out = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
    except Exception as exc:
        raise LLMError(f"streamed call to {llm.endpoint} failed: {llm._scrub(str(exc))}") from None
    total = time.perf_counter() - started
    if first is None:
        raise LLMError(f"{llm.endpoint} streamed no content for {llm.model!r}")
    tokens_out = tokens_out or chunks  # servers without include_usage: one token per chunk
    decode_s = total - first
    return StreamTiming(
        ttft_s=first,
        total_s=total,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        tokens_per_s=(tokens_out - 1) / decode_s if decode_s > 0 and tokens_out > 1 else 0.0,
        cost_usd=llm.prices.cost(llm.model, tokens_in, tokens_out),
    )
