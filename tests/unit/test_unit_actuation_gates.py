"""The actuation gates on their own: canary first, the channel's daily cap, the policy verdict
with approvals, upstream checks, the kill switch; and the canary's outcome check on a warehouse."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd

from assets.actuation import _canary_widen
from connectors.ad_platforms.base import BudgetTarget
from models.actuation import (
    AMOUNT,
    Action,
    DailyCapGate,
    canary_gate,
    kill_switch_gate,
    upstream_checks_gate,
    verdict_gate,
)
from models.policy import ActionProposal, load_actuation_policy

WEEK = date(2026, 1, 5)


def _action(
    geo: str, usd: float = 120.0, *, canary: bool = False, channel: str = "search"
) -> Action:
    t = BudgetTarget("google_ads", "1", f"id-{geo}", channel, geo, "USD")
    p = ActionProposal(
        action_type="budget_change", platform="google_ads", account_id="1", target_id=t.target_id,
        channel=channel, current_value=100.0, proposed_value=usd, unit="usd_per_day",
        canary=canary, created_for=WEEK,
    )  # fmt: skip
    return Action(p, t, AMOUNT, int(usd * 1e6), usd, canary_group=channel)


def test_canary_changes_go_to_the_slice_first_and_widen_only_after_a_passed_check():
    slice_, elsewhere, plain = (
        _action("US-CA", canary=True),
        _action("US-TX", canary=True),
        _action("US-TX"),
    )
    waiting = canary_gate(["US-CA"], {})
    assert waiting(slice_).passed and waiting(plain).passed
    assert not waiting(elsewhere).passed and "waits for the canary" in waiting(elsewhere).detail
    # numpy booleans (what pandas comparisons give) count like Python ones
    assert canary_gate(["US-CA"], {"search": np.True_})(elsewhere).passed
    failed = canary_gate(["US-CA"], {"search": np.False_})(elsewhere)
    assert not failed.passed and "failed its outcome check" in failed.detail


def test_the_daily_cap_counts_every_budget_of_the_channel_and_earlier_passes():
    gate = DailyCapGate(
        {"search": 400.0}, {"k1": 100.0, "k2": 100.0}, {"k1": "search", "k2": "search"}
    )
    assert gate(_action("US-CA", 150.0)).passed  # 100 + 100 + 150 = 350
    over = gate(_action("US-TX", 60.0))  # 350 + 60: the budget passed before counts too
    assert not over.passed and "over its cap" in over.detail and "$50.00 left" in over.detail
    assert gate(_action("US-TX", 50.0)).passed


def test_policy_gate_needs_the_verdict_and_a_valid_approval_where_asked():
    a = _action("US-CA")
    h = a.proposal.proposal_hash
    assert verdict_gate({h: "allowed"}, {})(a).passed
    assert not verdict_gate({h: "rejected"}, {h: "approved"})(a).passed
    assert not verdict_gate({h: "needs_approval"}, {h: "pending"})(a).passed
    assert verdict_gate({h: "needs_approval"}, {h: "approved"})(a).passed
    assert not verdict_gate({}, {})(a).passed


def test_upstream_checks_and_kill_switch_gates_name_what_stopped_them():
    a = _action("US-CA")
    assert upstream_checks_gate([])(a).passed
    blocked = upstream_checks_gate(["marts/x:great_expectations (FAILED)"])(a)
    assert not blocked.passed and "great_expectations" in blocked.detail
    assert kill_switch_gate(lambda: None)(a).passed
    assert "incident 42" in kill_switch_gate(lambda: "incident 42")(a).detail


def test_the_canary_outcome_check_reads_applied_canaries_and_the_spend_since(tmp_path):
    path = tmp_path / "w.duckdb"
    proposals = pd.DataFrame([{"proposal_hash": "h1", "channel": "search", "geo": "US-CA", "canary": True,
                               "created_for": WEEK, "proposed_value": 100.0}])  # fmt: skip
    ledger = pd.DataFrame([{"proposal_hash": "h1", "state": "applied"}])
    with duckdb.connect(str(path)) as conn:
        conn.execute("create schema decisions")
        conn.register("p", proposals)
        conn.register("l", ledger)
        conn.execute("create table decisions.action_proposals as select * from p")
        conn.execute("create table decisions.actuation_ledger as select * from l")
    policy = load_actuation_policy()
    days = [WEEK + timedelta(days=d) for d in range(7)]

    def observed(daily: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "channel": "search",
                "geo": "US-CA",
                "date_day": pd.to_datetime(days),
                "spend_usd": daily,
            }
        )

    next_week = WEEK + timedelta(days=7)
    assert _canary_widen(str(path), policy, next_week, observed(105.0)) == {"search": True}
    assert _canary_widen(str(path), policy, next_week, observed(200.0)) == {"search": False}
    assert _canary_widen(str(path), policy, WEEK, observed(105.0)) == {}  # not an earlier week
