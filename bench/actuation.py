"""Benchmark: what exactly-once costs. Budget changes per second through the actuator against
the local sandbox server (real HTTP, four calls an action: read, validate_only, write, read
back), in one run:

- baseline: an in-memory ledger and no audit log (nothing durable: a crash loses track);
- durable: the DuckDB ledger and the hash-chained audit log in the warehouse, one connection
  for the run, every write committed before the next call (what `actuate` does);
- durable under faults: the same with 20% throttling and 5% server errors (retries do not sleep
  here, so this measures the extra calls, not the servers' retry hints).

    .venv/bin/python bench/actuation.py [--actions 400]

Writes bench/results/actuation.json and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from connectors.ad_platforms import GoogleAdsClient, MetaClient, RetryPolicy  # noqa: E402
from connectors.ad_platforms.base import BudgetTarget  # noqa: E402
from connectors.ad_platforms.sandbox import SandboxServer, seed_entry  # noqa: E402
from connectors.warehouse.actuation import actuation_session  # noqa: E402
from models.actuation import AMOUNT, Action, Actuator, MemoryLedger  # noqa: E402
from models.audit import AuditLog  # noqa: E402
from models.policy import ActionProposal  # noqa: E402

TOKENS = {"api_token": "bench-api", "admin_token": "bench-admin", "developer_token": "bench-dev"}


def workload(n: int, offset: int) -> tuple[list[dict], list[Action]]:
    seeds, actions = [], []
    for i in range(n):
        google = i % 2 == 0
        t = BudgetTarget(
            "google_ads" if google else "meta", "4815162342" if google else "1029384756",
            str(offset + i), "search" if google else "social", f"G{i}", "USD" if google else "EUR",
        )  # fmt: skip
        amount = (100 + i) * (1_000_000 if google else 100)
        new = amount + (100_000 if google else 10)
        seeds.append(seed_entry(t, amount))
        proposal = ActionProposal(
            action_type="budget_change", platform=t.platform, account_id=t.account_id,
            target_id=t.target_id, channel=t.channel, current_value=float(amount),
            proposed_value=float(new), unit="platform_units", proposer="bench",
            created_for=date(2026, 1, 5),
        )  # fmt: skip
        actions.append(Action(proposal, t, AMOUNT, new))
    return seeds, actions


def run(server: SandboxServer, actions, *, durable: bool, warehouse: Path) -> tuple[float, int]:
    clients = {
        "google_ads": GoogleAdsClient(server.url, access_token=TOKENS["api_token"], developer_token=TOKENS["developer_token"]),
        "meta": MetaClient(server.url, access_token=TOKENS["api_token"]),
    }  # fmt: skip
    retry = RetryPolicy(max_attempts=10, base_s=0.0, cap_s=0.0, max_wait_s=1e9)
    started = time.perf_counter()
    if durable:
        with actuation_session(warehouse) as session:
            actuator = Actuator(clients, session.ledger, audit=AuditLog(session.audit_store),
                                retry=retry, sleep=lambda _s: None)  # fmt: skip
            summary = actuator.run(actions)
    else:
        actuator = Actuator(clients, MemoryLedger(), retry=retry, sleep=lambda _s: None)
        summary = actuator.run(actions)
    elapsed = time.perf_counter() - started
    assert summary.counts.get("applied") == len(actions), summary.counts
    return elapsed, actuator.calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=400)
    args = parser.parse_args()
    n = args.actions
    results = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        SandboxServer(Path(tmp) / "sandbox", **TOKENS) as server,
    ):
        for i, (name, durable, faults) in enumerate([
            ("baseline_memory_ledger", False, {}),
            ("durable_ledger_and_audit", True, {}),
            ("durable_under_faults", True, {"seed": 3, "throttle": 0.2, "throttle_retry_after_s": 0.0, "server_error": 0.05}),
        ]):  # fmt: skip
            seeds, actions = workload(n, 7_000_000_000 + i * 100_000)
            server.admin.seed(seeds)
            server.admin.set_faults(**faults)
            elapsed, calls = run(
                server, actions, durable=durable, warehouse=Path(tmp) / f"wh{i}.duckdb"
            )
            results[name] = {"actions": n, "seconds": round(elapsed, 3), "actions_per_s": round(n / elapsed, 1),
                             "http_calls": calls}  # fmt: skip
            print(f"{name:<26} {n / elapsed:8.1f} actions/s  {calls:6d} calls  {elapsed:6.2f} s")
    base = results["baseline_memory_ledger"]["seconds"]
    for name, r in results.items():
        r["time_ratio_vs_baseline"] = round(r["seconds"] / base, 2)
        print(f"{name:<26} {r['time_ratio_vs_baseline']:.2f}x the baseline's time")
    out = REPO / "bench" / "results" / "actuation.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
