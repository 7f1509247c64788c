"""The `adloop` command line: the second face of the wiring floor (it never imports assets'
internals to compute; it runs the same Dagster job the UI and the schedule run)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import date
from pathlib import Path

from models.simulation.config import SimulationConfig
from models.simulation.generator import LANDING_DIR, TRUTH_FILE, simulate

DEFAULT_DATA_DIR = Path("data")


def _num(value: float) -> str:
    return f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"


def _say(msg: str) -> None:
    print(f"[adloop {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cmd_simulate(args: argparse.Namespace) -> int:
    config = SimulationConfig(
        seed=args.seed,
        start_date=date.fromisoformat(args.start_date),
        weeks=args.weeks,
        geos=args.geos,
        events=args.events,
    )
    out = Path(args.out)
    truth_path = out / TRUTH_FILE
    if truth_path.exists() and not args.force:
        existing = json.loads(truth_path.read_text()).get("config")
        if existing == json.loads(json.dumps(config.to_dict(), default=str)):
            _say(
                f"{out} already holds this simulation (same config and seed); use --force to rewrite it"
            )
            _write_budget_targets(out)
            return 0
        raise SystemExit(
            f"{out} holds a different simulation; pass --force to overwrite it or choose another --out"
        )
    if args.force and (out / LANDING_DIR).exists():
        shutil.rmtree(out / LANDING_DIR)  # files of the old simulation must not linger
    started = time.time()
    result = simulate(config, out, log=_say)
    _write_budget_targets(out)
    t = result.truth
    _say(
        f"done in {time.time() - started:.1f}s: {t['counts']['events_unique']:,} events, "
        f"{t['counts']['orders_completed']:,} orders, landing files in {result.landing_dir}"
    )
    return 0


def _write_budget_targets(sim_dir: Path) -> None:
    """The sandbox's account mapping: which budget carries each channel × geo."""
    from models.actuation.targets import TARGETS_FILE, write_targets
    from models.simulation.closed_loop import budget_targets

    write_targets(sim_dir / LANDING_DIR / TARGETS_FILE, budget_targets(sim_dir))


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulate (if needed), then run ingest_and_transform over every arrival day, and summarise."""
    import dagster as dg

    from connectors.warehouse import WAREHOUSE_PATH_ENV, connect
    from models.ingestion.sources import LANDING_PATH_ENV, event_days

    data = Path(args.data_dir)
    sim_dir = data / "sim"
    os.environ.setdefault(WAREHOUSE_PATH_ENV, str(data / "warehouse.duckdb"))
    os.environ.setdefault(LANDING_PATH_ENV, str(sim_dir / LANDING_DIR))
    sim_args = argparse.Namespace(
        seed=args.seed, start_date=args.start_date, weeks=args.weeks, geos=args.geos, events=args.events,
        out=str(sim_dir), force=False,
    )  # fmt: skip
    cmd_simulate(sim_args)
    landing = Path(os.environ[LANDING_PATH_ENV])
    days = event_days(landing)
    if not days:
        raise SystemExit(f"no event files under {landing}")

    from orchestration.pipeline import run_foundation

    instance = (
        dg.DagsterInstance.get()
        if os.environ.get("DAGSTER_HOME")
        else dg.DagsterInstance.ephemeral()
    )
    _say(f"running ingest_events for arrival days {days[0]} .. {days[-1]}, then ingest_and_transform "
         f"(warehouse {os.environ[WAREHOUSE_PATH_ENV]})")  # fmt: skip
    started = time.time()
    run = run_foundation(days[0], days[-1], instance=instance, log_level=args.log_level)
    evaluations = run.check_evaluations()
    failed_checks = [
        f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations if not e.passed
    ]
    _say(
        f"{'succeeded' if run.success else 'FAILED'} in {time.time() - started:.0f}s: "
        f"{len(run.materialized())} assets materialised, {len(evaluations)} checks evaluated, "
        f"{len(failed_checks)} failed {failed_checks[:5]}"
    )
    if run.transform is None:
        _say(
            "the events run failed, so nothing downstream was built; see the run in the UI (make ui)"
        )
        return 1

    from orchestration.pipeline import run_creative_loop, run_measure_and_plan

    _say("running measure_and_plan: experiments, MMMs, attribution, triangulation, budget plan")
    started = time.time()
    measure = run_measure_and_plan(instance=instance, log_level=args.log_level)
    _report_run(measure, started)
    _say(
        "running creative_loop: embeddings, retrieval, fatigue, LLM variants, moderation, bandits, OPE"
    )
    started = time.time()
    creative = run_creative_loop(instance=instance, log_level=args.log_level)
    _report_run(creative, started)

    from orchestration.closed_loop import run_closed_loop

    loop_ok = True
    if args.loop_weeks > 0:
        _say(f"closed loop: {args.loop_weeks} simulated weeks against the sandbox ad platform")
        started = time.time()
        weeks = run_closed_loop(
            sim_dir, args.loop_weeks, instance=instance, log_level=args.log_level, say=_say
        )
        loop_ok = all(all(w.runs.values()) for w in weeks)
        _say(f"closed loop {'succeeded' if loop_ok else 'FAILED'} in {time.time() - started:.0f}s")

    truth = json.loads((sim_dir / TRUTH_FILE).read_text())
    print()
    with connect(os.environ[WAREHOUSE_PATH_ENV]) as conn:
        reconciliations = (
            ("Spend by channel (warehouse vs simulator truth, USD)", "truth",
             "select channel, sum(spend_usd) from marts.mart_channel_geo_daily group by 1",
             {ch: t["spend_reported_usd"] for ch, t in truth["channels"].items()}),
            ("Quarantined rows by source (warehouse vs injected)", "injected",
             "select source, count(*) from quarantine.rejected_rows group by 1", truth["expected_quarantine"]),
        )  # fmt: skip
        for title, label, sql, expected in reconciliations:
            print(f"{title}:")
            got = dict(conn.execute(sql).fetchall())
            for key, want in expected.items():
                print(f"  {key:<16} {_num(got.get(key, 0)):>16}  {label} {_num(want):>16}")
        print("Marts:")
        for (name,) in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' order by 1"
        ).fetchall():
            print(
                f"  marts.{name:<28} {conn.execute(f'select count(*) from marts.{name}').fetchone()[0]:>9,} rows"
            )
        _print_measurement(conn, truth)
        _print_creative(conn, truth)
        _print_closed_loop(conn)
    print(
        f"\nWarehouse: {os.environ[WAREHOUSE_PATH_ENV]} (open it with duckdb or any BI tool that reads DuckDB)\n"
        "Open the Dagster UI on http://127.0.0.1:3000 with:  make ui"
    )
    return 0 if run.success and measure.success and creative.success and loop_ok else 1


def cmd_sandbox(args: argparse.Namespace) -> int:
    from connectors.ad_platforms.sandbox.__main__ import main as sandbox_main

    return sandbox_main(args.sandbox_args or ["--help"])


def _print_closed_loop(conn) -> None:
    """Per week: what was proposed and applied, and the decision backtest against the truth."""
    tables = {r[0] for r in conn.execute(
        "select table_name from information_schema.tables where table_schema = 'decisions'"
    ).fetchall()}  # fmt: skip
    if "decision_backtest" not in tables:
        return
    print("Closed loop: proposals by week, type and verdict (decisions.action_proposals):")
    for week, kind, verdict, n in conn.execute(
        "select created_for, action_type, verdict, count(*) from decisions.action_proposals "
        "group by all order by all"
    ).fetchall():
        print(f"  {week}  {kind:<16} {verdict:<15} {n:>4}")
    print("Actions sent to the sandbox ad platform (decisions.actuation_ledger):")
    for state, n in conn.execute(
        "select state, count(*) from decisions.actuation_ledger group by all order by all"
    ).fetchall():
        print(f"  {state:<12} {n:>5}")
    print(
        "Decision backtest (decisions.decision_backtest), against the simulator's truth: regret is "
        "the true optimum for the same total spend minus the true weekly media contribution, USD"
    )
    print(f"  {'week':<11} {'spend before':>12} {'spend after':>12} {'regret before':>14} "
          f"{'regret after':>13} {'net change':>11}")  # fmt: skip
    for r in conn.execute(
        "select week_of, spend_before, spend_after, regret_before, regret_after, true_net_change "
        "from decisions.decision_backtest order by week_of"
    ).fetchall():
        print(f"  {r[0]!s:<11} {r[1]:>12,.0f} {r[2]:>12,.0f} {r[3]:>14,.0f} {r[4]:>13,.0f} "
              f"{r[5]:>+11,.0f}")  # fmt: skip


def _report_run(result, started: float) -> None:
    evaluations = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    failed = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations if not e.passed]
    _say(
        f"{'succeeded' if result.success else 'FAILED'} in {time.time() - started:.0f}s: "
        f"{len(evaluations)} checks evaluated, {len(failed)} failed {failed[:5]}"
    )


def _print_creative(conn, truth: dict) -> None:
    """What the creative loop proposed, and why the rest was not."""
    tables = {
        r[0]
        for r in conn.execute(
            "select table_schema || '.' || table_name from information_schema.tables"
        ).fetchall()
    }
    if "decisions.creative_variants" in tables:
        counts = dict(
            conn.execute(
                "select status, count(*) from decisions.creative_variants group by 1 order by 1"
            ).fetchall()
        )
        print(f"Creative variants (decisions.creative_variants): {counts}")
        for status, channel, headline, body, reasons in conn.execute(
            "select status, channel, headline, body, reasons from decisions.creative_variants "
            "order by status = 'proposed' desc, variant_id limit 6"
        ).fetchall():
            why = "" if status == "proposed" else f"  <- {', '.join(json.loads(reasons))[:110]}"
            print(f"  [{status}] {channel}: {headline!r} / {body[:60]!r}{why}")
    if "decisions.llm_calls" in tables:
        n, tin, tout, lat = conn.execute(
            "select count(*), sum(tokens_in), sum(tokens_out), median(latency_s) "
            "from decisions.llm_calls"
        ).fetchone()
        print(f"LLM calls: {n} ({tin} tokens in, {tout} out, median {lat:.1f}s a call)")
    if "decisions.creative_traffic_split" in tables:
        _print_traffic_splits(conn, truth)


def _print_traffic_splits(conn, truth: dict) -> None:
    from models.bandits.truth import policy_from_shares, true_policy_value, truth_logging_policy

    split = conn.execute(
        "select * from decisions.creative_traffic_split order by candidate, campaign_id"
    ).df()
    current = true_policy_value(truth, truth_logging_policy(truth))
    print(
        "Creative traffic splits (decisions.creative_traffic_split): click rate by off-policy "
        f"evaluation [95%] against the truth; the serving policy's true CTR is {current:.4%}"
    )
    for name, rows in split.groupby("candidate", sort=True):
        shares = {
            (r.campaign_id, json.loads(r.context).get("device"), r.creative_id): r.proposed_share
            for r in rows.itertuples()
        }
        true = true_policy_value(truth, policy_from_shares(shares))
        r = rows.iloc[0]
        verdict = (
            "PROPOSED"
            if r["proposed"]
            else ("passed the gate" if r["gate_passed"] else "held back")
        )
        print(
            f"  {name:<9} {r['estimated_ctr']:.4%} [{r['estimated_ctr_low']:.4%}, "
            f"{r['estimated_ctr_high']:.4%}]  truth {true:.4%}  improvement "
            f"[{r['improvement_low']:+.1%}, {r['improvement_high']:+.1%}]  {verdict}"
        )


def _roas_cell(v: tuple) -> str:
    return f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]"


def _print_measurement(conn, truth: dict) -> None:
    """The estimates beside the simulator's truth: what a newcomer should look at first."""
    tables = {r[0] for r in conn.execute(
        "select table_name from information_schema.tables where table_schema in ('measurement', 'decisions')"
    ).fetchall()}  # fmt: skip
    channels = truth["channels"]
    models = [
        m
        for m in ("mmm_pymc_marketing", "mmm_pymc_marketing_uncalibrated", "mmm_lightweight_mmm")
        if m in tables
    ]
    if models:
        print("ROAS by channel (mean [94% interval]) against the simulator's truth:")
        est = {m: {r[0]: r[1:] for r in conn.execute(
            f"select channel, roas_mean, roas_low, roas_high from measurement.{m}").fetchall()} for m in models}  # fmt: skip
        print(
            f"  {'channel':<9}{'truth':>7}  "
            + "".join(f"{m.removeprefix('mmm_'):>30}" for m in models)
        )
        for ch, t in channels.items():
            cells = "".join(
                f"{_roas_cell(est[m][ch]):>30}" if ch in est[m] else f"{'-':>30}" for m in models
            )
            print(f"  {ch:<9}{t['true_roas']:>7.2f}  {cells}")
    if "incrementality" in tables:
        print(
            "Geo experiments (augmented synthetic control, dark weeks; revenue lost) against the truth:"
        )
        rows = conn.execute(
            "select experiment_id, channel, incremental, incremental_ci_low, incremental_ci_high, p_value "
            "from measurement.incrementality where method = 'augmented_synthetic_control' and metric = 'revenue' "
            "order by 1"
        ).fetchall()
        true = {e["experiment_id"]: e["true_incremental_revenue"] for e in truth["experiments"]}
        for eid, ch, inc, lo, hi, p in rows:
            print(
                f"  {eid} {ch:<8} {-inc:>12,.0f} [{-hi:,.0f}, {-lo:,.0f}]  p={p:.3f}   truth {true.get(eid, float('nan')):>12,.0f}"
            )
    if "budget_plan" in tables:
        print("Budget plan for next week (decisions.budget_plan, by channel):")
        for ch, cur, new, eff in conn.execute(
            "select channel, sum(current_spend), sum(proposed_spend), sum(expected_effect) "
            "from decisions.budget_plan group by 1 order by 1"
        ).fetchall():
            print(
                f"  {ch:<9} {cur:>12,.0f} -> {new:>12,.0f}  ({new / cur - 1:+.1%})  expected {eff:+,.0f}/week"
            )


def cmd_audit(args: argparse.Namespace) -> int:
    """`audit verify` walks the hash chain in audit.log; `audit tail` prints the last entries."""
    import duckdb

    from connectors.warehouse.audit_log import AuditTableMissingError, DuckDBAuditStore
    from models.audit import AuditLog

    try:
        log = AuditLog(DuckDBAuditStore(args.warehouse))
    except RuntimeError as exc:  # no warehouse path
        print(f"adloop: {exc}", file=sys.stderr)
        return 2
    try:
        if args.audit_command == "tail":
            for e in log.tail(args.n):
                payload = json.dumps(e.payload, ensure_ascii=False, sort_keys=True)
                print(f"{e.seq:>6}  {e.recorded_at}  {e.kind:<11} {e.subject_id}  by {e.actor}  "
                      f"{e.entry_hash[:12]}  {payload[:120]}")  # fmt: skip
            return 0
        result = log.verify(expected_head=args.expect_head)
    except AuditTableMissingError as exc:
        print(f"adloop: {exc}", file=sys.stderr)
        return 2
    except duckdb.Error as exc:  # e.g. another process holds the warehouse's write lock
        print(f"adloop: cannot read {log.store.path}: {exc}", file=sys.stderr)
        return 2
    if result.ok:
        print(f"audit chain intact: {result.checked} entries (head {result.head_hash})")
        return 0
    print(f"audit chain BROKEN at seq {result.first_broken_seq}: {result.reason} "
          f"({result.checked} entries verified before it)")  # fmt: skip
    return 1


# --- proposals, approvals and the kill switch ---------------------------------------------------


def _fail(message: str, code: int = 2) -> int:
    print(f"adloop: {message}", file=sys.stderr)
    return code


def _approval_context(args: argparse.Namespace):
    """The store, the current policy and the verifier keys found in the environment."""
    from connectors.warehouse.decisions_store import DecisionsStore
    from models.policy import approver_keys_from_env, load_actuation_policy

    store = DecisionsStore(args.warehouse)
    policy = load_actuation_policy(args.policy)
    everyone = [a for t in policy.action_types for a in policy.approvers(t)]
    return store, policy, approver_keys_from_env(everyone)


def _value_text(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}:{v:.2f}" for k, v in sorted(value.items()))
    return f"{value:,.2f}"


def _change_text(current, proposed, ratio) -> str:
    """Signed percent change for numbers; the share of traffic moved for splits."""
    if isinstance(current, int | float) and isinstance(proposed, int | float) and current:
        return f"{proposed / current - 1:+.1%}"
    return "-" if ratio is None else f"{ratio:.1%} moved"


def _state_text(state, keys) -> str:
    unverified = [a for a, _ in state.refused if a.approver not in keys]
    return f"{state.state} ({len(unverified)} unverified here)" if unverified else state.state


def cmd_proposals(args: argparse.Namespace) -> int:
    """`proposals list` (awaiting approval, or --all) and `proposals show ID`."""
    from connectors.warehouse.decisions_store import ProposalLookupError, WarehouseLockedError
    from models.policy import approval_state

    try:
        store, policy, keys = _approval_context(args)
        if args.proposals_command == "show":
            row = store.proposal(args.id)
            approvals = store.approvals(row["proposal_hash"])
        else:
            rows, approvals = store.proposals(), store.approvals()
    except (RuntimeError, ProposalLookupError, WarehouseLockedError) as exc:
        return _fail(str(exc))

    if args.proposals_command == "show":
        state = approval_state(row, approvals, policy, keys)
        _print_proposal(row, state, policy, keys)
        return 0

    by_hash: dict[str, list] = {}
    for a in approvals:
        by_hash.setdefault(a["proposal_hash"], []).append(a)
    shown = []
    for row in rows:
        state = approval_state(row, by_hash.get(row["proposal_hash"], []), policy, keys)
        if args.all or (row["verdict"] == "needs_approval" and state.state == "pending"):
            shown.append((row, state))
    if not shown:
        print("no proposals" if args.all else "no proposals await approval (use --all to see every one)")  # fmt: skip
        return 0
    header = ("id", "type", "channel/geo", "target", "current -> proposed", "change", "verdict", "approval", "created_for")  # fmt: skip
    table = [header]
    for row, state in shown:
        values = json.loads(row["value_json"] or "{}")
        ratio = row["change_ratio"]
        table.append((
            row["proposal_id"], row["action_type"], f"{row['channel']}/{row['geo'] or '-'}",
            row["target_id"], f"{_value_text(values.get('current'))} -> {_value_text(values.get('proposed'))}",
            _change_text(values.get("current"), values.get("proposed"), ratio),
            row["verdict"], _state_text(state, keys), str(row["created_for"] or "-"),
        ))  # fmt: skip
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _print_proposal(row: dict, state, policy, keys) -> None:
    proposal = json.loads(row["proposal_json"])
    print(f"proposal {row['proposal_id']}  (hash {row['proposal_hash']})")
    for column in ("action_type", "platform", "account_id", "target_id", "channel", "geo", "unit",
                   "change_ratio", "expected_effect", "effect_low", "effect_high", "effect_metric",
                   "proposer", "canary", "created_for", "proposed_at", "source", "run_id"):  # fmt: skip
        print(f"  {column:<16} {row.get(column)}")
    values = json.loads(row["value_json"] or "{}")
    print(f"  {'value':<16} {_value_text(values.get('current'))} -> {_value_text(values.get('proposed'))}")  # fmt: skip
    for name in ("inputs", "model_version", "prompt_version", "seed"):
        print(f"  {name:<16} {proposal.get(name)}")
    print(f"verdict: {row['verdict']}  (policy v{row['policy_version']}, sha256 {row['policy_sha256']})")  # fmt: skip
    if row["policy_sha256"] != policy.sha256:
        print(f"  note: the current policy is v{policy.version} (sha256 {policy.sha256}); approvals are checked against it")  # fmt: skip
    for reason in json.loads(row["reasons"] or "[]"):
        print(f"  reason: {reason}")
    for check in json.loads(row["checks"] or "[]"):
        mark = "ok  " if check.get("passed") else "FAIL"
        print(f"  {mark} {check.get('name'):<16} {check.get('detail')}")
    print(f"approvers: {', '.join(json.loads(row['approvers'] or '[]')) or '-'}")
    print(f"approval state: {_state_text(state, keys)}: {state.reason}")
    for a in state.valid:
        print(f"  valid    {a.decision:<7} by {a.approver} at {a.signed_at}  {a.comment!r}")
    for a, why in state.refused:
        print(f"  refused  {a.decision:<7} by {a.approver} at {a.signed_at}  {a.comment!r}: {why}")


def cmd_approve(args: argparse.Namespace) -> int:
    """`approve ID` and `reject ID --reason`: sign with the key in the environment, store the
    signed decision and audit it. Every refusal happens before anything is written."""
    from connectors.warehouse.audit_log import DuckDBAuditStore
    from connectors.warehouse.decisions_store import (
        ProposalLookupError,
        WarehouseLockedError,
        retry_on_lock,
    )
    from models.audit import AuditLog, SecretInPayloadError, assert_no_secrets
    from models.policy import approval_state, check_approval, signer_from_env, verify_proposal_row

    decision = "approve" if args.command == "approve" else "reject"
    comment = (args.comment if decision == "approve" else args.reason) or ""
    try:
        signer = signer_from_env()
        store, policy, keys = _approval_context(args)
        row = store.proposal(args.id)
        proposal = verify_proposal_row(row)
    except (ValueError, RuntimeError, ProposalLookupError) as exc:  # tampering is a ValueError
        return _fail(str(exc))
    pid, who = row["proposal_id"], signer.approver
    if row["verdict"] != "needs_approval":
        return _fail(f"proposal {pid} has verdict {row['verdict']}: only needs_approval proposals take approvals")  # fmt: skip
    if who == proposal.proposer:
        return _fail(f"{who} proposed {pid}: no one approves or rejects their own proposal")
    if not policy.can_approve(proposal.action_type, who, proposal.proposer):
        allowed = ", ".join(policy.approvers(proposal.action_type)) or "nobody"
        return _fail(f"{who} may not decide on {proposal.action_type} under policy v{policy.version} (allowed: {allowed})")  # fmt: skip
    if signer.key.decode("utf-8", "replace") in comment:
        return _fail("the comment contains the signing key; nothing was written")
    approval = signer.sign(row["proposal_hash"], decision, comment=comment)
    mine = check_approval(approval, row, policy, {who: signer.key})
    if not mine.valid:
        return _fail(f"refused: {mine.reason}")
    payload = {
        **approval.to_row(),
        "proposal_id": pid,
        "action_type": proposal.action_type,
        "policy_version": policy.version,
        "policy_sha256": policy.sha256,
    }
    try:
        assert_no_secrets(payload)
    except SecretInPayloadError as exc:
        return _fail(f"the comment looks like it holds a secret ({exc}); nothing was written")
    try:
        stored = store.append_approval(approval.to_row())
    except (WarehouseLockedError, ProposalLookupError) as exc:
        return _fail(str(exc))
    print(f"recorded {decision} of proposal {pid} ({proposal.action_type} {proposal.target_id}) "
          f"by {who} at {approval.signed_at}: approval {approval.approval_id}, seq {stored['seq']}, "
          f"signature {approval.signature[:16]}...")  # fmt: skip
    if comment:
        print(f"  comment: {comment}")
    state = approval_state(row, store.approvals(row["proposal_hash"]), policy, {**keys, who: signer.key})  # fmt: skip
    print(f"  approval state now: {_state_text(state, {**keys, who: signer.key})}: {state.reason}")
    try:
        entry = retry_on_lock(
            lambda: AuditLog(DuckDBAuditStore(store.path)).append(
                "approval" if decision == "approve" else "rejection",
                row["proposal_hash"], who, {**payload, "seq": stored["seq"]},
            ),
            path=store.path, timeout_s=store.lock_timeout_s,
        )  # fmt: skip
    except WarehouseLockedError as exc:
        return _fail(f"the {decision} is recorded, but the audit entry is not: {exc}", 1)
    print(f"  audit entry {entry.seq} ({entry.kind}, {entry.entry_hash[:12]})")
    return 0


def cmd_kill_switch(args: argparse.Namespace) -> int:
    """`kill-switch on --reason R | off | status`: flip the file first, then try to audit."""
    import getpass

    from connectors.kill_switch import KillSwitch
    from connectors.warehouse import WAREHOUSE_PATH_ENV
    from connectors.warehouse.audit_log import DuckDBAuditStore
    from connectors.warehouse.decisions_store import WarehouseLockedError, retry_on_lock
    from models.audit import AuditLog

    environ = dict(os.environ)
    if args.warehouse:
        environ[WAREHOUSE_PATH_ENV] = args.warehouse
    try:
        switch = KillSwitch(environ=environ)
    except RuntimeError as exc:
        return _fail(str(exc))
    if args.switch_command == "status":
        state = switch.state()
        print(f"{state.describe()}  [{switch.path}]")
        return 0
    by = args.by or environ.get("ADLOOP_APPROVER_ID") or getpass.getuser()
    state = switch.engage(args.reason, by) if args.switch_command == "on" else switch.release(by)
    print(f"{state.describe()}  [{switch.path}]")
    if args.switch_command == "off" and state.engaged:
        print(f"  still ON: {state.reason}; the file is released, the environment is not")
    warehouse = environ.get(WAREHOUSE_PATH_ENV)
    if not warehouse:
        print(f"  not audited: no warehouse ({WAREHOUSE_PATH_ENV} is not set)")
        return 0
    payload = {"action": args.switch_command, "path": str(switch.path), "state": state.to_dict()}
    try:
        entry = retry_on_lock(
            lambda: AuditLog(DuckDBAuditStore(warehouse)).append("kill_switch", "kill_switch", by, payload),
            path=warehouse, timeout_s=1.0,
        )  # fmt: skip
    except WarehouseLockedError as exc:
        print(f"  the switch is flipped, but not audited: {exc}", file=sys.stderr)
        return 0
    print(f"  audit entry {entry.seq} (kill_switch, {entry.entry_hash[:12]})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adloop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def sim_options(p: argparse.ArgumentParser) -> None:
        defaults = SimulationConfig()
        p.add_argument("--seed", type=int, default=defaults.seed)
        p.add_argument(
            "--start-date", default=defaults.start_date.isoformat(), help="a Monday (YYYY-MM-DD)"
        )
        p.add_argument("--weeks", type=int, default=defaults.weeks)
        p.add_argument("--geos", type=int, default=defaults.geos)
        p.add_argument(
            "--events", type=int, default=defaults.events, help="approximate tracking events"
        )

    p_sim = sub.add_parser(
        "simulate", help="write a simulated advertiser's landing files and truth.json"
    )
    sim_options(p_sim)
    p_sim.add_argument("--out", default=str(DEFAULT_DATA_DIR / "sim"))
    p_sim.add_argument(
        "--force", action="store_true", help="overwrite a different simulation in --out"
    )
    p_sim.set_defaults(func=cmd_simulate)

    p_demo = sub.add_parser(
        "demo", help="simulate, then run the whole asset graph on the embedded defaults"
    )
    sim_options(p_demo)
    p_demo.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    p_demo.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Dagster console logs",
    )
    p_demo.add_argument(
        "--loop-weeks",
        type=int,
        default=3,
        help="simulated weeks of the closed loop against the sandbox ad platform (0: none)",
    )
    p_demo.set_defaults(func=cmd_demo)

    p_sandbox = sub.add_parser(
        "sandbox",
        help="the local sandbox ad platform (Google Ads + Meta): `adloop sandbox serve --state-dir "
        "DIR --port 8765`, `adloop sandbox seed --url URL FILE`; see docs/ad_platforms.md",
        add_help=False,
    )
    p_sandbox.add_argument("sandbox_args", nargs=argparse.REMAINDER)
    p_sandbox.set_defaults(func=cmd_sandbox)

    p_audit = sub.add_parser(
        "audit", help="the hash-chained audit log (audit.log in the warehouse)"
    )
    audit_sub = p_audit.add_subparsers(dest="audit_command", required=True)
    p_verify = audit_sub.add_parser(
        "verify", help="walk the chain; exit 1 naming the first broken row"
    )
    p_tail = audit_sub.add_parser("tail", help="print the last entries")
    p_tail.add_argument("-n", type=int, default=10, help="how many entries")
    p_verify.add_argument(
        "--expect-head",
        default=None,
        help="the head hash published earlier; catches a rewritten tail",
    )
    for p in (p_verify, p_tail):
        p.add_argument(
            "--warehouse", default=None, help="the DuckDB file (default: $ADLOOP_WAREHOUSE_PATH)"
        )
        p.set_defaults(func=cmd_audit)

    def approval_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--warehouse", default=None, help="the DuckDB file (default: $ADLOOP_WAREHOUSE_PATH)"
        )
        p.add_argument(
            "--policy", default=None, help="the actuation policy (default: policies/actuation.yaml)"
        )

    p_props = sub.add_parser("proposals", help="action proposals and their approval state")
    props_sub = p_props.add_subparsers(dest="proposals_command", required=True)
    p_list = props_sub.add_parser("list", help="proposals awaiting approval (--all: every one)")
    p_list.add_argument("--all", action="store_true", help="every proposal, whatever its state")
    p_show = props_sub.add_parser("show", help="one proposal, its verdict and its approvals")
    p_show.add_argument("id", help="the 12-character id, a unique hash prefix or the full hash")
    for p in (p_list, p_show):
        approval_options(p)
        p.set_defaults(func=cmd_proposals)

    p_approve = sub.add_parser(
        "approve", help="sign an approval (ADLOOP_APPROVER_ID and ADLOOP_APPROVER_KEY)"
    )
    p_approve.add_argument("id", help="the proposal id")
    p_approve.add_argument("--comment", default="", help="why, for the record")
    p_reject = sub.add_parser(
        "reject", help="sign a rejection (ADLOOP_APPROVER_ID and ADLOOP_APPROVER_KEY)"
    )
    p_reject.add_argument("id", help="the proposal id")
    p_reject.add_argument("--reason", required=True, help="why it must not run")
    for p in (p_approve, p_reject):
        approval_options(p)
        p.set_defaults(func=cmd_approve)

    p_kill = sub.add_parser("kill-switch", help="stop every ad-platform call, or allow them again")
    kill_sub = p_kill.add_subparsers(dest="switch_command", required=True)
    p_on = kill_sub.add_parser("on", help="engage the kill switch")
    p_on.add_argument("--reason", required=True, help="why everything must stop")
    p_off = kill_sub.add_parser("off", help="release the kill switch")
    p_status = kill_sub.add_parser("status", help="print the switch's state")
    for p in (p_on, p_off, p_status):
        p.add_argument(
            "--warehouse", default=None, help="the DuckDB file (default: $ADLOOP_WAREHOUSE_PATH)"
        )
        p.add_argument(
            "--by", default=None, help="who flips it (default: $ADLOOP_APPROVER_ID or the user)"
        )
        p.set_defaults(func=cmd_kill_switch)

    raw = sys.argv[1:] if argv is None else list(argv)
    if raw[:1] == ["sandbox"]:  # everything after `sandbox` belongs to the sandbox's own CLI
        return cmd_sandbox(argparse.Namespace(sandbox_args=raw[1:]))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:  # configuration errors: say what is wrong, no traceback
        print(f"adloop: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
