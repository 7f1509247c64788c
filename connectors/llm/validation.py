"""Parse a model's text answer as JSON and check it against the JSON schema that was asked for."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_REPORTED_ERRORS = 5


class OutputValidationError(ValueError):
    """The answer is not a JSON object, or the object breaks the schema."""


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise ValueError for a schema that is itself invalid, before any money is spent on it."""
    import jsonschema  # ~0.1 s; kept out of `import connectors.llm`

    validator_cls = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    try:
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"the output schema is not a valid JSON schema: {exc.message}") from None


def validate_json_output(text: str | None, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object in `text`, if it parses and satisfies `schema`; else OutputValidationError
    naming where it broke. Checked even when the server constrained its decoding to the schema:
    output can be cut at max_tokens, and servers skip keywords they do not support."""
    if text is None or not text.strip():
        raise OutputValidationError("the model returned no content")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        shown = repr(text) if len(text) <= 160 else f"{text[:100]!r} ... {text[-40:]!r}"
        raise OutputValidationError(
            f"the output is not valid JSON ({exc.msg} at char {exc.pos}): {shown}"
        ) from None
    if not isinstance(obj, dict):
        raise OutputValidationError(f"the output is JSON {type(obj).__name__}, not an object")
    import jsonschema

    validator_cls = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    errors = sorted(validator_cls(schema).iter_errors(obj), key=lambda e: e.json_path)
    if errors:
        shown = "; ".join(
            f"at {e.json_path}: {e.message[:160]}" for e in errors[:MAX_REPORTED_ERRORS]
        )
        more = (
            f" (and {len(errors) - MAX_REPORTED_ERRORS} more)"
            if len(errors) > MAX_REPORTED_ERRORS
            else ""
        )
        raise OutputValidationError(f"the output breaks the schema: {shown}{more}")
    return obj
