"""Action proposals and the policy engine that judges them under `policies/actuation.yaml`."""

from models.policy.config import (
    DEFAULT_POLICY_PATH,
    ActionTypePolicy,
    ActuationPolicy,
    Blackout,
    ChannelPolicy,
    PeriodLimit,
    StopLossRule,
    load_actuation_policy,
    policy_from_dict,
    policy_sha256,
)
from models.policy.engine import (
    OUTCOMES,
    AppliedChange,
    Check,
    StopLossResult,
    Verdict,
    evaluate,
    evaluate_stop_loss,
)
from models.policy.proposal import PROPOSAL_SCHEMA, UNIT_USD_PER_DAY, ActionProposal, change_ratio

__all__ = [
    "DEFAULT_POLICY_PATH",
    "OUTCOMES",
    "PROPOSAL_SCHEMA",
    "UNIT_USD_PER_DAY",
    "ActionProposal",
    "ActionTypePolicy",
    "ActuationPolicy",
    "AppliedChange",
    "Blackout",
    "ChannelPolicy",
    "Check",
    "PeriodLimit",
    "StopLossResult",
    "StopLossRule",
    "Verdict",
    "change_ratio",
    "evaluate",
    "evaluate_stop_loss",
    "load_actuation_policy",
    "policy_from_dict",
    "policy_sha256",
]
