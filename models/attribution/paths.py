"""Multi-touch paths as the attribution methods take them: parsed, validated, empty rows counted."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

VALUES: tuple[str, ...] = ("conversions", "revenue_usd")
PATH_COLUMNS: tuple[str, ...] = ("path", "channel_path")  # the brief's name, then the dbt model's


@dataclass(frozen=True, eq=False)
class PathSet:
    """Non-empty paths with what each one is worth; rows with empty paths are only counted."""

    paths: tuple[tuple[str, ...], ...]
    converted: np.ndarray  # bool [n]
    value: np.ndarray  # float [n]: 1 or revenue for converters, 0 otherwise
    value_name: str  # "conversions" or "revenue_usd"
    channels: tuple[str, ...]  # distinct channels of the non-empty paths, sorted
    n_empty: int  # rows left out because their path was empty or null
    n_missing_revenue: int  # converters whose revenue was null, counted as 0

    @property
    def total(self) -> float:
        return float(self.value.sum())

    def __len__(self) -> int:
        return len(self.paths)


def _parse_path(raw: object, row: int) -> tuple[str, ...]:
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return ()
    if isinstance(raw, str):
        # A string would be iterated as characters: the joined `path_string` was passed by mistake.
        raise ValueError(f"row {row}: path must be a list of channel names, got the string {raw!r}")
    if not isinstance(raw, list | tuple | np.ndarray | pd.Series):
        raise ValueError(
            f"row {row}: path must be a list of channel names, got {type(raw).__name__}"
        )
    out = tuple(raw)
    bad = [c for c in out if not isinstance(c, str) or not c]
    if bad:
        raise ValueError(f"row {row}: path holds non-channel values {bad!r}; expected strings")
    return out


def prepare_paths(
    frame: pd.DataFrame, value: str = "revenue_usd", path_col: str | None = None
) -> PathSet:
    """Validate a frame of user paths (`path` or `channel_path`, `converted`, `revenue_usd`)."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"paths must be a pandas DataFrame, got {type(frame).__name__}")
    if value not in VALUES:
        raise ValueError(f"value must be one of {VALUES}, got {value!r}")
    if path_col is None:
        path_col = next((c for c in PATH_COLUMNS if c in frame.columns), None)
        if path_col is None:
            raise ValueError(f"paths needs a path column, one of {PATH_COLUMNS}")
    needed = [path_col, "converted"] + (["revenue_usd"] if value == "revenue_usd" else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"paths is missing columns {missing}")

    converted_raw = frame["converted"]
    if converted_raw.isna().any():
        raise ValueError(f"converted has {int(converted_raw.isna().sum())} null values")
    converted = converted_raw.to_numpy().astype(bool)
    if value == "revenue_usd":
        revenue = pd.to_numeric(frame["revenue_usd"], errors="raise").to_numpy(dtype=float)
        if (revenue < 0).any():
            raise ValueError(f"revenue_usd has {int((revenue < 0).sum())} negative values")
        missing_revenue = converted & np.isnan(revenue)
        worth = np.where(converted, np.nan_to_num(revenue, nan=0.0), 0.0)
    else:
        missing_revenue = np.zeros(len(frame), dtype=bool)
        worth = converted.astype(float)

    parsed = [_parse_path(p, i) for i, p in enumerate(frame[path_col].tolist())]
    keep = np.array([len(p) > 0 for p in parsed], dtype=bool)
    paths = tuple(p for p, k in zip(parsed, keep, strict=True) if k)
    return PathSet(
        paths=paths,
        converted=converted[keep],
        value=worth[keep],
        value_name=value,
        channels=tuple(sorted({c for p in paths for c in p})),
        n_empty=int((~keep).sum()),
        n_missing_revenue=int(missing_revenue[keep].sum()),
    )
