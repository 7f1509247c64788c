"""Per-model token prices (USD per 1M tokens) from a YAML table, and the cost of one call."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

PRICES_ENV = "ADLOOP_LLM_PRICES"
DEFAULT_PRICES_PATH = Path(__file__).with_name("prices.yaml")


class PriceTableError(ValueError):
    """The price table is malformed, or has no entry for a model."""


@dataclass(frozen=True)
class ModelPrice:
    input_per_1m: float
    output_per_1m: float


@dataclass(frozen=True)
class PriceTable:
    """Prices by model id; `source` says where they came from, for error messages and audit."""

    prices: Mapping[str, ModelPrice]
    source: str = "<inline>"
    currency: str = field(default="USD")

    def __post_init__(self) -> None:
        object.__setattr__(self, "prices", MappingProxyType(dict(self.prices)))

    @classmethod
    def load(cls, path: str | Path | None = None) -> PriceTable:
        """The table at `path`, else at $ADLOOP_LLM_PRICES, else the packaged prices.yaml."""
        resolved = Path(path or os.environ.get(PRICES_ENV) or DEFAULT_PRICES_PATH)
        if not resolved.is_file():
            raise PriceTableError(
                f"price table {resolved} not found: pass an existing YAML file or unset {PRICES_ENV}"
            )
        try:
            data = yaml.safe_load(resolved.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise PriceTableError(f"price table {resolved} is not valid YAML: {exc}") from None
        return cls.from_mapping(data, source=str(resolved))

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "<inline>") -> PriceTable:
        if not isinstance(data, Mapping) or not isinstance(data.get("models"), Mapping):
            raise PriceTableError(
                f"price table {source} needs a 'models' mapping of model id -> "
                "{input_per_1m: USD, output_per_1m: USD}"
            )
        currency = data.get("currency", "USD")
        if currency != "USD":
            raise PriceTableError(f"price table {source} is in {currency!r}; costs are kept in USD")
        prices: dict[str, ModelPrice] = {}
        for model, entry in data["models"].items():
            if not isinstance(entry, Mapping):
                raise PriceTableError(f"price table {source}: entry for {model!r} is not a mapping")
            values = []
            for key in ("input_per_1m", "output_per_1m"):
                value = entry.get(key)
                # bool is an int in Python; `true` as a price is a typo, not a number.
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not math.isfinite(value)
                    or value < 0
                ):
                    raise PriceTableError(
                        f"price table {source}: {model!r}.{key} must be a non-negative number "
                        f"of USD per 1M tokens, got {value!r}"
                    )
                values.append(float(value))
            prices[str(model)] = ModelPrice(*values)
        return cls(prices, source=source)

    def with_model(self, model: str, input_per_1m: float, output_per_1m: float) -> PriceTable:
        """A copy with `model` added or replaced (e.g. a local server's alias at zero cost)."""
        return PriceTable(
            {**self.prices, model: ModelPrice(float(input_per_1m), float(output_per_1m))},
            source=self.source,
            currency=self.currency,
        )

    def __contains__(self, model: object) -> bool:
        return model in self.prices

    def price(self, model: str) -> ModelPrice:
        try:
            return self.prices[model]
        except KeyError:
            known = ", ".join(sorted(self.prices)) or "none"
            raise PriceTableError(
                f"no price for model {model!r} in {self.source} (known: {known}); add it there "
                f"or point {PRICES_ENV} at a table that has it"
            ) from None

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> float:
        """USD for one call; raises PriceTableError for a model the table does not list."""
        if tokens_in < 0 or tokens_out < 0:
            raise ValueError(f"token counts must be non-negative, got {tokens_in}, {tokens_out}")
        price = self.price(model)
        return (tokens_in * price.input_per_1m + tokens_out * price.output_per_1m) / 1_000_000
