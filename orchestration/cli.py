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
            return 0
        raise SystemExit(
            f"{out} holds a different simulation; pass --force to overwrite it or choose another --out"
        )
    if args.force and (out / LANDING_DIR).exists():
        shutil.rmtree(out / LANDING_DIR)  # files of the old simulation must not linger
    started = time.time()
    result = simulate(config, out, log=_say)
    t = result.truth
    _say(
        f"done in {time.time() - started:.1f}s: {t['counts']['events_unique']:,} events, "
        f"{t['counts']['orders_completed']:,} orders, landing files in {result.landing_dir}"
    )
    return 0


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
    print(
        f"\nWarehouse: {os.environ[WAREHOUSE_PATH_ENV]} (open it with duckdb or any BI tool that reads DuckDB)\n"
        "Open the Dagster UI on http://127.0.0.1:3000 with:  make ui"
    )
    return 0 if run.success and measure.success and creative.success else 1


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
    p_demo.set_defaults(func=cmd_demo)

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

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:  # configuration errors: say what is wrong, no traceback
        print(f"adloop: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
