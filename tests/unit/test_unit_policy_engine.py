"""Action proposals (hash) and the policy engine (verdicts, policy loading, stop-loss)."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from models.policy import (
    DEFAULT_POLICY_PATH,
    ActionProposal,
    AppliedChange,
    evaluate,
    evaluate_stop_loss,
    load_actuation_policy,
    policy_from_dict,
    policy_sha256,
)

REPO = Path(__file__).resolve().parents[2]
TODAY = date(2026, 11, 10)  # outside every blackout of the shipped policy
NOW = datetime(2026, 11, 10, 12, 0)

POLICY_DOC = {
    "version": "test",
    "kill_switch": False,
    "action_types": {
        "budget_change": {
            "tier": "autonomous",
            "unit": "usd_per_day",
            "max_change_per_action": 0.2,
            "max_change_per_period": {"ratio": 0.2, "hours": 72},
            "needs_approval_above": 0.1,
            "approvers": ["lead", "analyst"],
        },
        "bid_change": {
            "tier": "autonomous",
            "unit": "usd_per_click",
            "max_change_per_action": 0.15,
            "on_step_exceeded": "needs_approval",
            "approvers": ["lead"],
        },
        "creative_launch": {"tier": "needs_approval", "approvers": ["brand"]},
        "traffic_split": {
            "tier": "autonomous",
            "unit": "share",
            "max_change_per_action": 0.3,
            "approvers": ["lead"],
        },
        "pause": {"tier": "autonomous", "approvers": ["lead"]},
        "campaign_delete": {"tier": "forbidden"},
    },
    "channels": {
        "search": {"platform": "google_ads", "daily_spend_cap": 2000},
        "social": {"platform": "meta", "daily_spend_cap": 1500},
    },
    "stop_loss": [
        {"id": "overspend", "metric": "spend_pace", "threshold": 0.3, "action": "pause"},
        {
            "id": "cpa",
            "metric": "cpa_increase",
            "threshold": 0.5,
            "action": "revert",
            "min_conversions": 20,
            "min_spend": 100,
        },
        {
            "id": "roas",
            "metric": "roas_drop",
            "threshold": 0.4,
            "action": "alert",
            "channels": ["social"],
        },
    ],
    "blackouts": [
        {
            "start": "2026-11-26",
            "end": "2026-11-30",
            "reason": "peak",
            "exempt_action_types": ["pause"],
        },
        {
            "start": date(2026, 12, 24),
            "reason": "freeze",
            "effect": "forbidden",
            "channels": ["social"],
        },
    ],
}
POLICY = policy_from_dict(POLICY_DOC)


def proposal(**changes) -> ActionProposal:
    base = {
        "action_type": "budget_change",
        "platform": "google_ads",
        "account_id": "123-456-7890",
        "target_id": "campaign/42",
        "channel": "search",
        "current_value": 1000.0,
        "proposed_value": 1050.0,
        "unit": "usd_per_day",
        "inputs": {"mmm_fit": "v3", "snapshot": "2026-11-09"},
        "model_version": "mmm-0.4",
        "prompt_version": "",
        "seed": 7,
        "expected_effect": 120.0,
        "effect_low": 40.0,
        "effect_high": 200.0,
        "effect_metric": "revenue_usd_per_week",
        "proposer": "optimizer",
        "canary": False,
        "created_for": TODAY,
    }
    base.update(changes)
    return ActionProposal(**base)


def check_names(verdict, *, failed=True):
    return {c.name for c in verdict.checks if c.passed != failed}


# --- proposal hash ------------------------------------------------------------------------


def test_hash_is_stable_and_ignores_int_float_and_mapping_order():
    a = proposal()
    b = proposal(
        current_value=1000,
        proposed_value=1050,
        inputs={"snapshot": "2026-11-09", "mmm_fit": "v3"},
    )
    assert a.proposal_hash == b.proposal_hash == proposal().proposal_hash
    assert len(a.proposal_hash) == 64 and a == b and hash(a) == hash(b)
    assert '"proposed_value":1050.0' in a.canonical_json() and " " not in a.canonical_json()


def test_hash_is_the_same_in_another_process():
    code = (
        "from datetime import date; from models.policy import ActionProposal as A;"
        "print(A('budget_change','google_ads','123-456-7890','campaign/42','search',1000.0,"
        "1050.0,'usd_per_day',inputs={'snapshot':'2026-11-09','mmm_fit':'v3'},"
        "model_version='mmm-0.4',seed=7,expected_effect=120.0,effect_low=40.0,effect_high=200.0,"
        "effect_metric='revenue_usd_per_week',proposer='optimizer',"
        "created_for=date(2026,11,10)).proposal_hash)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == proposal().proposal_hash


def test_any_field_change_changes_the_hash():
    base = proposal()
    other = {
        "action_type": "bid_change",
        "platform": "meta",
        "account_id": "999",
        "target_id": "campaign/43",
        "channel": "social",
        "current_value": 1001.0,
        "proposed_value": 1050.5,
        "unit": "usd_per_click",
        "inputs": {"mmm_fit": "v4", "snapshot": "2026-11-09"},
        "model_version": "mmm-0.5",
        "prompt_version": "p2",
        "seed": 8,
        "expected_effect": 121.0,
        "effect_low": 39.0,
        "effect_high": 201.0,
        "effect_metric": "conversions_per_week",
        "proposer": "alice",
        "canary": True,
        "created_for": TODAY + timedelta(days=1),
    }
    assert set(other) == {f.name for f in dataclasses.fields(ActionProposal)}
    hashes = {base.proposal_hash}
    for name, value in other.items():
        changed = dataclasses.replace(base, **{name: value})
        assert changed.proposal_hash != base.proposal_hash, name
        hashes.add(changed.proposal_hash)
    assert len(hashes) == len(other) + 1
    # a split proposal hashes its arms and shares too
    split = proposal(
        action_type="traffic_split",
        unit="share",
        current_value={"a": 0.5, "b": 0.5},
        proposed_value={"a": 0.6, "b": 0.4},
    )
    moved = dataclasses.replace(split, proposed_value={"a": 0.61, "b": 0.39})
    assert split.proposal_hash != moved.proposal_hash


def test_proposal_validation_and_change_ratio():
    assert proposal().change_ratio == pytest.approx(0.05)
    assert proposal(current_value=0.0, proposed_value=10.0).change_ratio == math.inf
    assert proposal(current_value=None).change_ratio is None
    split = proposal(current_value={"a": 0.5, "b": 0.5}, proposed_value={"a": 0.8, "b": 0.2})
    assert split.change_ratio == pytest.approx(0.3)
    with pytest.raises(ValueError, match="effect_low"):
        proposal(effect_low=300.0)
    with pytest.raises(ValueError, match="finite"):
        proposal(proposed_value=float("nan"))
    with pytest.raises(ValueError, match="number with a split"):
        proposal(proposed_value={"a": 1.0})
    with pytest.raises(ValueError, match="action_type"):
        proposal(action_type="")
    with pytest.raises(TypeError):
        proposal().inputs["x"] = "y"  # read-only


# --- verdicts: each rule ------------------------------------------------------------------


def test_small_autonomous_change_is_allowed_and_records_everything():
    p = proposal()
    v = evaluate(p, POLICY, today=TODAY)
    assert v.outcome == "allowed" and v.reasons == () and v.approvers == ()
    assert v.policy_version == "test" and v.policy_sha256 == POLICY.sha256
    assert v.proposal_hash == p.proposal_hash
    assert all(c.passed for c in v.checks)
    names = [c.name for c in v.checks]
    assert names == [
        "kill_switch",
        "action_type",
        "channel",
        "platform",
        "unit",
        "tier",
        "spend_cap",
        "step_per_action",
        "step_per_period",
        "escalation",
        "blackout",
    ]
    assert v.to_dict()["checks"][0]["name"] == "kill_switch"


def test_spend_cap_rejects_a_daily_budget_above_the_channel_cap():
    v = evaluate(proposal(current_value=1950.0, proposed_value=2050.0), POLICY, today=TODAY)
    assert v.outcome == "rejected"
    assert check_names(v) == {"spend_cap"}
    assert "$2,050.00" in v.reasons[0] and "$2,000.00" in v.reasons[0]
    # bids are not daily budgets: no spend cap check
    bid = proposal(
        action_type="bid_change", unit="usd_per_click", current_value=3000.0, proposed_value=3100.0
    )
    assert "spend_cap" not in {c.name for c in evaluate(bid, POLICY, today=TODAY).checks}


def test_escalation_then_step_limit_per_action():
    assert evaluate(proposal(proposed_value=1100.0), POLICY, today=TODAY).outcome == "allowed"
    v = evaluate(proposal(proposed_value=1150.0), POLICY, today=TODAY)
    assert v.outcome == "needs_approval" and check_names(v) == {"escalation"}
    assert v.approvers == ("lead", "analyst")
    v = evaluate(proposal(proposed_value=1250.0), POLICY, today=TODAY)
    assert v.outcome == "rejected"
    assert {"step_per_action", "step_per_period", "escalation"} == check_names(v)
    v = evaluate(proposal(proposed_value=750.0), POLICY, today=TODAY)  # down moves count too
    assert v.outcome == "rejected" and "step_per_action" in check_names(v)


def test_step_limit_can_ask_for_approval_instead_of_rejecting():
    bid = proposal(
        action_type="bid_change", unit="usd_per_click", current_value=2.0, proposed_value=2.5
    )
    v = evaluate(bid, POLICY, today=TODAY)
    assert v.outcome == "needs_approval" and check_names(v) == {"step_per_action"}
    assert v.approvers == ("lead",)


def test_step_limit_per_period_sums_changes_inside_the_window_only():
    p = proposal(current_value=1100.0, proposed_value=1155.0)  # +5%
    inside = AppliedChange(NOW - timedelta(hours=24), 1000.0, 1100.0)  # +10%
    also_inside = AppliedChange(NOW - timedelta(hours=71), 950.0, 1000.0)  # +5.3%
    outside = AppliedChange(NOW - timedelta(hours=73), 800.0, 950.0)  # +18.75%, too old
    assert evaluate(p, POLICY, today=NOW, history=[inside, outside]).outcome == "allowed"
    v = evaluate(p, POLICY, today=NOW, history=[inside, also_inside, outside])
    assert v.outcome == "rejected" and check_names(v) == {"step_per_period"}
    assert "2 earlier change(s)" in v.reasons[0] and "20.3%" in v.reasons[0]
    # back and forth adds up: 1000 -> 1100 -> 1000 -> 1100 moves 10% + 9.1% + 10%
    flip = [
        AppliedChange(NOW - timedelta(hours=h), a, b)
        for h, a, b in [(10, 1000.0, 1100.0), (5, 1100.0, 1000.0)]
    ]
    v = evaluate(proposal(proposed_value=1100.0), POLICY, today=NOW, history=flip)
    assert v.outcome == "rejected" and "step_per_period" in check_names(v)
    # a bare date is read as midnight: a change 60 h before that midnight is inside
    day = [AppliedChange(datetime(2026, 11, 7, 12), 900.0, 1000.0)]
    assert (
        evaluate(proposal(proposed_value=1100.0), POLICY, today=TODAY, history=day).outcome
        == "rejected"
    )


def test_tiers_and_forbidden_never_passes():
    launch = proposal(
        action_type="creative_launch", current_value=None, proposed_value=1.0, unit="ad"
    )
    v = evaluate(launch, POLICY, today=TODAY)
    assert v.outcome == "needs_approval" and check_names(v) == {"tier"}
    assert v.approvers == ("brand",)
    delete = proposal(action_type="campaign_delete", current_value=None, proposed_value=0.0)
    for today in (TODAY, date(2026, 11, 27)):
        for history in ((), [AppliedChange(NOW, 1.0, 1.0)]):
            v = evaluate(delete, POLICY, today=today, history=history, kill_switch=False)
            assert v.outcome == "rejected" and "tier" in check_names(v) and v.approvers == ()
    assert POLICY.approvers("campaign_delete") == ()
    assert POLICY.can_approve("budget_change", "lead", proposer="optimizer")
    assert not POLICY.can_approve("budget_change", "lead", proposer="lead")
    assert not POLICY.can_approve("budget_change", "brand", proposer="optimizer")


def test_unknown_action_type_channel_platform_and_unit_are_rejected():
    v = evaluate(proposal(action_type="audience_change"), POLICY, today=TODAY)
    assert v.outcome == "rejected" and "unknown action type 'audience_change'" in v.reasons[0]
    v = evaluate(proposal(channel="tv", platform="offline"), POLICY, today=TODAY)
    assert v.outcome == "rejected" and check_names(v) == {"channel"}
    assert "unknown channel 'tv'" in v.reasons[0]
    v = evaluate(proposal(platform="meta"), POLICY, today=TODAY)
    assert v.outcome == "rejected" and check_names(v) == {"platform"}
    v = evaluate(proposal(unit="usd_per_week"), POLICY, today=TODAY)
    assert v.outcome == "rejected" and check_names(v) == {"unit"}


def test_blackout_ends_autonomy_and_a_forbidden_blackout_rejects():
    peak = date(2026, 11, 27)
    v = evaluate(proposal(created_for=peak), POLICY, today=peak)
    assert v.outcome == "needs_approval" and check_names(v) == {"blackout"}
    assert "peak" in v.reasons[0]
    # created_for inside the blackout is enough, even when evaluated before it
    assert evaluate(proposal(created_for=peak), POLICY, today=TODAY).outcome == "needs_approval"
    pause = proposal(
        action_type="pause", current_value=None, proposed_value=0.0, unit="status", created_for=peak
    )
    assert evaluate(pause, POLICY, today=peak).outcome == "allowed"  # exempt
    xmas = date(2026, 12, 24)
    social = proposal(channel="social", platform="meta", created_for=xmas)
    assert evaluate(social, POLICY, today=xmas).outcome == "rejected"
    assert evaluate(proposal(created_for=xmas), POLICY, today=xmas).outcome == "allowed"


def test_kill_switch_rejects_everything():
    killed = policy_from_dict({**POLICY_DOC, "kill_switch": True})
    v = evaluate(proposal(), killed, today=TODAY)
    assert v.outcome == "rejected" and check_names(v) == {"kill_switch"}
    assert evaluate(proposal(), killed, today=TODAY, kill_switch=False).outcome == "allowed"
    assert evaluate(proposal(), POLICY, today=TODAY, kill_switch=True).outcome == "rejected"


def test_every_reason_is_recorded_and_the_most_severe_outcome_wins():
    p = proposal(current_value=1500.0, proposed_value=2100.0, created_for=date(2026, 11, 27))
    v = evaluate(p, POLICY, today=TODAY)
    assert v.outcome == "rejected"
    assert check_names(v) == {
        "spend_cap",
        "step_per_action",
        "step_per_period",
        "escalation",
        "blackout",
    }
    assert len(v.reasons) == 5 and {c.outcome for c in v.checks if not c.passed} == {
        "rejected",
        "needs_approval",
    }
    # needs_approval beats allowed; rejected beats needs_approval
    launch = proposal(action_type="creative_launch", current_value=None, unit="ad")
    assert evaluate(launch, POLICY, today=date(2026, 11, 27)).outcome == "needs_approval"
    assert evaluate(launch, POLICY, today=TODAY, kill_switch=True).outcome == "rejected"


# --- policy file ---------------------------------------------------------------------------


def test_shipped_policy_loads_and_its_hash_ignores_comments(tmp_path):
    policy = load_actuation_policy()
    assert policy.version == "2" and not policy.kill_switch
    assert policy.sha256 == policy_sha256(DEFAULT_POLICY_PATH) == policy_sha256()
    assert policy.action_types["campaign_delete"].tier == "forbidden"
    assert all(rule.approvers for rule in policy.action_types.values() if rule.tier != "forbidden")
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    moved = tmp_path / "moved.yaml"
    moved.write_text("# another comment\n" + text, encoding="utf-8")
    assert policy_sha256(moved) == policy.sha256
    edited = tmp_path / "edited.yaml"
    edited.write_text(text.replace("daily_spend_cap: 20000", "daily_spend_cap: 20001"), "utf-8")
    assert policy_sha256(edited) != policy.sha256
    assert load_actuation_policy(edited).sha256 == policy_sha256(edited)


def _broken(path: str, value):
    doc = copy.deepcopy(POLICY_DOC)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("action_types.budget_change.tier", "sometimes", r"action_types.budget_change.tier must be one of"),
        ("action_types.budget_change.max_change_per_action", -0.1, r"max_change_per_action must be >= 0"),
        ("action_types.bid_change.approvers", [], r"bid_change.approvers must name at least one"),
        ("action_types.bid_change.on_step_exceeded", "allowed", r"on_step_exceeded must be one of"),
        ("action_types.budget_change.max_change_per_period", {"ratio": 0.2}, r"needs both ratio and hours"),
        ("action_types.budget_change.needs_approval_above", 0.3, r"could never apply"),
        ("action_types.budget_change.colour", "red", r"unknown fields \['colour'\]"),
        ("channels.search.daily_spend_cap", -5, r"channels.search.daily_spend_cap must be >= 0"),
        ("channels.search.platform", "meta", r"search runs on 'google_ads'"),
        ("channels.radio", {"platform": "meta", "daily_spend_cap": 1}, r"unknown channel 'radio'"),
        ("stop_loss.0.threshold", 0, r"stop_loss\[0\].threshold must be > 0"),
        ("stop_loss.0.metric", "ctr", r"stop_loss\[0\].metric must be one of"),
        ("stop_loss.1.id", "overspend", r"stop_loss ids must be unique"),
        ("blackouts.0.start", "2026-13-01", r"blackouts\[0\].start must be a date written YYYY-MM-DD"),
        ("blackouts.0.end", "2026-11-01", r"blackouts\[0\]: end 2026-11-01 is before start"),
        ("blackouts.0.effect", "allowed", r"blackouts\[0\].effect must be one of"),
        ("blackouts.0.exempt_action_types", ["nap"], r"'nap', not an action type"),
        ("kill_switch", "no", r"kill_switch must be true or false"),
        ("version", None, r"needs a version"),
    ],
)  # fmt: skip
def test_policy_errors_name_the_field(path, value, message):
    with pytest.raises(ValueError, match=message):
        policy_from_dict(_broken(path, value))


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_broken("action_types.pause.tier", "maybe")), encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.yaml: action_types.pause.tier"):
        load_actuation_policy(bad)
    bad.write_text("version: [1", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_actuation_policy(bad)


# --- stop-loss -----------------------------------------------------------------------------


def test_stop_loss_on_example_numbers():
    observed = {
        "spend": 1400.0,
        "planned_spend": 1000.0,  # 40% over plan
        "conversions": 25,
        "baseline_cpa": 40.0,  # cpa 56 = +40%: under the 50% threshold
        "roas": 2.0,
        "baseline_roas": 4.0,  # -50%
    }
    results = {r.rule_id: r for r in evaluate_stop_loss(POLICY, observed, channel="social")}
    assert results["overspend"].triggered and results["overspend"].action == "pause"
    assert results["overspend"].value == pytest.approx(0.4)
    assert not results["cpa"].triggered and results["cpa"].value == pytest.approx(0.4)
    assert results["roas"].triggered and results["roas"].value == pytest.approx(0.5)
    assert "+40.0% vs threshold 30.0%: pause" in results["overspend"].detail
    # the roas rule is social-only; cpa 60 (+50.0%) is not above 50%, cpa 64 is
    results = {
        r.rule_id: r
        for r in evaluate_stop_loss(POLICY, {**observed, "cpa": 64.0}, channel="search")
    }
    assert set(results) == {"overspend", "cpa"} and results["cpa"].triggered
    assert results["cpa"].action == "revert"
    # too few conversions, or missing inputs: not evaluated, never triggered
    few = evaluate_stop_loss(
        POLICY.stop_loss, {"spend": 900.0, "conversions": 5, "cpa": 99.0, "baseline_cpa": 40.0}
    )
    assert not any(r.triggered for r in few)
    assert {r.rule_id: r.value for r in few}["cpa"] is None
    assert "waits for conversions >= 20" in {r.rule_id: r.detail for r in few}["cpa"]
    assert "planned_spend" in {r.rule_id: r.detail for r in few}["overspend"]
    # the shipped policy's rules parse and run too
    shipped = evaluate_stop_loss(load_actuation_policy(), observed)
    assert {r.rule_id for r in shipped if r.triggered} == {"overspend", "roas_drop"}


def test_canary_rule_marks_large_budget_changes_and_rejects_unknown_types():
    policy = load_actuation_policy()
    assert policy.canary is not None and policy.canary.geos
    big = policy.canary.min_change
    assert policy.is_canary("budget_change", big)
    assert not policy.is_canary("budget_change", big - 0.01)
    assert not policy.is_canary("budget_change", None)
    assert not policy.is_canary("pause", 1.0)
    document = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    document["canary"]["action_types"] = ["teleport"]
    with pytest.raises(ValueError, match=r"canary\.action_types names unknown"):
        policy_from_dict(document)
    document["canary"] = {"geos": []}
    with pytest.raises(ValueError, match=r"canary\.geos"):
        policy_from_dict(document)


def test_step_toward_never_breaks_the_step_limit_after_rounding():
    from models.policy import change_ratio, step_toward

    for current in (100.0, 123.45, 57.13, 999.99, 0.37):
        for target in (current * 3, current / 3, current * 1.05):
            value, frac = step_toward(current, round(target, 2), 0.2)
            assert change_ratio(round(current, 2), value) <= 0.2 + 1e-12
            assert value == round(value, 2) and 0 < frac <= 1
            assert (value - current) * (target - current) >= 0  # same direction
    assert step_toward(100.0, 105.0, 0.2) == (105.0, 1.0)
    split, frac = step_toward({"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0}, 0.5)
    assert frac == 0.5 and split == {"a": 0.5, "b": 0.5}
    assert change_ratio({"a": 1.0, "b": 0.0}, split) == pytest.approx(0.5)
