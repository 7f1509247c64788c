"""Landing sources: where each source's files lie and how a file becomes candidate rows.

A reader turns one file into candidate rows, column-wise: the line (or record) number, the
original text, a parse error where the text could not be read at all, and (except for JSON
Lines, which DuckDB parses vectorised) each contract column as a string.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from models.ingestion.contracts import (
    CAMPAIGNS,
    CREATIVE_SERVING,
    CREATIVES,
    CRM_ORDERS,
    EXPERIMENTS,
    FX_RATES,
    GOOGLE_ADS,
    META_ADS,
    OFFLINE_MEDIA,
    PROMOTIONS,
    TRACKING_EVENTS,
    Contract,
)


class Rows:
    """Candidate rows of one file, column by column."""

    def __init__(self, columns: tuple[str, ...] = ()) -> None:
        self.line_number: list[int] = []
        self.original: list[str] = []
        self.parse_error: list[str | None] = []
        self.values: dict[str, list[str | None]] = {c: [] for c in columns}

    def __len__(self) -> int:
        return len(self.line_number)

    def add(
        self, line_number: int, original: str, values: dict | None = None, error: str | None = None
    ):
        self.line_number.append(line_number)
        self.original.append(original)
        self.parse_error.append(error)
        for col, out in self.values.items():
            out.append(values.get(col) if values else None)


Reader = Callable[[Path, Contract], Rows]


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def read_csv(path: Path, contract: Contract) -> Rows:
    """CSV with a header; source names like `metrics.cost_micros` map to `metrics_cost_micros`."""
    rows = Rows(tuple(contract.columns))
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    if not lines:
        return rows
    header = [h.strip().replace(".", "_") for h in next(csv.reader([lines[0]]))]
    unknown = [h for h in header if h not in contract.columns]
    missing = [c for c in contract.required if c not in header]
    if missing:
        # The whole file breaks the contract: every data line is quarantined with the reason.
        reason = f"header lacks required columns {missing}"
        for n, line in enumerate(lines[1:], start=2):
            rows.add(n, line, error=reason)
        return rows
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            rows.add(n, line, error="empty line")
            continue
        try:
            fields = next(csv.reader(io.StringIO(line)))
        except csv.Error as exc:
            rows.add(n, line, error=f"unparseable CSV: {exc}")
            continue
        if len(fields) != len(header):
            rows.add(n, line, error=f"expected {len(header)} fields, got {len(fields)}")
            continue
        rows.add(
            n, line, {h: _clean(v) for h, v in zip(header, fields, strict=True) if h not in unknown}
        )
    return rows


def read_jsonl(path: Path, contract: Contract) -> Rows:
    """JSON Lines: one candidate per line; the JSON itself is checked in DuckDB."""
    rows = Rows()
    rows.original = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows.line_number = list(range(1, len(rows.original) + 1))
    rows.parse_error = [None] * len(rows.original)
    return rows


def _meta_action(record: dict, field: str) -> str | None:
    for action in record.get(field) or []:
        if isinstance(action, dict) and action.get("action_type") == "purchase":
            return None if action.get("value") is None else str(action["value"])
    return None


def read_meta_insights(path: Path, contract: Contract) -> Rows:
    """A Meta Insights API page: {"data": [...]}; the record number stands for the line number.

    A file that is not valid JSON is one quarantined row holding the whole text.
    """
    rows = Rows(tuple(contract.columns))
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        rows.add(0, text, error=f"file is not valid JSON: {exc}")
        return rows
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        rows.add(0, text, error='file has no "data" list')
        return rows
    for n, record in enumerate(doc["data"], start=1):
        original = json.dumps(record, sort_keys=True)
        if not isinstance(record, dict):
            rows.add(n, original, error="record is not an object")
            continue
        values = {
            k: _clean(None if record.get(k) is None else str(record[k])) for k in contract.columns
        }
        values["actions_purchase"] = _meta_action(record, "actions")
        values["action_values_purchase"] = _meta_action(record, "action_values")
        rows.add(n, original, values)
    return rows


@dataclass(frozen=True)
class Source:
    contract: Contract
    pattern: str  # glob under the landing folder
    reader: Reader
    partitioned_by_day: bool = False

    @property
    def name(self) -> str:
        return self.contract.source

    def files(self, landing: Path) -> list[Path]:
        return sorted(p for p in landing.glob(self.pattern) if p.is_file())


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(TRACKING_EVENTS, "events/date=*/*.jsonl", read_jsonl, partitioned_by_day=True),
        Source(GOOGLE_ADS, "google_ads/*.csv", read_csv),
        Source(META_ADS, "meta_ads/*.json", read_meta_insights),
        Source(OFFLINE_MEDIA, "offline_media/*.csv", read_csv),
        Source(CRM_ORDERS, "crm/*.csv", read_csv),
        Source(CREATIVES, "reference/creatives.csv", read_csv),
        Source(CAMPAIGNS, "reference/campaigns.csv", read_csv),
        Source(EXPERIMENTS, "reference/experiments.csv", read_csv),
        Source(PROMOTIONS, "reference/promotions.csv", read_csv),
        Source(FX_RATES, "fx/*.csv", read_csv),
        Source(CREATIVE_SERVING, "creative_serving/*.csv", read_csv),
    )
}

LANDING_PATH_ENV = "ADLOOP_LANDING_PATH"
_DAY_FOLDER = re.compile(r"date=(\d{4}-\d{2}-\d{2})")


def received_date(path: Path) -> date:
    """The arrival day of an events file, from its `date=YYYY-MM-DD` folder."""
    m = _DAY_FOLDER.search(path.as_posix())
    if not m:
        raise ValueError(f"{path}: events files must lie under a date=YYYY-MM-DD folder")
    return date.fromisoformat(m.group(1))


def event_days(landing: Path) -> list[date]:
    """Every arrival day that has an events file, in order."""
    return sorted({received_date(p) for p in SOURCES["tracking_events"].files(landing)})


def event_files_for_days(landing: Path, first: date, last: date) -> list[Path]:
    """Events files whose arrival day lies in [first, last]."""
    return [
        p for p in SOURCES["tracking_events"].files(landing) if first <= received_date(p) <= last
    ]
