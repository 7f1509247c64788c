"""Four-eyes approvals: signing, every refusal, the approval state, keys from the environment,
and the proposals/approvals tables in a real DuckDB file."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, date, datetime

import duckdb
import pytest

from connectors.warehouse.decisions_store import (
    AmbiguousProposalError,
    DecisionsStore,
    UnknownProposalError,
    WarehouseLockedError,
)
from models.policy import (
    ActionProposal,
    Approval,
    ApprovalConfigError,
    Signer,
    TamperedProposalError,
    approval_state,
    approver_key_env,
    approver_keys_from_env,
    check_approval,
    evaluate,
    load_actuation_policy,
    proposal_from_json,
    proposal_row,
    sign_approval,
    signer_from_env,
    verify_proposal_row,
)

TODAY = date(2026, 11, 10)  # outside every blackout of the shipped policy
SIGNED_AT = datetime(2026, 11, 10, 9, 30, tzinfo=UTC)
KEYS = {
    "marketing-lead": b"lead-0123456789abcdef-secret",
    "growth-analyst": b"analyst-0123456789abcdef-secret",
    "search-manager": b"search-0123456789abcdef-secret",
}
POLICY = load_actuation_policy()


def budget_proposal(proposed: float = 1150.0, proposer: str = "budget_optimizer", **kw):
    """A 15% budget move on search: above the 10% escalation line, inside the 20% step."""
    fields = dict(
        action_type="budget_change", platform="google_ads", account_id="acc-1",
        target_id="cmp-search-1", channel="search", current_value=1000.0,
        proposed_value=proposed, unit="usd_per_day", inputs={"budget_plan": "v1"},
        model_version="mmm-1", seed=7, expected_effect=120.0, effect_low=40.0,
        effect_high=200.0, effect_metric="revenue_usd_per_week", proposer=proposer,
        created_for=TODAY,
    )  # fmt: skip
    fields.update(kw)
    return ActionProposal(**fields)


def row_for(proposal: ActionProposal, **kw) -> dict:
    verdict = evaluate(proposal, POLICY, today=TODAY)
    row = proposal_row(proposal, verdict, source="budget_plan", run_id="run-1", proposed_at=SIGNED_AT)  # fmt: skip
    row.update(kw)
    return row


def sign(proposal_hash: str, approver: str = "marketing-lead", decision: str = "approve", **kw):
    key = kw.pop("key", KEYS.get(approver, b"x" * 32))
    return sign_approval(proposal_hash, decision, approver, key, signed_at=SIGNED_AT, **kw)


# --- signing and checking ---------------------------------------------------------------------


def test_the_fixture_needs_approval():
    row = row_for(budget_proposal())
    assert row["verdict"] == "needs_approval"
    assert json.loads(row["approvers"]) == ["marketing-lead", "growth-analyst"]
    assert row["proposal_id"] == row["proposal_hash"][:12]
    assert row["proposal_json"] == budget_proposal().canonical_json()


def test_a_valid_approval_approves():
    proposal = budget_proposal()
    approval = sign(proposal.proposal_hash, comment="looks right")
    check = check_approval(approval, proposal, POLICY, KEYS)
    assert check.valid, check.reason
    state = approval_state(row_for(proposal), [approval], POLICY, KEYS)
    assert state.state == "approved" and state.valid == [approval] and state.refused == []


def test_the_signature_is_deterministic_and_covers_every_field():
    proposal = budget_proposal()
    a, b = sign(proposal.proposal_hash), sign(proposal.proposal_hash)
    assert a == b and len(a.signature) == 64 and len(a.approval_id) == 16
    assert a.signed_at == "2026-11-10T09:30:00.000000Z"
    for change in (
        {"comment": "edited afterwards"},
        {"signed_at": "2026-11-11T09:30:00.000000Z"},
        {"decision": "reject"},
    ):
        forged = dataclasses.replace(a, **change)
        check = check_approval(forged, proposal, POLICY, KEYS)
        assert not check.valid and "does not verify" in check.reason


def test_an_approval_by_the_proposer_is_refused():
    proposal = budget_proposal(proposer="marketing-lead")
    check = check_approval(sign(proposal.proposal_hash), proposal, POLICY, KEYS)
    assert not check.valid and "proposed it" in check.reason
    state = approval_state(row_for(proposal), [sign(proposal.proposal_hash)], POLICY, KEYS)
    assert state.state == "pending" and len(state.refused) == 1


def test_an_approver_the_policy_does_not_list_is_refused():
    proposal = budget_proposal()
    check = check_approval(sign(proposal.proposal_hash, "search-manager"), proposal, POLICY, KEYS)
    assert not check.valid and "may not approve budget_change" in check.reason
    assert "marketing-lead, growth-analyst" in check.reason


def test_a_wrong_key_is_refused():
    proposal = budget_proposal()
    approval = sign(proposal.proposal_hash, key=KEYS["growth-analyst"])
    check = check_approval(approval, proposal, POLICY, KEYS)
    assert not check.valid and "does not verify" in check.reason


def test_a_missing_key_is_refused():
    proposal = budget_proposal()
    keys = {k: v for k, v in KEYS.items() if k != "marketing-lead"}
    check = check_approval(sign(proposal.proposal_hash), proposal, POLICY, keys)
    assert not check.valid and "ADLOOP_APPROVER_KEY_MARKETING_LEAD" in check.reason


def test_a_changed_proposal_invalidates_earlier_approvals():
    old = budget_proposal(1150.0)
    approval = sign(old.proposal_hash)
    new = budget_proposal(1160.0)
    check = check_approval(approval, new, POLICY, KEYS)
    assert not check.valid and "changed proposal needs a new approval" in check.reason
    state = approval_state(row_for(new), [approval], POLICY, KEYS)
    assert state.state == "pending"


def test_an_unknown_decision_is_refused():
    proposal = budget_proposal()
    approval = dataclasses.replace(sign(proposal.proposal_hash), decision="maybe")
    check = check_approval(approval, proposal, POLICY, KEYS)
    assert not check.valid and "unknown decision" in check.reason
    with pytest.raises(ValueError, match="decision"):
        sign(proposal.proposal_hash, decision="maybe")


def test_a_valid_reject_wins_over_a_valid_approve():
    proposal = budget_proposal()
    approvals = [
        sign(proposal.proposal_hash, "marketing-lead", "approve"),
        sign(proposal.proposal_hash, "growth-analyst", "reject", comment="not before the sale"),
    ]
    state = approval_state(row_for(proposal), approvals, POLICY, KEYS)
    assert state.state == "rejected" and len(state.valid) == 2
    assert "growth-analyst" in state.reason


def test_an_invalid_reject_does_not_block():
    proposal = budget_proposal()
    approvals = [
        sign(proposal.proposal_hash, "marketing-lead", "approve"),
        sign(proposal.proposal_hash, "search-manager", "reject"),  # not allowed for budgets
    ]
    state = approval_state(row_for(proposal), approvals, POLICY, KEYS)
    assert state.state == "approved" and len(state.refused) == 1


def test_allowed_needs_nothing_and_rejected_is_never_approvable():
    small = budget_proposal(1050.0)
    assert row_for(small)["verdict"] == "allowed"
    state = approval_state(row_for(small), [sign(small.proposal_hash)], POLICY, KEYS)
    assert state.state == "not_needed"
    big = budget_proposal(1900.0)  # a 90% step: rejected
    assert row_for(big)["verdict"] == "rejected"
    state = approval_state(row_for(big), [sign(big.proposal_hash)], POLICY, KEYS)
    assert state.state == "forbidden"
    with pytest.raises(ValueError, match="verdict"):
        approval_state(big, [], POLICY, KEYS)
    assert approval_state(big, [], POLICY, KEYS, verdict="needs_approval").state == "pending"


def test_tampered_proposal_json_is_detected():
    proposal = budget_proposal()
    row = row_for(proposal)
    approval = sign(proposal.proposal_hash)
    edited = dict(row, proposal_json=row["proposal_json"].replace("1150.0", "1900.0"))
    with pytest.raises(TamperedProposalError, match="does not hash"):
        verify_proposal_row(edited)
    check = check_approval(approval, edited, POLICY, KEYS)
    assert not check.valid and "tampered" in check.reason
    state = approval_state(edited, [approval], POLICY, KEYS)
    assert state.state == "forbidden" and state.refused[0][1].startswith("tampered")


def test_a_mirrored_column_that_disagrees_with_the_json_is_tampering():
    proposal = budget_proposal(proposer="marketing-lead")
    row = row_for(proposal, proposer="budget_optimizer")  # hide the real proposer
    with pytest.raises(TamperedProposalError, match="proposer"):
        verify_proposal_row(row)
    assert approval_state(row, [sign(proposal.proposal_hash)], POLICY, KEYS).state == "forbidden"


def test_a_row_checks_like_the_proposal_itself():
    proposal = budget_proposal()
    row = row_for(proposal)
    assert verify_proposal_row(row) == proposal
    assert check_approval(sign(proposal.proposal_hash).to_row(), row, POLICY, KEYS).valid


def test_proposal_json_round_trips_a_traffic_split():
    split = ActionProposal(
        action_type="traffic_split", platform="meta", account_id="a", target_id="adset-1",
        channel="social", current_value={"a": 0.5, "b": 0.5}, proposed_value={"a": 0.3, "b": 0.7},
        unit="share", proposer="bandit", created_for=TODAY,
    )  # fmt: skip
    assert proposal_from_json(split.canonical_json()) == split
    row = row_for(split)
    assert row["current_value"] is None and row["proposed_value"] is None
    assert json.loads(row["value_json"]) == {"current": {"a": 0.5, "b": 0.5}, "proposed": {"a": 0.3, "b": 0.7}}  # fmt: skip
    with pytest.raises(ValueError, match="schema"):
        proposal_from_json(json.dumps({"schema": "other"}))


# --- keys ------------------------------------------------------------------------------------


def test_key_variable_names():
    assert approver_key_env("marketing-lead") == "ADLOOP_APPROVER_KEY_MARKETING_LEAD"
    assert approver_key_env("a.b-c") == "ADLOOP_APPROVER_KEY_A_B_C"


def test_keys_come_from_the_environment_and_never_show():
    secret = "s3cr3t-value-that-must-never-show"
    environ = {
        "ADLOOP_APPROVER_ID": "marketing-lead",
        "ADLOOP_APPROVER_KEY": secret,
        "ADLOOP_APPROVER_KEY_MARKETING_LEAD": secret,
    }
    signer = signer_from_env(environ)
    assert signer.approver == "marketing-lead" and signer.key == secret.encode()
    assert secret not in repr(signer) and secret not in str(signer)
    keys = approver_keys_from_env(["marketing-lead", "growth-analyst"], environ)
    assert keys == {"marketing-lead": secret.encode()}
    proposal = budget_proposal()
    approval = signer.sign(proposal.proposal_hash, "approve", signed_at=SIGNED_AT)
    assert check_approval(approval, proposal, POLICY, keys).valid
    shown = [
        repr(approval),
        json.dumps(approval.to_row()),
        json.dumps(row_for(proposal), default=str),
    ]
    shown += [repr(check_approval(approval, proposal, POLICY, keys))]
    shown += [repr(approval_state(row_for(proposal), [approval], POLICY, keys))]
    assert not any(secret in text for text in shown)


def test_missing_or_short_keys_are_refused_without_showing_them():
    with pytest.raises(ApprovalConfigError, match="ADLOOP_APPROVER_ID"):
        signer_from_env({"ADLOOP_APPROVER_KEY": "k" * 32})
    with pytest.raises(ApprovalConfigError, match="ADLOOP_APPROVER_KEY is not set"):
        signer_from_env({"ADLOOP_APPROVER_ID": "marketing-lead"})
    short = "tiny-key"
    with pytest.raises(ApprovalConfigError) as err:
        signer_from_env({"ADLOOP_APPROVER_ID": "marketing-lead", "ADLOOP_APPROVER_KEY": short})
    assert short not in str(err.value)
    with pytest.raises(ApprovalConfigError) as err:
        approver_keys_from_env(["marketing-lead"], {"ADLOOP_APPROVER_KEY_MARKETING_LEAD": short})
    assert short not in str(err.value) and "ADLOOP_APPROVER_KEY_MARKETING_LEAD" in str(err.value)
    with pytest.raises(ApprovalConfigError):
        Signer("marketing-lead", b"short")


def test_signed_at_must_be_timezone_aware():
    with pytest.raises(ValueError, match="timezone"):
        sign_approval(
            budget_proposal().proposal_hash, "approve", "marketing-lead",
            KEYS["marketing-lead"], signed_at=datetime(2026, 1, 1),
        )  # fmt: skip


# --- the tables ------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> DecisionsStore:
    return DecisionsStore(tmp_path / "warehouse.duckdb", lock_timeout_s=0.5)


def test_upsert_writes_one_row_per_hash_and_reruns_change_nothing(store):
    rows = [row_for(budget_proposal()), row_for(budget_proposal(1050.0))]
    assert store.upsert_proposals(rows) == 2
    before = store.proposals()
    assert store.upsert_proposals(rows) == 0
    assert store.upsert_proposals([rows[0], rows[0]]) == 0
    assert store.proposals() == before and len(before) == 2
    assert [r["proposal_hash"] for r in store.proposals(verdict="needs_approval")] == [
        rows[0]["proposal_hash"]
    ]
    stored = store.proposal(rows[0]["proposal_id"])
    assert stored["proposal_json"] == rows[0]["proposal_json"]
    assert stored["created_for"] == TODAY and isinstance(stored["proposed_at"], datetime)
    assert verify_proposal_row(stored) == budget_proposal()


def test_a_re_evaluation_updates_only_the_verdict(store):
    proposal = budget_proposal()
    store.upsert_proposals([row_for(proposal)])
    killed = evaluate(proposal, POLICY, today=TODAY, kill_switch=True)
    rerun = proposal_row(proposal, killed, source="budget_plan", run_id="run-2")
    assert store.upsert_proposals([rerun]) == 0
    (stored,) = store.proposals()
    assert stored["verdict"] == "rejected" and stored["run_id"] == "run-1"
    assert any(r.startswith("kill_switch") for r in json.loads(stored["reasons"]))


def test_upsert_refuses_a_row_whose_hash_does_not_match(store):
    row = row_for(budget_proposal())
    with pytest.raises(ValueError, match="sha256"):
        store.upsert_proposals([dict(row, proposal_json=row["proposal_json"] + " ")])
    with pytest.raises(ValueError, match="unknown columns"):
        store.upsert_proposals([dict(row, colour="red")])
    assert store.proposals() == []


def test_proposal_lookup_by_id_prefix_or_hash(store):
    rows = [row_for(budget_proposal(1100.0 + i, target_id=f"cmp-{i}")) for i in range(2)]
    store.upsert_proposals(rows)
    digest = rows[0]["proposal_hash"]
    for key in (digest, digest[:12], digest[:8].upper(), f"  {digest[:12]} "):
        assert store.proposal(key)["proposal_hash"] == digest
    with pytest.raises(UnknownProposalError, match="no proposal"):
        store.proposal("ffff" if not digest.startswith("ffff") else "0000")
    with pytest.raises(UnknownProposalError, match="not a proposal id"):
        store.proposal("zz-not-hex")


def test_an_ambiguous_prefix_names_the_candidates(store):
    seen: dict[str, dict] = {}
    for i in range(5000):  # find two proposals whose hashes share 4 hex characters
        row = row_for(budget_proposal(1100.0, target_id=f"cmp-{i}"))
        other = seen.setdefault(row["proposal_hash"][:4], row)
        if other is not row:
            break
    store.upsert_proposals([other, row])
    with pytest.raises(AmbiguousProposalError, match=other["proposal_id"]):
        store.proposal(row["proposal_hash"][:4])


def test_approvals_append_with_a_monotonic_seq(store):
    proposal = budget_proposal()
    store.upsert_proposals([row_for(proposal)])
    first = store.append_approval(sign(proposal.proposal_hash).to_row())
    second = store.append_approval(
        sign(proposal.proposal_hash, "growth-analyst", "reject").to_row()
    )
    assert (first["seq"], second["seq"]) == (1, 2)
    again = store.append_approval(sign(proposal.proposal_hash).to_row())  # same signed content
    assert again["seq"] == 1 and len(store.approvals()) == 2
    assert [a["seq"] for a in store.approvals_after(1)] == [2]
    assert store.approvals_after(2) == []
    assert [a["decision"] for a in store.approvals(proposal.proposal_hash)] == ["approve", "reject"]
    stored = [Approval.from_row(r) for r in store.approvals()]
    assert approval_state(store.proposal(proposal.proposal_hash), stored, POLICY, KEYS).state == "rejected"  # fmt: skip
    with pytest.raises(UnknownProposalError):
        store.append_approval(sign("ab" * 32).to_row())


def test_reads_of_an_empty_warehouse(store):
    assert store.proposals() == [] and store.approvals() == [] and store.approvals_after(0) == []
    with pytest.raises(UnknownProposalError):
        store.proposal("abcdef")


def test_a_locked_warehouse_is_retried_then_named(store, hold_duckdb_lock):
    store.upsert_proposals([row_for(budget_proposal())])
    with hold_duckdb_lock(store.path):
        started = time.monotonic()
        with pytest.raises(WarehouseLockedError, match="locked by another process"):
            store.proposals()
        assert 0.4 < time.monotonic() - started < 5
    assert len(store.proposals()) == 1


def test_the_tables_have_the_documented_columns(store):
    store.upsert_proposals([row_for(budget_proposal())])
    with duckdb.connect(str(store.path), read_only=True) as conn:
        cols = dict(
            conn.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'decisions' and table_name = 'action_proposals'"
            ).fetchall()
        )
    assert cols["proposal_hash"] == "VARCHAR" and cols["proposed_value"] == "DOUBLE"
    assert cols["canary"] == "BOOLEAN" and cols["created_for"] == "DATE"
    assert cols["proposed_at"] == "TIMESTAMP" and len(cols) == 30


def test_it_works_inside_an_open_connection_of_the_same_process(store):
    """An asset may call the store inside `warehouse.connect()`: DuckDB shares the database."""
    from connectors.warehouse.duckdb import connect

    with connect(store.path) as conn:
        conn.execute("create schema if not exists marts")
        assert store.upsert_proposals([row_for(budget_proposal())]) == 1
        assert len(store.proposals()) == 1
    assert len(store.proposals()) == 1
