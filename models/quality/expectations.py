"""Run a Great Expectations suite (a JSON file in expectations/) against a DataFrame.

Great Expectations is imported here, lazily: its import takes seconds, and the Dagster
definitions must load fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

EXPECTATIONS_DIR = Path(__file__).resolve().parents[2] / "expectations"


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    examples: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class SuiteOutcome:
    suite: str
    rows: int
    success: bool
    outcomes: list[ExpectationOutcome]

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def summary(self) -> str:
        if self.success:
            return f"{self.suite}: all {len(self.outcomes)} expectations met on {self.rows:,} rows"
        parts = [
            f"{o.expectation}({o.column or ''}): {o.unexpected_count} unexpected "
            f"({(o.unexpected_percent or 0):.2f}%), e.g. {o.examples[:3]}"
            for o in self.failed
        ]
        return (
            f"{self.suite}: {len(self.failed)} of {len(self.outcomes)} expectations failed: "
            + "; ".join(parts)
        )


def load_suite(name: str, directory: Path = EXPECTATIONS_DIR) -> dict:
    path = directory / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no expectation suite {path}")
    suite = json.loads(path.read_text())
    if not isinstance(suite.get("expectations"), list) or not suite["expectations"]:
        raise ValueError(f"{path}: a suite needs a non-empty 'expectations' list")
    return suite


def validate(df: pd.DataFrame, name: str, directory: Path = EXPECTATIONS_DIR) -> SuiteOutcome:
    """Validate `df` against the suite `name`; never raises on failed expectations."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    spec = load_suite(name, directory)
    context = gx.get_context(mode="ephemeral")
    # Its tqdm bars ignore TQDM_DISABLE; this is the switch that works.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas(f"adloop_{name}")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": df})
    )
    suite = gx.ExpectationSuite(name=spec.get("name", name))
    for exp in spec["expectations"]:
        suite.add_expectation_configuration(
            ExpectationConfiguration(type=exp["type"], kwargs=exp["kwargs"])
        )
    result = batch.validate(suite)
    outcomes = []
    for r in result.results:
        res = r.result or {}
        examples = [
            None if isinstance(v, float) and pd.isna(v) else v
            for v in res.get("partial_unexpected_list") or []
        ]
        outcomes.append(
            ExpectationOutcome(
                expectation=r.expectation_config.type,
                column=r.expectation_config.kwargs.get("column"),
                success=bool(r.success),
                element_count=res.get("element_count"),
                unexpected_count=res.get("unexpected_count"),
                unexpected_percent=res.get("unexpected_percent"),
                examples=examples[:5],
            )
        )
    return SuiteOutcome(suite=name, rows=len(df), success=bool(result.success), outcomes=outcomes)
