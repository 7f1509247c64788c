"""The daily partitions of event ingestion and event staging (by arrival day, UTC)."""

from __future__ import annotations

import os
from datetime import date, timedelta

import dagster as dg

EVENTS_START_DATE_ENV = "ADLOOP_EVENTS_START_DATE"
# The simulator's default start; a real deployment sets the first day its tracker delivered.
DEFAULT_EVENTS_START_DATE = "2024-01-01"

events_partitions = dg.DailyPartitionsDefinition(
    start_date=os.environ.get(EVENTS_START_DATE_ENV, DEFAULT_EVENTS_START_DATE),
    timezone="UTC",
    end_offset=1,  # today's partition exists: trackers deliver through the day
)


def partition_days(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> tuple[date, date]:
    """First and last arrival day (inclusive) of the partitions this run covers."""
    window = context.partition_time_window
    return window.start.date(), (window.end - timedelta(days=1)).date()
