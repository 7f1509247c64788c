"""Actuation: turning allowed and approved proposals into ad-platform calls, exactly once."""

from models.actuation.executor import (
    AMOUNT,
    STATUS,
    Action,
    ActionResult,
    Actuator,
    KillSwitchEngaged,
    RunSummary,
)
from models.actuation.gates import (
    DailyCapGate,
    Gate,
    GateResult,
    canary_gate,
    kill_switch_gate,
    upstream_checks_gate,
    verdict_gate,
)
from models.actuation.ledger import FINAL_STATES, STATES, Ledger, LedgerEntry, MemoryLedger
from models.actuation.units import to_platform_amount, to_usd

__all__ = [
    "AMOUNT",
    "FINAL_STATES",
    "STATES",
    "STATUS",
    "Action",
    "ActionResult",
    "Actuator",
    "DailyCapGate",
    "Gate",
    "GateResult",
    "KillSwitchEngaged",
    "Ledger",
    "LedgerEntry",
    "MemoryLedger",
    "RunSummary",
    "canary_gate",
    "kill_switch_gate",
    "to_platform_amount",
    "to_usd",
    "upstream_checks_gate",
    "verdict_gate",
]
