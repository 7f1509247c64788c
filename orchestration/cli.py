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
    print(
        f"\nWarehouse: {os.environ[WAREHOUSE_PATH_ENV]} (open it with duckdb or any BI tool that reads DuckDB)\n"
        "Open the Dagster UI on http://127.0.0.1:3000 with:  make ui"
    )
    return 0 if run.success else 1


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

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:  # configuration errors: say what is wrong, no traceback
        print(f"adloop: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
