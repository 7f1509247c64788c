"""Ingestion: landing files into the `raw` schema, malformed rows into `quarantine`.

Events are partitioned by arrival day so a late or corrected file re-processes only the
days it touches; every other source is small and loaded whole. Loading is idempotent: a
file already loaded with the same content is skipped.
"""

import dagster as dg

from assets.metadata import preview
from assets.partitions import events_partitions, partition_days
from assets.resources import LandingZone, Warehouse
from models.ingestion.loader import MANIFEST_TABLE, QUARANTINE_TABLE, LoadReport, load_files
from models.ingestion.sources import SOURCES, Source, event_files_for_days

INGESTION_GROUP = "ingestion"


def _result(report: LoadReport, conn, source: Source) -> dg.MaterializeResult:
    table = source.contract.qualified_table
    return dg.MaterializeResult(
        metadata={
            "files_loaded": report.files_loaded,
            "files_unchanged": report.files_unchanged,
            "lines_read": report.lines_read,
            "rows_loaded": report.rows_loaded,
            "rows_quarantined": report.rows_quarantined,
            "dagster/row_count": conn.execute(f"select count(*) from {table}").fetchone()[0],
            "quarantine_reasons": preview(
                conn,
                f"""select reason, count(*) as n from {QUARANTINE_TABLE} where source = ?
                    group by 1 order by 2 desc limit 10""",
                [source.name],
            ),
            "preview": preview(conn, f"select * exclude (_loaded_at) from {table} limit 5"),
        }
    )


@dg.asset(
    key=["raw", "tracking_events"],
    group_name=INGESTION_GROUP,
    partitions_def=events_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"python", "duckdb"},
)
def raw_tracking_events(
    context: dg.AssetExecutionContext, warehouse: Warehouse, landing: LandingZone
) -> dg.MaterializeResult:
    """Web and app tracking events (JSON Lines), by arrival day. Unparseable lines and lines
    that break the raw contract go to quarantine.rejected_rows with the original text."""
    source = SOURCES["tracking_events"]
    first, last = partition_days(context)
    files = event_files_for_days(landing.root, first, last)
    context.log.info(f"{len(files)} event files arrived between {first} and {last}")
    with warehouse.connect() as conn:
        report = load_files(
            conn, source, files, landing.root, run_id=context.run_id, log=context.log.info
        )
        return _result(report, conn, source)


def _build_raw_asset(source: Source) -> dg.AssetsDefinition:
    contract = source.contract

    @dg.asset(
        key=["raw", contract.table],
        group_name=INGESTION_GROUP,
        kinds={"python", "duckdb"},
        description=f"Landing files `{source.pattern}` loaded into raw.{contract.table}; rows "
        "that break the raw contract are quarantined with their reason.",
    )
    def _asset(context: dg.AssetExecutionContext, warehouse: Warehouse, landing: LandingZone):
        with warehouse.connect() as conn:
            files = source.files(landing.root)
            report = load_files(
                conn, source, files, landing.root, run_id=context.run_id, log=context.log.info
            )
            return _result(report, conn, source)

    return _asset


raw_source_assets = [
    _build_raw_asset(s) for name, s in SOURCES.items() if name != "tracking_events"
]


def _build_reconciliation_check(source: Source) -> dg.AssetChecksDefinition:
    table = source.contract.qualified_table

    @dg.asset_check(
        asset=dg.AssetKey(["raw", source.contract.table]),
        name="every_line_accounted_for",
        blocking=True,
        description="For every loaded file: lines read = rows in raw + rows in quarantine.",
    )
    def _check(warehouse: Warehouse) -> dg.AssetCheckResult:
        with warehouse.connect() as conn:
            rows = conn.execute(
                f"""
                with m as (select source_file, lines_read from {MANIFEST_TABLE} where source = ?),
                     r as (select _source_file as source_file, count(*) as n from {table} group by 1),
                     q as (select source_file, count(*) as n from {QUARANTINE_TABLE} where source = ? group by 1)
                select m.source_file, m.lines_read, coalesce(r.n, 0), coalesce(q.n, 0)
                from m left join r using (source_file) left join q using (source_file)
                where m.lines_read <> coalesce(r.n, 0) + coalesce(q.n, 0)
                """,
                [source.name, source.name],
            ).fetchall()
            totals = conn.execute(
                f"select count(*), coalesce(sum(lines_read), 0) from {MANIFEST_TABLE} where source = ?",
                [source.name],
            ).fetchone()
        return dg.AssetCheckResult(
            passed=not rows,
            metadata={
                "files": totals[0],
                "lines_read": totals[1],
                "files_not_reconciled": len(rows),
                "first_mismatches": str(rows[:5]),
            },
        )

    return _check


reconciliation_checks = [_build_reconciliation_check(s) for s in SOURCES.values()]
