"""Benchmark: MMM fit time and recovery per backend and sampler, on the same panel, in one run.

The panel is the default simulated market's weekly geo panel (104 weeks x 10 geos x 6
channels), read from a warehouse the demo built (or built here from a fresh simulation). Each
fit runs in a fresh process and reports wall time (the whole fit: model build, sampling,
posterior predictive checks), ESS per second, divergences, median ROAS error against the
simulator's truth, and peak memory of the process tree. Ratios are against the first row,
pymc-marketing with nutpie on the national panel, measured in the same run.

    .venv/bin/python bench/mmm.py                      # every configuration
    .venv/bin/python bench/mmm.py --only pymc_marketing:nutpie:national
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest_transform import measure  # noqa: E402

CONFIGS = (
    "pymc_marketing:nutpie:national",
    "pymc_marketing:numpyro:national",
    "pymc_marketing:pymc:national",
    "pymc_marketing:nutpie:geo",
    "lightweight_mmm:numpyro:national",
)


def child(config: str, warehouse: str, truth_path: str, draws: int) -> None:
    """Run in the measured process: one fit, its numbers as JSON on stdout."""
    import duckdb
    import numpy as np

    from models.mmm.base import FitSettings, panel_from_mart

    backend, sampler, level = config.split(":")
    with duckdb.connect(warehouse, read_only=True) as conn:
        panel = panel_from_mart(conn.execute("select * from marts.mart_mmm_weekly_panel").df())
    settings = FitSettings(draws=draws, tune=draws, sampler=sampler, geo_level=level == "geo")
    if backend == "pymc_marketing":
        from models.mmm.pymc_backend import PymcMarketingBackend

        fit = PymcMarketingBackend(progress=lambda _m: None).fit(panel, settings)
    else:
        from models.mmm.lightweight_backend import LightweightMMMBackend

        fit = LightweightMMMBackend(progress=lambda _m: None).fit(panel, settings)
    truth = json.loads(Path(truth_path).read_text())["channels"]
    t = fit.channels.set_index("channel")
    err = [abs(t.loc[c, "roas_mean"] / truth[c]["true_roas"] - 1) for c in t.index]
    covered = sum(
        t.loc[c, "roas_low"] <= truth[c]["true_roas"] <= t.loc[c, "roas_high"] for c in t.index
    )
    d = fit.diagnostics
    print(json.dumps({
        "sampling_s": d.get("fit_seconds"), "ess_bulk_min": d.get("ess_bulk_min"),
        "ess_per_s": d.get("ess_bulk_per_second"), "divergences": d.get("divergences"),
        "rhat_max": d.get("rhat_max"), "roas_median_abs_err": float(np.median(err)),
        "covered": int(covered), "holdout_mape": d.get("holdout_mape"),
    }))  # fmt: skip


def build_warehouse(root: Path) -> tuple[str, str]:
    """Simulate the default market and run the foundation into `root` (not timed)."""
    from models.ingestion.sources import event_days
    from models.simulation.config import SimulationConfig
    from models.simulation.generator import simulate
    from orchestration.pipeline import run_foundation

    sim = simulate(SimulationConfig(events=30_000), root / "sim", log=print)
    os.environ["ADLOOP_WAREHOUSE_PATH"] = str(root / "warehouse.duckdb")
    os.environ["ADLOOP_LANDING_PATH"] = str(sim.landing_dir)
    days = event_days(sim.landing_dir)
    if not run_foundation(days[0], days[-1], log_level="WARNING").success:
        raise SystemExit("the foundation run failed; see its log")
    return str(root / "warehouse.duckdb"), str(root / "sim" / "truth.json")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warehouse", default=str(REPO / "data" / "warehouse.duckdb"))
    parser.add_argument("--truth", default=str(REPO / "data" / "sim" / "truth.json"))
    parser.add_argument("--draws", type=int, default=500, help="draws and tuning steps per chain")
    parser.add_argument("--only", action="append", help="backend:sampler:level (repeatable)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "mmm.json"))
    args = parser.parse_args()
    if args.child:
        child(args.child, args.warehouse, args.truth, args.draws)
        return

    tmp = None
    if not Path(args.warehouse).exists():
        tmp = tempfile.TemporaryDirectory(prefix="adloop-bench-mmm-")
        print(f"no warehouse at {args.warehouse}: simulating the default market into {tmp.name}")
        args.warehouse, args.truth = build_warehouse(Path(tmp.name))
    rows = []
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for config in args.only or CONFIGS:
        cmd = [sys.executable, __file__, "--child", config, "--warehouse", args.warehouse,
               "--truth", args.truth, "--draws", str(args.draws)]  # fmt: skip
        print(f"fitting {config} ...", flush=True)
        try:
            wall, peak, out = measure(cmd, env)
        except RuntimeError as exc:
            print(f"  failed: {str(exc).splitlines()[-1]}")
            rows.append({"config": config, "error": str(exc).splitlines()[-1]})
            continue
        row = {
            "config": config,
            "wall_s": wall,
            "peak_mb": peak / 2**20,
            **json.loads(out.strip().splitlines()[-1]),
        }
        rows.append(row)
        print(
            f"  {wall:.1f}s wall, {row['roas_median_abs_err']:.1%} median ROAS error, {peak / 2**30:.2f} GB peak"
        )
    base = next((r for r in rows if "wall_s" in r), None)
    print(
        f"\n| backend:sampler:panel | wall s | × baseline | ESS/s | divergences | ROAS median error | 94% covers | peak GB |\n|{'---|' * 8}"
    )
    for r in rows:
        if "wall_s" not in r:
            print(f"| {r['config']} | failed: {r['error']} |" + " |" * 6)
            continue
        print(
            f"| {r['config']} | {r['wall_s']:.0f} | {r['wall_s'] / base['wall_s']:.2f} | {r['ess_per_s']:.1f} | "
            f"{r['divergences']} | {r['roas_median_abs_err']:.1%} | {r['covered']}/6 | {r['peak_mb'] / 1024:.2f} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"draws": args.draws, "cpus": os.cpu_count(), "rows": rows}, indent=1)
    )
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
