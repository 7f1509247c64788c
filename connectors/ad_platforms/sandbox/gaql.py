"""A tiny Google Ads Query Language parser for exactly the queries adloop sends:

    SELECT <fields> FROM campaign_budget | campaign
    [WHERE <field> (= | != | IN | NOT IN) <value or (values)> [AND ...]] [LIMIT n]

Fields are `campaign_budget.{resource_name,id,amount_micros,name}` and, from `campaign`, also
`campaign.{resource_name,id,status,name,campaign_budget}`. Anything else is a `GaqlError`
naming what the sandbox understands."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# The fields of each resource the sandbox knows, and which resources a FROM may reach.
FIELDS: dict[str, tuple[str, ...]] = {
    "campaign_budget": ("resource_name", "id", "amount_micros", "name"),
    "campaign": ("resource_name", "id", "status", "name", "campaign_budget"),
}
REACHABLE: dict[str, tuple[str, ...]] = {
    "campaign_budget": ("campaign_budget",),
    "campaign": ("campaign", "campaign_budget"),
}
INT64_FIELDS = frozenset({"campaign_budget.id", "campaign_budget.amount_micros", "campaign.id"})

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?![\w.]))
      | (?P<op>!=|<=|>=|=|<|>|\(|\)|,)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
KEYWORDS = frozenset({"SELECT", "FROM", "WHERE", "AND", "IN", "NOT", "LIMIT"})
SUPPORTED = (
    "the sandbox understands SELECT <fields> FROM campaign_budget|campaign "
    "[WHERE <field> =|!=|IN|NOT IN <value(s)> [AND ...]] [LIMIT n], with fields "
    + ", ".join(f"{r}.{f}" for r, fs in FIELDS.items() for f in fs)
)


class GaqlError(ValueError):
    """A query the sandbox cannot run; `code` is a Google Ads QueryError value."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Condition:
    field: str
    op: str  # = | != | IN | NOT IN
    values: tuple[str, ...]

    def matches(self, row: dict[str, Any]) -> bool:
        found = str(row.get(self.field))
        if self.op in ("=", "IN"):
            return found in self.values
        return found not in self.values


@dataclass(frozen=True)
class Query:
    fields: tuple[str, ...]
    resource: str
    conditions: tuple[Condition, ...]
    limit: int | None

    def run(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Filter flat rows ({"campaign_budget.id": 1, ...}) and shape them as the REST API
        does: nested camelCase objects, int64 values as strings."""
        out: list[dict[str, Any]] = []
        for row in rows:
            if all(condition.matches(row) for condition in self.conditions):
                out.append(self._shape(row))
                if self.limit is not None and len(out) >= self.limit:
                    break
        return out

    @property
    def field_mask(self) -> str:
        return ",".join(camel_path(f) for f in self.fields)

    def _shape(self, row: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, dict[str, Any]] = {}
        resources = {f.split(".")[0] for f in self.fields} | {self.resource}
        for resource in sorted(resources):
            # The API returns each resource's resource name whether it was selected or not.
            result.setdefault(camel(resource), {})["resourceName"] = row[
                f"{resource}.resource_name"
            ]
        for field in self.fields:
            resource, name = field.split(".")
            value = row[field]
            if field in INT64_FIELDS:
                value = str(value)
            result[camel(resource)][camel(name)] = value
        return result


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def camel_path(field: str) -> str:
    return ".".join(camel(part) for part in field.split("."))


def _tokens(query: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = query.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise GaqlError(
                "UNEXPECTED_INPUT", f"Error in query: unexpected input {text[position:][:20]!r}."
            )
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        elif kind == "word" and value.upper() in KEYWORDS:
            kind, value = "keyword", value.upper()
        tokens.append((kind, value))
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return tokens


class _Parser:
    def __init__(self, query: str) -> None:
        self.tokens = _tokens(query)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, kind: str | None = None, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise GaqlError("UNEXPECTED_END_OF_QUERY", "Error in query: unexpected end of query.")
        if (kind and token[0] != kind) or (value and token[1] != value):
            want = value or kind
            raise GaqlError(
                "UNEXPECTED_INPUT", f"Error in query: expected {want}, found {token[1]!r}."
            )
        self.at += 1
        return token

    def accept(self, kind: str, value: str | None = None) -> bool:
        token = self.peek()
        if token and token[0] == kind and (value is None or token[1] == value):
            self.at += 1
            return True
        return False

    def field(self) -> str:
        _, name = self.take("word")
        return name.lower()

    def literal(self) -> str:
        kind, value = self.take()
        if kind not in ("string", "number", "word"):
            raise GaqlError(
                "UNEXPECTED_INPUT", f"Error in query: expected a value, found {value!r}."
            )
        return value

    def parse(self) -> Query:
        self.take("keyword", "SELECT")
        fields = [self.field()]
        while self.accept("op", ","):
            fields.append(self.field())
        self.take("keyword", "FROM")
        _, resource = self.take("word")
        resource = resource.lower()
        if resource not in FIELDS:
            raise GaqlError(
                "INVALID_RESOURCE_TYPE_IN_FROM_CLAUSE",
                f"Error in query: the sandbox does not serve resource {resource!r}; {SUPPORTED}.",
            )
        conditions: list[Condition] = []
        if self.accept("keyword", "WHERE"):
            conditions.append(self.condition())
            while self.accept("keyword", "AND"):
                conditions.append(self.condition())
        limit = None
        if self.accept("keyword", "LIMIT"):
            _, number = self.take("number")
            limit = int(number)
            if limit <= 0:
                raise GaqlError("BAD_LIMIT_VALUE", "Error in query: LIMIT must be positive.")
        leftover = self.peek()
        if leftover is not None:
            raise GaqlError(
                "UNEXPECTED_INPUT",
                f"Error in query: unexpected {leftover[1]!r}; {SUPPORTED}.",
            )
        for name in [*fields, *(c.field for c in conditions)]:
            _check_field(name, resource)
        return Query(tuple(dict.fromkeys(fields)), resource, tuple(conditions), limit)

    def condition(self) -> Condition:
        field = self.field()
        if self.accept("op", "="):
            return Condition(field, "=", (_normalise(field, self.literal()),))
        if self.accept("op", "!="):
            return Condition(field, "!=", (_normalise(field, self.literal()),))
        negated = self.accept("keyword", "NOT")
        if self.accept("keyword", "IN"):
            self.take("op", "(")
            values = [_normalise(field, self.literal())]
            while self.accept("op", ","):
                values.append(_normalise(field, self.literal()))
            self.take("op", ")")
            return Condition(field, "NOT IN" if negated else "IN", tuple(values))
        token = self.peek()
        raise GaqlError(
            "BAD_OPERATOR",
            f"Error in query: operator {token[1] if token else 'missing'!r} after {field} is not "
            f"supported; {SUPPORTED}.",
        )


def _normalise(field: str, value: str) -> str:
    if field in INT64_FIELDS:
        try:
            return str(int(value))
        except ValueError:
            raise GaqlError(
                "BAD_NUMBER", f"Error in query: {field} needs a number, not {value!r}."
            ) from None
    return value


def _check_field(name: str, resource: str) -> None:
    owner, _, attribute = name.partition(".")
    if owner not in FIELDS or attribute not in FIELDS[owner]:
        raise GaqlError(
            "UNRECOGNIZED_FIELD", f"Error in query: unrecognized field {name!r}; {SUPPORTED}."
        )
    if owner not in REACHABLE[resource]:
        raise GaqlError(
            "PROHIBITED_RESOURCE_TYPE_IN_SELECT_CLAUSE",
            f"Error in query: {name} cannot be selected from {resource}; {SUPPORTED}.",
        )


def parse(query: str) -> Query:
    if not isinstance(query, str) or not query.strip():
        raise GaqlError("QUERY_ERROR", "Error in query: the query is empty.")
    return _Parser(query).parse()
