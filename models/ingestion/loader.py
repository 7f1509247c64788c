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
from models.ingestion.sources import Rows, Source, received_date

BATCH_LINES = 250_000
INTEGER_TYPES = ("BIGINT", "INTEGER")
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
    """Pull each contract column out of a JSON line as text; unknown keys go to extra_fields.

    Each line is parsed once (`json_transform` into a struct); `->>` per column would re-parse.
    """
    known = [c for c in contract.columns if c != "extra_fields"]
    known_list = "[" + ", ".join(f"'{c}'" for c in known) + "]"
    structure = "{" + ", ".join(f'"{c}": "VARCHAR"' for c in known) + "}"
    cols = ",\n".join(f"nullif(trim(_s.{c}), '') as {c}" for c in known)
    extra = ""
    if "extra_fields" in contract.columns:
        # A merge patch with null for every known key leaves exactly the unknown ones.
        drop_known = "{" + ", ".join(f'"{c}": null' for c in known) + "}"
        extra = f""",
        case when json_type(_j) = 'OBJECT' and _has_extra
             then json_merge_patch(_j, '{drop_known}')::varchar
        end as extra_fields"""
    return f"""
        select _source_file, _line_number, _original, _received_date,
            case when _parse_error is not null then _parse_error
                 when _j is null then 'malformed JSON'
                 when json_type(_j) <> 'OBJECT' then 'JSON value is not an object'
            end as _err0,
            {cols}{extra}
        from (
            select *, json_transform(_j, '{structure}') as _s,
                   len(list_filter(json_keys(_j), lambda k: not list_contains({known_list}, k))) > 0 as _has_extra
            from (select *, try_cast(_original as json) as _j from _candidates)
        )
    """


def _classify_sql(contract: Contract, fields_sql: str) -> str:
    """Type every column, then name every reason a row breaks the contract ('' when none)."""
    typed, checks = [], []
    for col, typ in contract.columns.items():
        if typ == "VARCHAR":
            typed.append(col)
            continue
        cast = f"try_cast({col} as {typ})"
        if typ in INTEGER_TYPES:
            # try_cast would round '12.5' and read '0x10' or '1_000'; only plain digits are integers.
            cast = f"case when regexp_full_match({col}, '[+-]?[0-9]+') then {cast} end"
        typed.append(f"{cast} as {col}")
        checks.append(
            f"case when _err0 is null and {col} is not null and {cast} is null "
            f"then '{col} is not a valid {typ.lower()}: ' || left({col}, 40) end"
        )
    for col in contract.required:
        checks.insert(
            0, f"case when _err0 is null and {col} is null then 'missing required field {col}' end"
        )
    rules = [
        f"case when _reason0 = '' and not coalesce(({r.sql}), true) then '{r.reason}' end"
        for r in contract.rules
    ]
    rule_sql = (
        "concat_ws('; ', nullif(_reason0, ''), " + ", ".join(rules) + ")" if rules else "_reason0"
    )
    return f"""
        select *, {rule_sql} as _reason from (
            select _source_file, _line_number, _original, _received_date,
                {", ".join(typed)},
                concat_ws('; ', _err0, {", ".join(checks) if checks else "null"}) as _reason0
            from ({fields_sql})
        )
    """


class _Batch:
    """Candidate rows of several files, column-wise, ready to hand to DuckDB as Arrow."""

    def __init__(self, contract: Contract) -> None:
        self.columns = () if contract.source == "tracking_events" else tuple(contract.columns)
        self.data: dict[str, list] = {
            k: []
            for k in ("_source_file", "_line_number", "_original", "_parse_error", "_received_date")
        }
        self.data.update({c: [] for c in self.columns})

    def __len__(self) -> int:
        return len(self.data["_line_number"])

    def extend(self, source_file: str, day: object, rows: Rows) -> None:
        n = len(rows)
        self.data["_source_file"].extend([source_file] * n)
        self.data["_received_date"].extend([None if day is None else str(day)] * n)
        self.data["_line_number"].extend(rows.line_number)
        self.data["_original"].extend(rows.original)
        self.data["_parse_error"].extend(rows.parse_error)
        for col in self.columns:
            self.data[col].extend(rows.values[col])

    def to_arrow(self) -> pa.Table:
        schema = pa.schema(
            [
                ("_source_file", pa.string()),
                ("_line_number", pa.int64()),
                ("_original", pa.string()),
                ("_parse_error", pa.string()),
                ("_received_date", pa.string()),
                *((c, pa.string()) for c in self.columns),
            ]
        )
        return pa.Table.from_pydict(self.data, schema=schema)


def _flush(
    conn: duckdb.DuckDBPyConnection,
    source: Source,
    batch: _Batch,
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
                conn.execute(
                    f"delete from {MANIFEST_TABLE} where source_file = ?", [report.source_file]
                )
        if len(batch):
            conn.register("_candidates", batch.to_arrow())
            fields_sql = (
                _json_fields_sql(contract)
                if source.reader.__name__ == "read_jsonl"
                else "select *, _parse_error as _err0 from _candidates"
            )
            conn.execute(
                f"create or replace temp table _classified as {_classify_sql(contract, fields_sql)}"
            )
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
                [
                    contract.source,
                    report.source_file,
                    content_hash,
                    size,
                    report.lines_read,
                    ok,
                    bad,
                    run_id,
                ],
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
        conn.execute(
            f"select source_file, content_hash from {MANIFEST_TABLE} where source = ?",
            [contract.source],
        ).fetchall()
    )
    report = LoadReport(source=contract.source)
    batch = _Batch(contract)
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
        rows = source.reader(path, contract)
        fr.lines_read = len(rows)
        batch.extend(rel, day, rows)
        report.files.append(fr)
        pending.append((fr, digest, path.stat().st_size))
        if len(batch) >= batch_lines:
            _flush(conn, source, batch, pending, run_id)
            log(f"{contract.source}: {i}/{len(files)} files, {report.rows_loaded:,} rows loaded")
            batch, pending = _Batch(contract), []
    if pending:
        _flush(conn, source, batch, pending, run_id)
    log(
        f"{contract.source}: {report.files_loaded} files loaded, {report.files_unchanged} unchanged; "
        f"{report.rows_loaded:,} rows loaded, {report.rows_quarantined:,} quarantined"
    )
    return report
