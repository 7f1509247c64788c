"""The LLM interface: chat completions with structured (JSON-schema) output, and a record of
every call for audit and cost reporting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class CallRecord:
    call_id: str  # sha256 of model, prompt version, messages, schema and seed
    model: str
    prompt_version: str
    seed: int
    temperature: float
    tokens_in: int
    tokens_out: int
    latency_s: float
    cost_usd: float
    started_at: str  # ISO 8601, UTC
    endpoint: str  # scheme://host:port of the server; never a key
    ok: bool
    error: str | None = None


@runtime_checkable
class LLM(Protocol):
    model: str

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
        """The parsed JSON object that satisfies `schema`, and the call's record. Raises
        LLMError (with the record attached) when the server fails or the output does not
        parse or validate."""
        ...


class LLMError(RuntimeError):
    """A call failed: the server was unreachable or answered an error, timed out, or its output
    did not parse or validate. `record` is the failed call's CallRecord (ok=False), already in
    the client's `records` (None only from the streaming benchmark helper, which keeps none);
    the message and the record never carry an API key."""

    def __init__(self, message: str, record: CallRecord | None = None) -> None:
        super().__init__(message)
        self.record = record


class LLMServerError(RuntimeError):
    """A local model server could not be started: missing model file or package, port in use,
    the process exited early or never became healthy."""
