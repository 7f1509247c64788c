"""The budget targets file: which platform object carries each channel × geo budget.

One row per budget the loop may change, with the columns of `BudgetTarget` (platform,
account_id, target_id, channel, geo, currency, name). Real accounts keep this mapping beside
their campaign set-up; the simulator writes it for the sandbox as
`landing/reference/budget_targets.csv`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from connectors.ad_platforms.base import BudgetTarget

TARGETS_FILE = "reference/budget_targets.csv"
COLUMNS = ("platform", "account_id", "target_id", "channel", "geo", "currency", "name")


def read_targets(path: str | Path) -> list[BudgetTarget]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no budget targets at {path}: it maps each channel × geo budget to its platform "
            f"object (columns {', '.join(COLUMNS)}); `adloop simulate` writes one for the sandbox"
        )
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}")
    targets = []
    for i, row in enumerate(rows, start=2):
        try:
            targets.append(BudgetTarget(**{c: str(row[c]).strip() for c in COLUMNS}))
        except ValueError as exc:
            raise ValueError(f"{path}:{i}: {exc}") from None
    keys = [(t.channel, t.geo) for t in targets]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{path} maps a channel × geo to more than one budget")
    return targets


def write_targets(path: str | Path, targets: Iterable[Mapping[str, Any]]) -> Path:
    """Write the mapping (extra keys such as `amount` and `status` are left out)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for t in targets:
            writer.writerow({c: t[c] for c in COLUMNS})
    return path
