"""Weekly budget planning: response curves from MMM draws, the budget policy, the optimizer."""

from models.budget.curves import ResponseCurves
from models.budget.optimizer import (
    BudgetPlan,
    InfeasibleBudgetError,
    UnitBounds,
    allocate,
    optimize_budget,
    unit_bounds,
)
from models.budget.policy import (
    DEFAULT_POLICY_PATH,
    BudgetPolicy,
    ChannelLimits,
    canonical_sha256,
    load_budget_policy,
    policy_from_dict,
    policy_sha256,
)

__all__ = [
    "DEFAULT_POLICY_PATH",
    "BudgetPlan",
    "BudgetPolicy",
    "ChannelLimits",
    "InfeasibleBudgetError",
    "ResponseCurves",
    "UnitBounds",
    "allocate",
    "canonical_sha256",
    "load_budget_policy",
    "optimize_budget",
    "policy_from_dict",
    "policy_sha256",
    "unit_bounds",
]
