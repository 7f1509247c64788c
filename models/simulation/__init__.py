"""The market simulator: a synthetic advertiser's landing data with its ground truth, and the
closed loop that continues it week by week from the budgets an ad platform holds."""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Exported lazily: `models.simulation.config` is imported by modules that the closed loop
# itself imports (the budget policy), so importing everything here would be circular.
_EXPORTS = {
    "SimulationConfig": "config",
    "ChannelTruth": "config",
    "DirtRates": "config",
    "ExperimentPlan": "config",
    "SimulationResult": "generator",
    "simulate": "generator",
    "Market": "market",
    "ClosedLoopError": "closed_loop",
    "WeekResult": "closed_loop",
    "actuated_units": "closed_loop",
    "budget_targets": "closed_loop",
    "extend_simulation": "closed_loop",
    "load_market": "closed_loop",
    "load_market_state": "closed_loop",
    "true_response_curves": "closed_loop",
    "true_weekly_contribution": "closed_loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"models.simulation.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'models.simulation' has no attribute {name!r}")
