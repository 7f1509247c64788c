"""Blocking data-quality gates: Great Expectations suites on raw events, conformed spend and
the MMM panel. When one fails, nothing downstream of it materialises in that run."""

import dagster as dg
import pandas as pd
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from assets.metadata import markdown_table
from assets.resources import Warehouse
from models.quality.expectations import SuiteOutcome, validate


def _metadata(outcome: SuiteOutcome) -> dict:
    rows = [
        (o.expectation, o.column, "pass" if o.success else "FAIL", o.unexpected_count,
         None if o.unexpected_percent is None else round(o.unexpected_percent, 3), str(o.examples[:3]))
        for o in outcome.outcomes
    ]  # fmt: skip
    return {
        "suite": outcome.suite,
        "rows_validated": outcome.rows,
        "expectations_failed": len(outcome.failed),
        "summary": outcome.summary(),
        "results": dg.MetadataValue.md(
            markdown_table(
                ["expectation", "column", "result", "unexpected", "unexpected %", "examples"], rows
            )
        ),
    }


def _result(outcome: SuiteOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=outcome.summary(),
        metadata=_metadata(outcome),
    )


def _frame(warehouse: Warehouse, sql: str, params: list | None = None) -> pd.DataFrame:
    """Query into Arrow-backed pandas: a third of the memory of object columns, same speed in GE."""
    with warehouse.connect() as conn:
        return (
            conn.sql(sql, params=params or None)
            .to_arrow_table()
            .to_pandas(types_mapper=pd.ArrowDtype)
        )


def _run_days(context: dg.AssetCheckExecutionContext) -> tuple[str, str] | None:
    """The arrival days this run loaded, from its partition tags; None for an unpartitioned run."""
    tags = context.run.tags
    if ASSET_PARTITION_RANGE_START_TAG in tags:
        return tags[ASSET_PARTITION_RANGE_START_TAG], tags[ASSET_PARTITION_RANGE_END_TAG]
    if PARTITION_NAME_TAG in tags:
        return tags[PARTITION_NAME_TAG], tags[PARTITION_NAME_TAG]
    return None


@dg.asset_check(
    asset=dg.AssetKey(["raw", "tracking_events"]),
    name="great_expectations_raw_events",
    blocking=True,
)
def raw_events_expectations(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse
) -> dg.AssetCheckResult:
    """Suite expectations/raw_tracking_events.json on the events of the arrival days in this run."""
    days = _run_days(context)
    where, params = ("where _received_date between ? and ?", list(days)) if days else ("", [])
    df = _frame(
        warehouse,
        f"""select event_id, event_type, geo, platform, session_id, revenue, currency
            from raw.tracking_events {where}""",
        params,
    )
    return _result(validate(df, "raw_tracking_events"))


@dg.asset_check(
    asset=dg.AssetKey(["intermediate", "int_ad_spend__conformed"]), name="great_expectations_conformed_spend",
    blocking=True,
)  # fmt: skip
def conformed_spend_expectations(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Suite expectations/conformed_spend.json on all conformed ad spend; blocks the marts."""
    df = _frame(warehouse, "select * from intermediate.int_ad_spend__conformed")
    return _result(validate(df, "conformed_spend"))


@dg.asset_check(
    asset=dg.AssetKey(["marts", "mart_mmm_weekly_panel"]),
    name="great_expectations_mmm_panel",
    blocking=True,
)
def mmm_panel_expectations(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Suite expectations/mmm_panel.json on the weekly panel every MMM fit reads."""
    df = _frame(warehouse, "select * from marts.mart_mmm_weekly_panel")
    return _result(validate(df, "mmm_panel"))


quality_checks = [raw_events_expectations, conformed_spend_expectations, mmm_panel_expectations]
