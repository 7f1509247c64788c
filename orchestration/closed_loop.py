"""The closed loop on a simulated market, week by week, as `make demo` runs it:

    weekly_budget_reallocation (refit, plan, propose, gate, apply what is autonomous)
    -> a person approves the budget changes that need it (the demo's approver, signed)
    -> actuate (apply what is now approved)
    -> decision_backtest (what the applied budgets are worth under the true response)
    -> the market simulates the next week from the budgets the sandbox holds
    -> ingest that week (ingest_events + ingest_and_transform)

The sandbox ad platform runs for the whole loop; the simulator reads its budgets, so what the
loop applied is what the market spends. Rerunning resumes: weeks already simulated are not
simulated again, and the actuation ledger never applies an action twice.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from assets.resources import (
    SANDBOX_ADMIN_TOKEN,
    SANDBOX_API_TOKEN,
    SANDBOX_DEVELOPER_TOKEN,
    SANDBOX_URL_ENV,
)
from connectors.ad_platforms.sandbox import SandboxServer
from models.simulation.closed_loop import budget_targets, extend_simulation, load_market_state

# The demo's stand-in for a person: an allowed approver with a demo key. Real approvers set
# ADLOOP_APPROVER_ID and ADLOOP_APPROVER_KEY in their own shell and run `adloop approve`.
DEMO_APPROVER = "marketing-lead"
DEMO_APPROVER_KEY = "demo-approver-key-do-not-use-in-production"
DEMO_APPROVED_TYPES = ("budget_change",)  # creative launches and splits stay pending


@dataclass
class LoopWeek:
    week_of: str
    runs: dict[str, bool] = field(default_factory=dict)
    approved: int = 0
    simulated: bool = False


def demo_approver_env(environ=os.environ) -> None:
    """The demo approver's key, for signing and for verifying (unless the user set their own)."""
    var = "ADLOOP_APPROVER_KEY_" + DEMO_APPROVER.upper().replace("-", "_")
    environ.setdefault(var, DEMO_APPROVER_KEY)


def approve_pending(warehouse_path: str, say: Callable[[str], None]) -> int:
    """Approve, as the demo approver and through the same `adloop approve` a person runs, every
    pending budget change it may approve; returns how many were approved."""
    from connectors.warehouse.decisions_store import DecisionsStore
    from models.policy import approval_state, load_actuation_policy
    from models.policy.approvals import approver_keys_from_env
    from orchestration.cli import main as adloop

    store = DecisionsStore(warehouse_path)
    policy = load_actuation_policy()
    keys = approver_keys_from_env([DEMO_APPROVER])
    approvals = store.approvals()
    pending = [
        row for row in store.proposals(verdict="needs_approval")
        if row["action_type"] in DEMO_APPROVED_TYPES
        and policy.can_approve(row["action_type"], DEMO_APPROVER, row["proposer"])
        and approval_state(
            row, [a for a in approvals if a["proposal_hash"] == row["proposal_hash"]], policy, keys
        ).state == "pending"
    ]  # fmt: skip
    signer = {
        "ADLOOP_APPROVER_ID": DEMO_APPROVER,
        "ADLOOP_APPROVER_KEY": keys[DEMO_APPROVER].decode(),
    }
    saved = {k: os.environ.get(k) for k in signer}
    os.environ.update(signer)
    approved = 0
    try:
        for row in pending:
            with contextlib.redirect_stdout(io.StringIO()):
                code = adloop(["approve", row["proposal_id"], "--warehouse", warehouse_path,
                               "--comment", "demo approver: budget changes"])  # fmt: skip
            approved += code == 0
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    say(f"demo approver {DEMO_APPROVER} approved {approved} of {len(pending)} pending budget "
        "change(s) with `adloop approve`; creative launches and traffic splits stay pending for a "
        "person (adloop proposals list)")  # fmt: skip
    return approved


def run_closed_loop(
    sim_dir: Path,
    weeks: int,
    *,
    instance: dg.DagsterInstance,
    log_level: str,
    say: Callable[[str], None],
) -> list[LoopWeek]:
    """Run the loop until the simulation holds `weeks` closed-loop weeks (a rerun resumes)."""
    from orchestration.jobs import actuate_job, decision_backtest_job, weekly_budget_job
    from orchestration.pipeline import run_foundation, run_job

    warehouse = os.environ["ADLOOP_WAREHOUSE_PATH"]
    sandbox_dir = Path(os.environ.get("ADLOOP_SANDBOX_DIR") or Path(warehouse).parent / "sandbox")
    demo_approver_env()
    targets = budget_targets(sim_dir)
    out: list[LoopWeek] = []
    with SandboxServer(
        sandbox_dir, api_token=SANDBOX_API_TOKEN, admin_token=SANDBOX_ADMIN_TOKEN,
        developer_token=SANDBOX_DEVELOPER_TOKEN,
    ) as sandbox:  # fmt: skip
        admin = sandbox.admin
        if not admin.budgets():
            admin.seed(targets)
            say(f"sandbox ad platform at {sandbox.url}: seeded {len(targets)} budgets "
                f"(state in {sandbox_dir})")  # fmt: skip
        else:
            say(f"sandbox ad platform at {sandbox.url}: resuming its state in {sandbox_dir}")
        previous = os.environ.get(SANDBOX_URL_ENV)
        os.environ[SANDBOX_URL_ENV] = sandbox.url
        try:
            while len(load_market_state(sim_dir)["extensions"]) < weeks:
                done = len(load_market_state(sim_dir)["extensions"])
                week = LoopWeek(week_of="")
                say(f"closed loop week {done + 1} of {weeks}: weekly_budget_reallocation")
                for job in (weekly_budget_job, None, actuate_job, decision_backtest_job):
                    if job is None:
                        week.approved = approve_pending(warehouse, say)
                        continue
                    result = run_job(job.name, instance, log_level, None)
                    week.runs[job.name] = result.success
                    if not result.success:
                        say(f"{job.name} FAILED: see the run in the UI (make ui)")
                        return [*out, week]
                    say(f"{job.name} succeeded")
                budgets = admin.budgets()
                result = extend_simulation(sim_dir, budgets, log=say)
                week.week_of, week.simulated = str(result.week_start), result.created
                days = result.days
                say(
                    f"market simulated {result.week_start} from the sandbox's budgets; ingesting it"
                )
                run = run_foundation(days[0], days[-1], instance=instance, log_level=log_level)
                week.runs["ingest"] = run.success
                out.append(week)
                if not run.success:
                    say("ingesting the new week FAILED: see the run in the UI (make ui)")
                    return out
        finally:
            if previous is None:
                os.environ.pop(SANDBOX_URL_ENV, None)
            else:
                os.environ[SANDBOX_URL_ENV] = previous
    return out
