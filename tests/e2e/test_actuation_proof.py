"""Proof that actuation applies every approved action exactly once, whatever fails on the way:
1,000 budget changes against the real sandbox server with 20% throttling, 5% server errors,
timeouts (some of which still apply), a server that drops connections after applying, a
server that crashes mid-run, and a client that crashes mid-run; then reruns. Checked on the
sandbox's own mutation log, with the sandbox's idempotency keys switched off so the ledger's
read-back protocol alone must prevent double application (as on the real APIs).

Also: the kill switch stops a run before its next call, and a tampered audit row is caught.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from connectors.ad_platforms import GoogleAdsClient, MetaClient, RetryPolicy
from connectors.ad_platforms.base import BudgetTarget
from connectors.ad_platforms.sandbox import SandboxServer, seed_entry
from connectors.kill_switch import KillSwitch
from connectors.warehouse.actuation import actuation_session, read_ledger
from connectors.warehouse.audit_log import DuckDBAuditStore
from models.actuation import AMOUNT, Action, Actuator, kill_switch_gate
from models.audit import AuditLog
from models.policy import ActionProposal
from orchestration.cli import main as adloop

API, ADMIN, DEV = "proof-api-token", "proof-admin-token", "proof-dev-token"
N_ACTIONS = 1_000
CLIENT_TIMEOUT_S = 0.3


class ClientCrash(BaseException):
    """The actuating process dying mid-run (not an Exception: nothing may catch it)."""


class CrashAfter:
    """Wraps a connector; the whole client 'dies' when the call budget runs out."""

    def __init__(self, inner, budget: list[int]) -> None:
        self.inner, self.budget, self.platform = inner, budget, inner.platform

    def _tick(self) -> None:
        self.budget[0] -= 1
        if self.budget[0] < 0:
            raise ClientCrash()

    def read_budget(self, target):
        self._tick()
        return self.inner.read_budget(target)

    def update_budget(self, target, amount, **kw):
        self._tick()
        return self.inner.update_budget(target, amount, **kw)

    def set_status(self, target, status, **kw):
        self._tick()
        return self.inner.set_status(target, status, **kw)


def _targets(n: int) -> list[tuple[BudgetTarget, int]]:
    out = []
    for i in range(n):
        if i % 2 == 0:
            t = BudgetTarget(
                "google_ads", "4815162342", str(9_000_000_000 + i), "search", f"G{i:04d}", "USD"
            )
            out.append((t, (100 + i) * 1_000_000))  # $100+ a day, in micros
        else:
            t = BudgetTarget(
                "meta", "1029384756", str(23_900_000_000_000 + i), "social", f"G{i:04d}", "EUR"
            )
            out.append((t, (100 + i) * 100))  # EUR 100+ a day, in cents
    return out


def _actions(targets) -> list[Action]:
    actions = []
    for t, amount in targets:
        new = (
            amount + (amount // 10 // 10_000) * 10_000
            if t.platform == "google_ads"
            else amount + amount // 10
        )
        proposal = ActionProposal(
            action_type="budget_change", platform=t.platform, account_id=t.account_id,
            target_id=t.target_id, channel=t.channel, current_value=float(amount),
            proposed_value=float(new), unit="platform_units", proposer="proof",
            created_for=date(2026, 1, 5),
        )  # fmt: skip
        actions.append(Action(proposal, t, AMOUNT, new))
    return actions


def _clients(url: str, budget: list[int] | None = None) -> dict:
    clients = {
        "google_ads": GoogleAdsClient(url, access_token=API, developer_token=DEV, timeout_s=CLIENT_TIMEOUT_S),
        "meta": MetaClient(url, access_token=API, timeout_s=CLIENT_TIMEOUT_S),
    }  # fmt: skip
    return {k: CrashAfter(v, budget) for k, v in clients.items()} if budget else clients


def _run(warehouse, platforms, actions, sleeps, kill=None):
    with actuation_session(warehouse) as session:
        actuator = Actuator(
            platforms, session.ledger, audit=AuditLog(session.audit_store),
            kill_switch=kill or (lambda: None),
            retry=RetryPolicy(max_attempts=8, base_s=0.01, cap_s=0.05, max_wait_s=120),
            sleep=sleeps.append,
        )  # fmt: skip
        return actuator.run(actions, [kill_switch_gate(kill)] if kill else [])


@pytest.mark.slow
def test_thousand_actions_applied_exactly_once_under_faults_and_crashes(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    targets = _targets(N_ACTIONS)
    actions = _actions(targets)
    want = {a.target.target_id: int(a.value) for a in actions}
    faults = {
        "seed": 11, "throttle": 0.20, "throttle_retry_after_s": 0.5, "server_error": 0.05,
        "timeout": 0.01, "timeout_applies": 0.5, "timeout_sleep_s": 0.6,
        "crash_after_apply": 0.01, "crash_mode": "drop", "honour_idempotency_key": False,
    }  # fmt: skip
    sleeps: list[float] = []
    with SandboxServer(
        tmp_path / "sandbox", api_token=API, admin_token=ADMIN, developer_token=DEV
    ) as server:
        admin = server.admin
        admin.seed([seed_entry(t, amount) for t, amount in targets])
        admin.set_faults(**faults)

        # Run 1: the client process dies after 1,500 calls, in the middle of some action.
        with pytest.raises(ClientCrash):
            _run(warehouse, _clients(server.url, [1_500]), actions, sleeps)
        after_crash = {e.action_id: e.state for e in read_ledger(warehouse)}
        assert 0 < sum(s == "applied" for s in after_crash.values()) < N_ACTIONS

        # Run 2: the server itself crashes (process exit) after applying a write; calls after
        # it fail (connection refused) and the run ends with failures left to rerun.
        admin.set_faults(**{**faults, "crash_after_apply": 0.002, "crash_mode": "exit"})
        second = _run(warehouse, _clients(server.url), actions, sleeps)
        assert server.crashed, "the injected server crash did not happen"
        assert second.counts.get("failed", 0) > 0  # calls after the crash failed, re-runnable
        if server.crashed:
            server.restart()
            server.admin.set_faults(**faults)
        # Reruns until everything settled (faults stay on); a bounded number of them.
        summaries = [second]
        for _ in range(6):
            if (
                all(e.state in ("applied", "noop") for e in read_ledger(warehouse))
                and len(read_ledger(warehouse)) == N_ACTIONS
            ):
                break
            if server.crashed:
                server.restart()
                server.admin.set_faults(**faults)
            summaries.append(_run(warehouse, _clients(server.url), actions, sleeps))
        ledger = read_ledger(warehouse)
        assert len(ledger) == N_ACTIONS
        assert {e.state for e in ledger} <= {"applied", "noop"}, {e.state for e in ledger}

        # One more rerun changes nothing and calls nothing but the gates.
        final = _run(warehouse, _clients(server.url), actions, sleeps)
        assert final.counts == {"already_applied": N_ACTIONS}

        admin = server.admin
        admin.set_faults(seed=0)
        budgets = {b["target_id"]: b["amount"] for b in admin.budgets()}
        mutations = admin.mutations()

    # The sandbox's own state: every budget holds its target, and was written exactly once.
    assert budgets == want
    writes: dict[str, int] = {}
    for m in mutations:
        writes[m["target_id"]] = writes.get(m["target_id"], 0) + 1
    assert writes == {tid: 1 for tid in want}, {k: v for k, v in writes.items() if v != 1}
    # The faults really happened, and throttling hints were honoured.
    assert len(summaries) >= 1 and max(sleeps) >= 0.5
    # Every request, response and read-back is in the audit log, and the chain is intact.
    log = AuditLog(DuckDBAuditStore(warehouse))
    result = log.verify()
    assert result.ok and result.checked > 4 * N_ACTIONS


def test_kill_switch_stops_a_run_before_its_next_call_and_the_rerun_finishes(
    tmp_path, monkeypatch, capsys
):
    warehouse = tmp_path / "warehouse.duckdb"
    switch_path = tmp_path / "control" / "kill_switch.json"
    monkeypatch.setenv("ADLOOP_KILL_SWITCH_PATH", str(switch_path))
    monkeypatch.setenv("ADLOOP_WAREHOUSE_PATH", str(warehouse))
    monkeypatch.delenv("ADLOOP_KILL_SWITCH", raising=False)
    targets = _targets(20)
    actions = _actions(targets)
    switch = KillSwitch(switch_path)

    def engaged():
        state = switch.state()
        return state.reason if state.engaged else None

    with SandboxServer(
        tmp_path / "sandbox", api_token=API, admin_token=ADMIN, developer_token=DEV
    ) as server:
        admin = server.admin
        admin.seed([seed_entry(t, amount) for t, amount in targets])
        clients = _clients(server.url)
        writes_seen = []

        class FlipAfterFiveWrites:
            def __init__(self, inner):
                self.inner, self.platform = inner, inner.platform

            def read_budget(self, target):
                return self.inner.read_budget(target)

            def set_status(self, *a, **kw):
                return self.inner.set_status(*a, **kw)

            def update_budget(self, target, amount, *, validate_only, idempotency_key):
                record = self.inner.update_budget(
                    target, amount, validate_only=validate_only, idempotency_key=idempotency_key
                )
                if not validate_only:
                    writes_seen.append(target.target_id)
                    if len(writes_seen) == 5:  # someone runs the command mid-run
                        assert adloop(["kill-switch", "on", "--reason", "proof: stop now"]) == 0
                return record

        wrapped = {k: FlipAfterFiveWrites(v) for k, v in clients.items()}
        sleeps: list[float] = []
        summary = _run(warehouse, wrapped, actions, sleeps, kill=engaged)
        assert (
            summary.stopped_by_kill_switch and "proof: stop now" in summary.stopped_by_kill_switch
        )
        mutations = admin.mutations()
        assert len(mutations) == 5  # not one call reached the platform after the switch
        assert [r.outcome for r in summary.results].count(
            "applied"
        ) == 4  # the 5th is read back next run
        # Engaged, a new run sends nothing at all.
        blocked = _run(warehouse, clients, actions, sleeps, kill=engaged)
        assert {r.outcome for r in blocked.results} <= {"already_applied", "blocked"}
        assert len(admin.mutations()) == 5

        assert adloop(["kill-switch", "off"]) == 0
        done = _run(warehouse, clients, actions, sleeps, kill=engaged)
        assert not done.stopped_by_kill_switch
        mutations = admin.mutations()
        assert sorted(m["target_id"] for m in mutations) == sorted(t.target_id for t, _ in targets)
        assert {b["target_id"]: b["amount"] for b in admin.budgets()} == {
            a.target.target_id: a.value for a in actions
        }
    capsys.readouterr()


def test_a_tampered_audit_row_is_named_by_audit_verify(tmp_path, capsys):
    warehouse = tmp_path / "warehouse.duckdb"
    targets = _targets(6)
    with SandboxServer(
        tmp_path / "sandbox", api_token=API, admin_token=ADMIN, developer_token=DEV
    ) as server:
        server.admin.seed([seed_entry(t, amount) for t, amount in targets])
        _run(warehouse, _clients(server.url), _actions(targets), [])
    assert adloop(["audit", "verify", "--warehouse", str(warehouse)]) == 0
    with duckdb.connect(str(warehouse)) as conn:
        seq = conn.execute(
            "select seq from audit.log where kind = 'response' order by seq limit 1 offset 3"
        ).fetchone()[0]
        conn.execute(
            "update audit.log set payload = replace(payload::varchar, 'write', 'wrote')::json where seq = ?",
            [seq],
        )
    capsys.readouterr()
    assert adloop(["audit", "verify", "--warehouse", str(warehouse)]) == 1
    assert f"BROKEN at seq {seq}" in capsys.readouterr().out
