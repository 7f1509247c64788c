"""`adloop proposals | approve | reject | kill-switch` against a real DuckDB warehouse."""

from __future__ import annotations

import json
from datetime import date

import duckdb
import pytest

from connectors.kill_switch import KillSwitch
from connectors.warehouse.audit_log import DuckDBAuditStore
from connectors.warehouse.decisions_store import DecisionsStore
from models.audit import AuditLog
from models.policy import ActionProposal, evaluate, load_actuation_policy, proposal_row
from orchestration.cli import main

TODAY = date(2026, 11, 10)
POLICY = load_actuation_policy()
KEYS = {
    "marketing-lead": "lead-key-9f8e7d6c5b4a39281706",
    "growth-analyst": "analyst-key-1a2b3c4d5e6f70819",
    "search-manager": "search-key-0f1e2d3c4b5a69788",
}


def proposal(proposed: float, target: str = "cmp-search-1", proposer: str = "budget_optimizer"):
    return ActionProposal(
        action_type="budget_change", platform="google_ads", account_id="acc-1", target_id=target,
        channel="search", current_value=1000.0, proposed_value=proposed, unit="usd_per_day",
        expected_effect=120.0, effect_low=40.0, effect_high=200.0, effect_metric="revenue_usd_per_week",
        proposer=proposer, created_for=TODAY,
    )  # fmt: skip


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A warehouse with three proposals (needs approval, allowed, proposed by the lead); the
    verifier's keys set; nobody signing yet."""
    path = tmp_path / "warehouse.duckdb"
    for name in ("ADLOOP_APPROVER_ID", "ADLOOP_APPROVER_KEY", "ADLOOP_KILL_SWITCH", "ADLOOP_KILL_SWITCH_PATH"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ADLOOP_WAREHOUSE_PATH", str(path))
    for who, key in KEYS.items():
        monkeypatch.setenv(f"ADLOOP_APPROVER_KEY_{who.upper().replace('-', '_')}", key)
    props = {
        "pending": proposal(1150.0),
        "allowed": proposal(1050.0, target="cmp-search-2"),
        "own": proposal(1150.0, target="cmp-search-3", proposer="marketing-lead"),
    }
    store = DecisionsStore(path)
    store.upsert_proposals(
        [
            proposal_row(p, evaluate(p, POLICY, today=TODAY), source="budget_plan", geo="US-CA")
            for p in props.values()
        ]
    )
    ids = {k: p.proposal_hash[:12] for k, p in props.items()}
    return store, ids, monkeypatch


def signer(monkeypatch, who: str, key: str | None = None) -> None:
    monkeypatch.setenv("ADLOOP_APPROVER_ID", who)
    monkeypatch.setenv("ADLOOP_APPROVER_KEY", key or KEYS[who])


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    text = out.out + out.err
    for key in KEYS.values():
        assert key not in text, "a key was printed"
    return code, text


def test_list_shows_what_awaits_approval(env, capsys):
    _, ids, _ = env
    code, text = run(capsys, "proposals", "list")
    assert code == 0
    assert ids["pending"] in text and ids["own"] in text and ids["allowed"] not in text
    assert "search/US-CA" in text and "1,000.00 -> 1,150.00" in text and "+15.0%" in text
    code, text = run(capsys, "proposals", "list", "--all")
    assert ids["allowed"] in text and "not_needed" in text


def test_a_valid_approval_is_signed_stored_audited_and_shown(env, capsys):
    store, ids, mp = env
    signer(mp, "growth-analyst")
    code, text = run(capsys, "approve", ids["pending"], "--comment", "within plan")
    assert code == 0, text
    assert "recorded approve" in text and "approval state now: approved" in text
    (row,) = store.approvals()
    assert row["approver"] == "growth-analyst" and row["seq"] == 1 and row["comment"] == "within plan"  # fmt: skip
    entries = AuditLog(DuckDBAuditStore(store.path)).entries()
    assert [e.kind for e in entries] == ["approval"]
    payload = json.dumps(entries[0].payload)
    assert entries[0].payload["signature"] == row["signature"]
    assert all(key not in payload for key in KEYS.values())

    code, text = run(capsys, "proposals", "list")
    assert ids["pending"] not in text
    code, text = run(capsys, "proposals", "show", ids["pending"][:8])
    assert code == 0 and "approval state: approved" in text and "valid    approve" in text
    assert "escalation" in text and POLICY.sha256 in text
    assert run(capsys, "audit", "verify")[0] == 0


def test_a_reject_wins(env, capsys):
    store, ids, mp = env
    signer(mp, "growth-analyst")
    assert run(capsys, "approve", ids["pending"])[0] == 0
    signer(mp, "marketing-lead")
    code, text = run(capsys, "reject", ids["pending"], "--reason", "not during the sale")
    assert code == 0 and "approval state now: rejected" in text
    assert [e.kind for e in AuditLog(DuckDBAuditStore(store.path)).entries()] == ["approval", "rejection"]  # fmt: skip


@pytest.mark.parametrize(
    ("who", "target", "expected"),
    [
        ("marketing-lead", "own", "no one approves or rejects their own"),
        ("search-manager", "pending", "may not decide on budget_change"),
        ("growth-analyst", "allowed", "has verdict allowed"),
    ],
)
def test_refusals_exit_2_and_write_nothing(env, capsys, who, target, expected):
    store, ids, mp = env
    signer(mp, who)
    code, text = run(capsys, "approve", ids[target])
    assert code == 2 and expected in text and len(text.strip().splitlines()) == 1
    assert store.approvals() == []
    assert not DuckDBAuditStore(store.path).exists()


def test_no_key_or_an_unknown_proposal_exit_2(env, capsys):
    store, ids, mp = env
    code, text = run(capsys, "approve", ids["pending"])
    assert code == 2 and "ADLOOP_APPROVER_ID is not set" in text
    mp.setenv("ADLOOP_APPROVER_ID", "growth-analyst")
    code, text = run(capsys, "reject", ids["pending"], "--reason", "x")
    assert code == 2 and "ADLOOP_APPROVER_KEY is not set" in text
    signer(mp, "growth-analyst")
    code, text = run(capsys, "approve", "0000000000aa")
    assert code == 2 and "no proposal" in text
    assert store.approvals() == []


def test_a_wrong_key_is_stored_but_never_counts(env, capsys):
    store, ids, mp = env
    signer(mp, "growth-analyst", key="a-different-key-0123456789")
    assert run(capsys, "approve", ids["pending"])[0] == 0  # the signer cannot know
    assert len(store.approvals()) == 1
    _, text = run(capsys, "proposals", "show", ids["pending"])
    assert "approval state: pending" in text and "does not verify" in text
    assert ids["pending"] in run(capsys, "proposals", "list")[1]


def test_a_tampered_proposal_is_refused(env, capsys):
    store, ids, mp = env
    with duckdb.connect(str(store.path)) as conn:
        conn.execute(
            "update decisions.action_proposals set proposal_json = replace(proposal_json, "
            "'1150.0', '1900.0') where proposal_id = ?",
            [ids["pending"]],
        )
    signer(mp, "growth-analyst")
    code, text = run(capsys, "approve", ids["pending"])
    assert code == 2 and "does not hash to proposal_hash" in text
    assert store.approvals() == []
    code, text = run(capsys, "proposals", "list", "--all")
    assert "forbidden" in text


def test_kill_switch_flips_and_audits(env, capsys):
    store, _, mp = env
    code, text = run(capsys, "kill-switch", "status")
    assert code == 0 and "OFF" in text
    code, text = run(capsys, "kill-switch", "on", "--reason", "spend spike", "--by", "ops")
    assert code == 0 and "ON" in text and "audit entry 1" in text
    switch = KillSwitch()
    assert switch.path == store.path.parent / "control" / "kill_switch.json" and switch.engaged
    code, text = run(capsys, "kill-switch", "off", "--by", "ops")
    assert code == 0 and not switch.engaged
    entries = AuditLog(DuckDBAuditStore(store.path)).entries()
    assert [(e.kind, e.payload["action"]) for e in entries] == [("kill_switch", "on"), ("kill_switch", "off")]  # fmt: skip
    mp.setenv("ADLOOP_KILL_SWITCH", "1")
    code, text = run(capsys, "kill-switch", "off", "--by", "ops")
    assert "still ON" in text and switch.engaged


def test_kill_switch_never_waits_on_a_locked_warehouse(env, capsys, hold_duckdb_lock):
    store, _, _ = env
    with hold_duckdb_lock(store.path):
        code, text = run(capsys, "kill-switch", "on", "--reason", "runaway job", "--by", "ops")
        assert code == 0 and "not audited" in text and "locked" in text
        assert KillSwitch().engaged
