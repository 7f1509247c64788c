"""dbt models as Dagster assets: keys and groups from the dbt folders, dbt tests as checks.

Three `@dbt_assets` so Dagster can gate between them: the events staging model (partitioned
by arrival day, one run per backfill), staging and intermediate, and the marts. A blocking
data-quality check on an intermediate model thus stops the marts from being built.
"""

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from assets.metadata import preview
from assets.partitions import events_partitions, partition_days
from assets.resources import Warehouse

DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"
PARTITIONED_TAG = "partitioned_by_day"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
# Under `dagster dev` this runs `dbt parse` so the manifest follows the SQL; elsewhere the
# manifest is prepared by the build (`make prepare`) and never committed.
dbt_project.prepare_if_dev()


class AdloopDbtTranslator(DagsterDbtTranslator):
    """Sources are the raw tables the ingestion assets write; models are keyed by layer."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey(["raw", dbt_resource_props["name"]])
        return dg.AssetKey([_layer(dbt_resource_props), dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return "ingestion"
        return _layer(dbt_resource_props)


def _layer(props: Mapping[str, Any]) -> str:
    fqn = props.get("fqn") or []
    return fqn[1] if len(fqn) > 2 else "dbt"


translator = AdloopDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))
# The partitioned events model's dbt tests still run inside its `dbt build` (a failing test fails
# the step, so nothing downstream builds), but they are not modelled as Dagster checks: checks on
# a partitioned asset are planned per partition, ~25 tests x 728 days = 18k events per backfill,
# which made a two-year backfill spend minutes before its first step.
event_translator = AdloopDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=False)
)


def _manifest() -> Path:
    path = dbt_project.manifest_path
    if not path.exists():
        raise FileNotFoundError(
            f"dbt manifest {path} is missing: run `make prepare` (dbt parse) before loading the definitions"
        )
    return path


def with_table_metadata(
    context: dg.AssetExecutionContext,
    events: Iterator,
    warehouse: Warehouse,
    previews: bool = False,
) -> Iterator:
    """Add row counts (and, for marts, a preview) to each model's output.

    dbt holds DuckDB's single write lock while it runs, so the tables are read once the dbt
    command has finished: its events are held until then (seconds; the logs stream live).
    """
    buffered, failure = [], None
    try:
        buffered.extend(events)
    except Exception as exc:  # a failed dbt build: record what did build, then fail the step
        failure = exc
    with warehouse.connect() as conn:
        for event in buffered:
            if isinstance(event, dg.Output):
                schema, table = context.asset_key_for_output(event.output_name).path[-2:]
                extra = {
                    "dagster/row_count": conn.execute(
                        f"select count(*) from {schema}.{table}"
                    ).fetchone()[0]
                }
                if previews:
                    extra["preview"] = preview(conn, f"select * from {schema}.{table} limit 5")
                event = event.with_metadata({**event.metadata, **extra})
            yield event
    if failure is not None:
        raise failure


@dbt_assets(
    manifest=_manifest(),
    select=f"tag:{PARTITIONED_TAG}",
    partitions_def=events_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    dagster_dbt_translator=event_translator,
    project=dbt_project,
    name="dbt_event_models",
)
def dbt_event_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
    """Event staging, incremental by arrival day: only the days in this run are replaced."""
    first, last = partition_days(context)
    dbt_vars = {"min_received_date": first.isoformat(), "max_received_date": last.isoformat()}
    events = dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context).stream()
    yield from with_table_metadata(context, events, warehouse)


@dbt_assets(
    manifest=_manifest(),
    select="path:models/staging path:models/intermediate",
    exclude=f"tag:{PARTITIONED_TAG}",
    dagster_dbt_translator=translator,
    project=dbt_project,
    name="dbt_staging_models",
)
def dbt_staging_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse
):
    """Staging views and intermediate models (sessions, paths, conformed spend)."""
    yield from with_table_metadata(context, dbt.cli(["build"], context=context).stream(), warehouse)


@dbt_assets(
    manifest=_manifest(),
    select="path:models/marts",
    dagster_dbt_translator=translator,
    project=dbt_project,
    name="dbt_mart_models",
)
def dbt_mart_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
    """The marts BI tools read."""
    events = dbt.cli(["build"], context=context).stream()
    yield from with_table_metadata(context, events, warehouse, previews=True)
