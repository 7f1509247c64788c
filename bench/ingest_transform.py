"""Benchmark: raw events per second through ingestion and dbt, against a one-query floor.

For each size it simulates a market (not timed), then, each in a fresh process, measures:
  pipeline  the foundation as Dagster runs it (load every landing file into raw with quarantine
            and lineage, the blocking checks, dbt build of staging/intermediate/marts with tests)
  floor     bench/floor_query.sql: one hand-written DuckDB query over the same files that
            computes the same channel x geo x day mart
Wall time and peak memory (RSS of the process and its children, sampled every 0.1 s) for both;
the ratio pipeline/floor; and how each grows from the smallest to the largest size. Both
produce the mart, and the script checks that they agree.

    .venv/bin/python bench/ingest_transform.py                 # 1M and 5M events
    .venv/bin/python bench/ingest_transform.py --sizes 200000  # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
FLOOR_SQL = REPO / "bench" / "floor_query.sql"


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS bytes of the process tree, and its stdout."""
    # Output goes to files: a pipe nobody reads until the end fills up and blocks the child.
    with tempfile.TemporaryFile(mode="w+") as out_f, tempfile.TemporaryFile(mode="w+") as err_f:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out_f, stderr=err_f, text=True, cwd=REPO)
        ps = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                rss = ps.memory_info().rss + sum(
                    c.memory_info().rss for c in ps.children(recursive=True)
                )
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{err[-4000:]}")
    return elapsed, peak, out


def child_pipeline(landing: str) -> None:
    """Run in the measured process: the foundation, as the sensors chain it."""
    from models.ingestion.sources import event_days
    from orchestration.pipeline import run_foundation

    days = event_days(Path(landing))
    run = run_foundation(days[0], days[-1])
    if not run.success:
        raise SystemExit("pipeline run failed")
    steps = {}
    for r in run.results:
        for e in r.all_events:
            if e.event_type_value == "STEP_SUCCESS":
                steps[e.step_key] = round(e.event_specific_data.duration_ms / 1000, 2)
    print(json.dumps({"steps": steps}))


def child_floor(landing: str, out_db: str) -> None:
    import duckdb

    sql = FLOOR_SQL.read_text().replace("{landing}", landing)
    with duckdb.connect(out_db) as conn:
        conn.execute("set TimeZone = 'UTC'")
        conn.execute(f"create or replace table floor_mart as {sql}")
        print(json.dumps({"rows": conn.execute("select count(*) from floor_mart").fetchone()[0]}))


def compare(warehouse: Path, floor_db: Path) -> dict:
    import duckdb

    totals = (
        "select round(sum(spend_usd), 2), sum(clicks), sum(tracked_ad_clicks), count(*) from {}"
    )
    with duckdb.connect(str(warehouse), read_only=True) as c:
        mart = c.execute(totals.format("marts.mart_channel_geo_daily")).fetchone()
    with duckdb.connect(str(floor_db), read_only=True) as c:
        floor = c.execute(totals.format("floor_mart")).fetchone()
    return {"pipeline": mart, "floor": floor, "agree": mart == floor}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="1000000,5000000", help="tracking events per run, comma-separated"
    )
    parser.add_argument("--workdir", default=str(REPO / "data" / "bench"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "ingest_transform.json"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    base_env = {
        **os.environ,
        "ADLOOP_PII_HASH_KEY": os.environ.get("ADLOOP_PII_HASH_KEY", "bench-key-not-secret"),
    }
    results = []
    for n in sizes:
        sim = work / f"sim_{n}"
        print(f"[bench] {n:,} events: simulating into {sim} (not timed)", flush=True)
        subprocess.run(
            [sys.executable, "-m", "orchestration.cli", "simulate", "--out", str(sim), "--events", str(n)],
            check=True, cwd=REPO, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        truth = json.loads((sim / "truth.json").read_text())
        lines = truth["dirt"]["tracking_events"]["lines_total"]
        landing = str(sim / "landing")
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            warehouse = Path(tmp) / "warehouse.duckdb"
            env = {
                **base_env,
                "ADLOOP_WAREHOUSE_PATH": str(warehouse),
                "ADLOOP_LANDING_PATH": landing,
            }
            print(f"[bench] {n:,} events: pipeline", flush=True)
            p_time, p_peak, p_out = measure(
                [sys.executable, __file__, "--child-pipeline", landing], env
            )
            floor_db = Path(tmp) / "floor.duckdb"
            print(f"[bench] {n:,} events: floor query", flush=True)
            f_time, f_peak, _ = measure(
                [sys.executable, __file__, "--child-floor", landing, str(floor_db)], env
            )
            check = compare(warehouse, floor_db)
        row = {
            "events": n,
            "event_lines": lines,
            "pipeline_s": round(p_time, 1),
            "pipeline_peak_mb": round(p_peak / 2**20),
            "pipeline_events_per_s": round(lines / p_time),
            "floor_s": round(f_time, 1),
            "floor_peak_mb": round(f_peak / 2**20),
            "floor_events_per_s": round(lines / f_time),
            "ratio": round(p_time / f_time, 2),
            "steps_s": json.loads(p_out.strip().splitlines()[-1])["steps"],
            "marts_agree": check["agree"],
            "totals": check,
        }
        results.append(row)
        print(
            f"[bench] {json.dumps({k: v for k, v in row.items() if k not in ('steps_s', 'totals')})}",
            flush=True,
        )
        if not check["agree"]:
            print(f"[bench] WARNING: pipeline and floor marts differ: {check}", flush=True)
    if len(results) > 1:
        a, b = results[0], results[-1]
        scale = b["event_lines"] / a["event_lines"]
        growth = {"size_ratio": round(scale, 2), "pipeline_time_ratio": round(b["pipeline_s"] / a["pipeline_s"], 2),
                  "floor_time_ratio": round(b["floor_s"] / a["floor_s"], 2)}  # fmt: skip
    else:
        growth = {}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"results": results, "growth": growth}, indent=2) + "\n")
    print(
        "\n| events | pipeline s | floor s | ratio | pipeline events/s | peak MB pipeline / floor | marts agree |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['events']:,} | {r['pipeline_s']} | {r['floor_s']} | {r['ratio']}x | {r['pipeline_events_per_s']:,} "
              f"| {r['pipeline_peak_mb']:,} / {r['floor_peak_mb']:,} | {r['marts_agree']} |")  # fmt: skip
    if growth:
        print(f"\ngrowth {growth}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-pipeline":
        child_pipeline(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-floor":
        child_floor(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
