"""Load landing files into `raw`, quarantining what breaks the contract; idempotent by content hash.

For every file: lines read = rows loaded + rows quarantined, or the load fails. A file whose
path and content hash are already in `raw.load_manifest` is skipped; a file whose content
changed replaces the rows it loaded before (a corrected delivery).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from models.ingestion.contracts import Contract
from models.ingestion.sources import Candidate, Source, received_date

BATCH_LINES = 250_000
QUARANTINE_TABLE = "quarantine.rejected_rows"
MANIFEST_TABLE = "raw.load_manifest"

Log = Callable[[str], None]


class IngestionError(RuntimeError):
    """A load could not account for every line it read."""


@dataclass
class FileReport:
    source_file: str
    status: str  # "loaded", "reloaded" or "unchanged"
    lines_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0


@dataclass
class LoadReport:
    source: str
    files: list[FileReport] = field(default_factory=list)

    def _sum(self, attr: str) -> int:
        return sum(getattr(f, attr) for f in self.files)

    @property
    def lines_read(self) -> int:
        return self._sum("lines_read")

    @property
    def rows_loaded(self) -> int:
        return self._sum("rows_loaded")

    @property
    def rows_quarantined(self) -> int:
        return self._sum("rows_quarantined")

    @property
    def files_loaded(self) -> int:
        return sum(f.status != "unchanged" for f in self.files)

    @property
    def files_unchanged(self) -> int:
        return sum(f.status == "unchanged" for f in self.files)


def ensure_tables(conn: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    conn.execute("create schema if not exists raw")
    conn.execute("create schema if not exists quarantine")
    conn.execute(contract.ddl())
    conn.execute(
        f"""create table if not exists {MANIFEST_TABLE} (
            source varchar, source_file varchar primary key, content_hash varchar, size_bytes bigint,
            lines_read bigint, rows_loaded bigint, rows_quarantined bigint,
            loaded_at timestamp, run_id varchar)"""
    )
    conn.execute(
        f"""create table if not exists {QUARANTINE_TABLE} (
            source varchar, source_file varchar, line_number bigint, original_text varchar,
            reason varchar, quarantined_at timestamp, run_id varchar)"""
    )


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_fields_sql(contract: Contract) -> str:
    """Pull each contract column out of a JSON line as text; unknown keys go to extra_fields."""
    known = [c for c in contract.columns if c != "extra_fields"]
    known_list = "[" + ", ".join(f"'{c}'" for c in known) + "]"
    cols = ",\n".join(
        f"case when json_type(_j) = 'OBJECT' then nullif(trim(_j->>'{c}'), '') end as {c}" for c in known
    )
    extra = ""
    if "extra_fields" in contract.columns:
        extra = f""",
        case when json_type(_j) = 'OBJECT'
              and len(list_filter(json_keys(_j), lambda k: not list_contains({known_list}, k))) > 0
             then map_from_entries(list_transform(
                    list_filter(json_keys(_j), lambda k: not list_contains({known_list}, k)),
                    lambda k: {{'key': k, 'value': json_extract(_j, '$."' || k || '"')}}))::json::varchar
        end as extra_fields"""
    return f"""
        select _source_file, _line_number, _original, _received_date,
            case when _parse_error is not null then _parse_error
                 when _j is null then 'malformed JSON'
                 when json_type(_j) <> 'OBJECT' then 'JSON value is not an object'
            end as _err0,
            {cols}{extra}
        from (select *, try_cast(_original as json) as _j from _candidates)
    """


def _classify_sql(contract: Contract, fields_sql: str) -> str:
    """Type every column, then name every reason a row breaks the contract ('' when none)."""
    typed, checks = [], []
    for col, typ in contract.columns.items():
        if typ == "VARCHAR":
            typed.append(col)
        else:
            typed.append(f"try_cast({col} as {typ}) as {col}")
            checks.append(
                f"case when _err0 is null and {col} is not null and try_cast({col} as {typ}) is null "
                f"then '{col} is not a valid {typ.lower()}: ' || left({col}, 40) end"
            )
    for col in contract.required:
        checks.insert(0, f"case when _err0 is null and {col} is null then 'missing required field {col}' end")
    rules = [
        f"case when _reason0 = '' and not coalesce(({r.sql}), true) then '{r.reason}' end" for r in contract.rules
    ]
    rule_sql = "concat_ws('; ', nullif(_reason0, ''), " + ", ".join(rules) + ")" if rules else "_reason0"
    return f"""
        select *, {rule_sql} as _reason from (
            select _source_file, _line_number, _original, _received_date,
                {", ".join(typed)},
                concat_ws('; ', _err0, {", ".join(checks) if checks else "null"}) as _reason0
            from ({fields_sql})
        )
    """


def _candidates_table(contract: Contract, rows: list[tuple[str, Candidate, object]]) -> pa.Table:
    data: dict[str, list] = {
        "_source_file": [r[0] for r in rows],
        "_line_number": [r[1].line_number for r in rows],
        "_original": [r[1].original for r in rows],
        "_parse_error": [r[1].parse_error for r in rows],
        "_received_date": [r[2] for r in rows],
    }
    if not contract.source == "tracking_events":
        for col in contract.columns:
            data[col] = [(r[1].values or {}).get(col) for r in rows]
    schema = pa.schema(
        [
            ("_source_file", pa.string()),
            ("_line_number", pa.int64()),
            ("_original", pa.string()),
            ("_parse_error", pa.string()),
            ("_received_date", pa.date32()),
            *((c, pa.string()) for c in data if not c.startswith("_")),
        ]
    )
    return pa.Table.from_pydict(data, schema=schema)


def _flush(
    conn: duckdb.DuckDBPyConnection,
    source: Source,
    rows: list[tuple[str, Candidate, object]],
    pending: list[tuple[FileReport, str, int]],
    run_id: str,
) -> None:
    contract = source.contract
    conn.begin()
    try:
        for report, _, _ in pending:
            if report.status == "reloaded":
                for table in (contract.qualified_table, QUARANTINE_TABLE):
                    conn.execute(f"delete from {table} where _source_file = ?" if table != QUARANTINE_TABLE
                                 else f"delete from {table} where source_file = ?", [report.source_file])  # fmt: skip
                conn.execute(f"delete from {MANIFEST_TABLE} where source_file = ?", [report.source_file])
        if rows:
            cand = _candidates_table(contract, rows)  # noqa: F841 - read by DuckDB below
            conn.register("_candidates", cand)
            fields_sql = (
                _json_fields_sql(contract)
                if source.reader.__name__ == "read_jsonl"
                else "select *, _parse_error as _err0 from _candidates"
            )
            conn.execute(f"create or replace temp table _classified as {_classify_sql(contract, fields_sql)}")
            conn.unregister("_candidates")
            cols = list(contract.columns)
            lineage = ["_source_file", "_line_number"]
            if "_received_date" in contract.extra_lineage:
                lineage.append("_received_date")
            conn.execute(
                f"""insert into {contract.qualified_table} ({", ".join(cols + lineage)}, _loaded_at)
                    select {", ".join(cols + lineage)}, now()::timestamp from _classified where _reason = ''"""
            )
            conn.execute(
                f"""insert into {QUARANTINE_TABLE}
                    select ?, _source_file, _line_number, _original, _reason, now()::timestamp, ?
                    from _classified where _reason <> ''""",
                [contract.source, run_id],
            )
            counts = dict(
                (f, (ok, bad))
                for f, ok, bad in conn.execute(
                    """select _source_file, count(*) filter (where _reason = ''),
                              count(*) filter (where _reason <> '') from _classified group by 1"""
                ).fetchall()
            )
            conn.execute("drop table _classified")
        else:
            counts = {}
        for report, content_hash, size in pending:
            ok, bad = counts.get(report.source_file, (0, 0))
            report.rows_loaded, report.rows_quarantined = ok, bad
            if ok + bad != report.lines_read:
                raise IngestionError(
                    f"{report.source_file}: read {report.lines_read} lines but loaded {ok} "
                    f"and quarantined {bad}; nothing from this batch was kept"
                )
            conn.execute(
                f"insert into {MANIFEST_TABLE} values (?, ?, ?, ?, ?, ?, ?, now()::timestamp, ?)",
                [contract.source, report.source_file, content_hash, size, report.lines_read, ok, bad, run_id],
            )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def load_files(
    conn: duckdb.DuckDBPyConnection,
    source: Source,
    files: Iterable[Path],
    landing: Path,
    *,
    run_id: str = "manual",
    log: Log = lambda _msg: None,
    batch_lines: int = BATCH_LINES,
) -> LoadReport:
    """Load `files` of one source; unchanged files are skipped, changed ones replaced."""
    contract = source.contract
    ensure_tables(conn, contract)
    known = dict(
        conn.execute(f"select source_file, content_hash from {MANIFEST_TABLE} where source = ?", [contract.source])
        .fetchall()
    )
    report = LoadReport(source=contract.source)
    rows: list[tuple[str, Candidate, object]] = []
    pending: list[tuple[FileReport, str, int]] = []
    files = list(files)
    for i, path in enumerate(files, start=1):
        rel = path.relative_to(landing).as_posix()
        digest = file_hash(path)
        if known.get(rel) == digest:
            report.files.append(FileReport(rel, "unchanged"))
            continue
        fr = FileReport(rel, "reloaded" if rel in known else "loaded")
        day = received_date(path) if source.partitioned_by_day else None
        n_before = len(rows)
        rows.extend((rel, cand, day) for cand in source.reader(path, contract))
        fr.lines_read = len(rows) - n_before
        report.files.append(fr)
        pending.append((fr, digest, path.stat().st_size))
        if len(rows) >= batch_lines:
            _flush(conn, source, rows, pending, run_id)
            log(f"{contract.source}: {i}/{len(files)} files, {report.rows_loaded:,} rows loaded")
            rows, pending = [], []
    if pending:
        _flush(conn, source, rows, pending, run_id)
    log(
        f"{contract.source}: {report.files_loaded} files loaded, {report.files_unchanged} unchanged; "
        f"{report.rows_loaded:,} rows loaded, {report.rows_quarantined:,} quarantined"
    )
    return report
