"""Marketing-mix models: pymc-marketing calibrated with the experiments (the model plans are
made from), the same model uncalibrated, lightweight-mmm in its own environment through
Dagster Pipes, and the triangulation of all of them with the experiments.

Each model asset owns one table, `measurement.<asset>`, with a row per channel (ROAS, marginal
ROAS, contribution, intervals) and the fit's diagnostics; the fitted model itself is saved
under the artifacts folder, named by panel fingerprint and settings, and loadable without a
refit. Diagnostics are blocking checks: a model that fails them stops everything downstream."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd

from assets.experiments import EXPERIMENTS, INCREMENTALITY, PANEL, PANEL_SQL, REGISTRY_SQL
from assets.metadata import markdown_table
from assets.resources import ArtifactStore, Warehouse
from connectors.warehouse import replace_table
from models.mmm.artifacts import save_result, stem_of
from models.mmm.base import FitSettings, Gates, MMMResult, panel_from_mart
from models.mmm.calibration import lift_tests_from_experiments
from models.mmm.plots import contributions_png, response_curves_png, roas_png
from models.mmm.triangulation import triangulate

PRIMARY_MMM = "mmm_pymc_marketing"
TIMINGS = ("fit_seconds", "ess_bulk_per_second")
# "Current" spend is the mean week of the last quarter: flighted channels (TV bursts) average out.
RUN_RATE_WEEKS = 13
CALIBRATION_METHOD = "augmented_synthetic_control"
GATE_CHECKS = {
    "converged": "r-hat, bulk effective sample size and divergences within their gates",
    "fits_history": "in-sample R² of weekly national revenue within its gate",
    "predicts_holdout": "error on the out-of-time holdout weeks within its gate",
}
GATE_OF_CHECK = {
    "converged": ("rhat_max", "ess_bulk_min", "divergence_rate"),
    "fits_history": ("in_sample_r2",),
    "predicts_holdout": ("holdout_mape",),
}


class MMMConfig(dg.Config):
    """Sampler settings; the defaults are the demo's (about a minute on 2 cores)."""

    draws: int = 1000
    tune: int = 1000
    chains: int = 2
    sampler: str = "nutpie"  # nutpie | numpyro | pymc
    geo_level: bool = True
    holdout_weeks: int = 8
    seed: int = 20240101

    def settings(self) -> FitSettings:
        return FitSettings(
            draws=self.draws, tune=self.tune, chains=self.chains, sampler=self.sampler,  # type: ignore[arg-type]
            geo_level=self.geo_level, holdout_weeks=self.holdout_weeks, seed=self.seed,
        )  # fmt: skip


class LightweightMMMConfig(MMMConfig):
    """lightweight-mmm samples with numpyro on the national panel; its media coefficients mix
    slowly, so it takes more draws to reach the effective-sample-size gate."""

    draws: int = 2000
    sampler: str = "numpyro"
    geo_level: bool = False


def _check_specs(key: dg.AssetKey, blocking: bool) -> list[dg.AssetCheckSpec]:
    """Gates block everything downstream for the model plans are made from; for the others a
    failure is reported, and the triangulation shows their estimates as not passing."""
    return [
        dg.AssetCheckSpec(name, asset=key, description=text, blocking=blocking)
        for name, text in GATE_CHECKS.items()
    ]


def read_panel(warehouse: Warehouse):
    with warehouse.connect(read_only=True) as conn:
        return panel_from_mart(conn.execute(PANEL_SQL).df())


def record_fit(
    context: dg.AssetExecutionContext,
    name: str,
    result: MMMResult,
    warehouse: Warehouse,
    artifacts: ArtifactStore,
    panel,
    extra_metadata: dict | None = None,
) -> dg.MaterializeResult:
    """Write the fit's table, result file and plots; return the materialisation with the
    diagnostics as blocking check results."""
    folder = artifacts.dir("mmm", name)
    result_path = save_result(result, folder)
    gates = Gates()
    failures = result.gate_failures(gates)
    table = result.channels.copy()
    total = table["contribution_mean"].sum()
    table["contribution_share"] = table["contribution_mean"] / total if total else float("nan")
    table.insert(0, "model", name)
    table.insert(1, "backend", result.backend)
    table["fit_id"] = stem_of(result)
    table["panel_fingerprint"] = result.panel_fingerprint
    table["calibrated_with"] = ",".join(result.calibrated_with)
    table["gates_passed"] = not failures
    table["gate_failures"] = "; ".join(failures)
    # Timings live in the metadata and the result file; the table holds what reruns reproduce.
    table["diagnostics"] = json.dumps(
        {k: v for k, v in result.diagnostics.items() if k not in TIMINGS}, sort_keys=True
    )
    table["result_path"] = str(result_path)
    table["model_path"] = str(result.artifact) if result.artifact else None
    with warehouse.connect() as conn:
        replace_table(conn, f"measurement.{name}", table)

    metadata: dict = {
        "dagster/row_count": len(table),
        "fit_id": stem_of(result),
        "panel_fingerprint": result.panel_fingerprint,
        "calibrated_with": ", ".join(result.calibrated_with) or "none",
        "settings": dg.MetadataValue.json(result.settings.to_dict()),
        "diagnostics": dg.MetadataValue.json(result.diagnostics),
        "result_file": dg.MetadataValue.path(str(result_path)),
        "summary": dg.MetadataValue.md(_summary_md(result)),
    }
    if result.artifact:
        metadata["model_file"] = dg.MetadataValue.path(str(result.artifact))
    try:
        metadata["roas_plot"] = dg.MetadataValue.path(
            str(roas_png(result, folder / f"{name}_roas.png"))
        )
        metadata["contributions_plot"] = dg.MetadataValue.path(
            str(contributions_png(result, folder / f"{name}_contributions.png"))
        )
        if result.curves is not None:
            current = _current_weekly(panel, result)
            metadata["response_curves_plot"] = dg.MetadataValue.path(
                str(response_curves_png(result, current, folder / f"{name}_response_curves.png"))
            )
    except Exception as exc:  # plots are a courtesy; a fit must not fail for them
        context.log.warning(f"could not draw plots for {name}: {exc}")
    metadata |= extra_metadata or {}
    d = result.diagnostics
    checks = []
    for check, keys in GATE_OF_CHECK.items():
        mine = [f for f in failures if f.split(" ", 1)[0] in keys]
        checks.append(
            dg.AssetCheckResult(
                check_name=check,
                passed=not mine,
                metadata={k: float(d[k]) for k in keys if k in d}
                | {"failures": dg.MetadataValue.json(mine)},
            )
        )
    if failures:
        context.log.error(f"{name} fails its diagnostics gates: {'; '.join(failures)}")
    return dg.MaterializeResult(metadata=metadata, check_results=checks)


def _summary_md(result: MMMResult) -> str:
    t = result.channels
    rows = [
        (r.channel, r.spend, r.roas_mean, f"{r.roas_low:.2f}–{r.roas_high:.2f}", r.mroas_mean,
         f"{r.mroas_low:.2f}–{r.mroas_high:.2f}", r.contribution_mean)
        for r in t.itertuples()
    ]  # fmt: skip
    ci = f"{result.settings.ci:.0%}"
    return markdown_table(
        ["channel", "spend", "ROAS", f"ROAS {ci}", "mROAS", f"mROAS {ci}", "contribution"], rows
    )


def _current_weekly(panel, result: MMMResult, weeks: int = RUN_RATE_WEEKS) -> dict[str, float]:
    """Mean weekly spend per curve unit over the last `weeks` weeks."""
    recent = panel.frame[panel.frame["week_start"] >= panel.weeks[-weeks]]
    out = {}
    for unit, ch, geo in zip(
        result.curves.units, result.curves.channel, result.curves.geo, strict=True
    ):
        rows = recent if geo is None else recent[recent["geo"] == geo]
        out[unit] = float(rows[f"spend_{ch}"].sum() / weeks)
    return out


def _pymc_mmm(name: str, calibrated: bool):
    key = dg.AssetKey(["measurement", name])
    deps = [PANEL, INCREMENTALITY, EXPERIMENTS] if calibrated else [PANEL]
    what = (
        "calibrated with the geo experiments' lift estimates (measurement.incrementality), so it "
        "agrees with what they measured; the budget plan is made from this model"
        if calibrated
        else "without experiment calibration: read beside the calibrated model to see what the "
        "experiments changed"
    )

    @dg.asset(
        key=key, deps=deps, group_name="measurement", kinds={"pymc", "duckdb"},
        check_specs=_check_specs(key, blocking=calibrated),
        description=(
            f"pymc-marketing MMM (geometric adstock, logistic saturation, yearly seasonality, "
            f"trend and promotion controls, geo dimension), {what}. Table measurement.{name}."
        ),
    )  # fmt: skip
    def _asset(
        context: dg.AssetExecutionContext,
        config: MMMConfig,
        warehouse: Warehouse,
        artifacts: ArtifactStore,
    ) -> dg.MaterializeResult:
        from models.mmm.pymc_backend import PymcMarketingBackend

        panel = read_panel(warehouse)
        lift_tests = ()
        if calibrated:
            with warehouse.connect(read_only=True) as conn:
                estimates = conn.execute(
                    "select * from measurement.incrementality order by experiment_id, method, metric"
                ).df()
                registry = conn.execute(REGISTRY_SQL).df()
            lift_tests = lift_tests_from_experiments(estimates, registry, panel, CALIBRATION_METHOD)
            if not lift_tests:
                context.log.warning(
                    "no completed experiments to calibrate with; fitting uncalibrated"
                )
        result = PymcMarketingBackend(progress=context.log.info).fit(
            panel, config.settings(), lift_tests, artifacts.dir("mmm", name)
        )
        return record_fit(context, name, result, warehouse, artifacts, panel, {
            "lift_tests": dg.MetadataValue.json([t.__dict__ for t in lift_tests]),
        })  # fmt: skip

    return _asset


mmm_pymc_marketing = _pymc_mmm(PRIMARY_MMM, calibrated=True)
mmm_pymc_marketing_uncalibrated = _pymc_mmm("mmm_pymc_marketing_uncalibrated", calibrated=False)
MMM_MODELS = [PRIMARY_MMM, "mmm_pymc_marketing_uncalibrated", "mmm_lightweight_mmm"]
LIGHTWEIGHT = dg.AssetKey(["measurement", "mmm_lightweight_mmm"])
# Runs in .venv-lwmmm; not named lightweight_mmm.py, which would shadow the library there.
PIPES_ENTRYPOINT = Path(__file__).parent / "pipes" / "fit_lightweight_mmm.py"


@dg.asset(
    key=LIGHTWEIGHT,
    deps=[PANEL],
    group_name="measurement",
    kinds={"jax", "duckdb"},
    check_specs=_check_specs(LIGHTWEIGHT, blocking=False),
)
def mmm_lightweight_mmm(
    context: dg.AssetExecutionContext,
    config: LightweightMMMConfig,
    warehouse: Warehouse,
    artifacts: ArtifactStore,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    """lightweight-mmm (Google's archived Bayesian MMM, `adstock` model, national), run in its own
    pinned environment through Dagster Pipes because it needs jax 0.4.23 and numpy<2. A second
    opinion for the triangulation, not used for planning. When its environment is not built the
    table is emptied and the materialisation says how to build it (`make lightweight-mmm`)."""
    from models.mmm.lightweight_backend import (
        LightweightMMMUnavailable,
        lightweight_python,
        prepare_inputs,
        read_result,
    )

    name = LIGHTWEIGHT.path[-1]
    panel = read_panel(warehouse)
    try:
        python = lightweight_python()
    except LightweightMMMUnavailable as exc:
        context.log.warning(str(exc))
        with warehouse.connect() as conn:
            replace_table(
                conn, f"measurement.{name}", pd.DataFrame({"model": pd.Series(dtype=str)})
            )
        return dg.MaterializeResult(
            metadata={"status": "not run: environment not built", "how_to_enable": str(exc)},
            check_results=[
                dg.AssetCheckResult(check_name=c, passed=True, metadata={"skipped": str(exc)})
                for c in GATE_CHECKS
            ],
        )
    settings = config.settings()
    workdir = artifacts.dir("mmm", name)
    _input, extras = prepare_inputs(panel, settings, workdir)
    invocation = pipes_subprocess_client.run(
        command=[str(python), str(PIPES_ENTRYPOINT)], context=context, extras=extras
    )
    reported = {}
    for res in invocation.get_results():
        reported |= {f"runner/{k}": v for k, v in (res.metadata or {}).items()}
    result = read_result(Path(extras["output_path"]), panel, settings)
    return record_fit(context, name, result, warehouse, artifacts, panel, reported)


@dg.asset(
    key=["measurement", "mmm_triangulation"],
    deps=[dg.AssetKey(["measurement", m]) for m in MMM_MODELS]
    + [INCREMENTALITY, dg.AssetKey(["measurement", "attribution"])],
    group_name="measurement",
    kinds={"python", "duckdb"},
)
def mmm_triangulation(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> dg.MaterializeResult:
    """`measurement.mmm_triangulation`: each channel's ROAS from every MMM that ran on the
    current panel and from every experiment (incremental ROAS with cool-down), side by side;
    `disagrees_with` names the sources whose interval does not overlap, and `channel_verdict`
    sums it up. Attribution shares sit beside them as associational context only."""
    with warehouse.connect(read_only=True) as conn:
        existing = {r[0] for r in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'measurement'"
        ).fetchall()}  # fmt: skip
        frames = [
            conn.execute(f"select * from measurement.{m} order by channel").df()
            for m in MMM_MODELS
            if m in existing
        ]
        experiments = conn.execute(
            "select * from measurement.incrementality where method = ? and metric = 'revenue_with_carryover' order by experiment_id",
            [CALIBRATION_METHOD],
        ).df()
        attribution = (
            conn.execute("select * from measurement.attribution order by channel").df()
            if "attribution" in existing
            else None
        )
    frames = [f for f in frames if len(f)]
    current = frames[0]["panel_fingerprint"].iloc[0] if frames else None
    stale = [f["model"].iloc[0] for f in frames if f["panel_fingerprint"].iloc[0] != current]
    mmm = (
        pd.concat(
            [f for f in frames if f["panel_fingerprint"].iloc[0] == current], ignore_index=True
        )
        if frames
        else pd.DataFrame()
    )
    if len(mmm):
        mmm = mmm.rename(columns={"model": "source"})
        mmm["calibrated_with"] = (
            mmm["calibrated_with"].fillna("").str.split(",").apply(lambda v: [x for x in v if x])
        )
    table = triangulate(mmm, experiments, attribution)
    with warehouse.connect() as conn:
        replace_table(conn, "measurement.mmm_triangulation", table)
    disagree = sorted(set(table.loc[table["channel_verdict"] == "disagree", "channel"]))
    if stale:
        context.log.warning(f"left out models fitted on another panel: {stale}")
    cols = ["channel", "source", "roas_mean", "roas_low", "roas_high", "disagrees_with"]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "sources": dg.MetadataValue.json(sorted(set(table["source"]))),
            "channels_in_disagreement": dg.MetadataValue.json(disagree),
            "left_out_stale_models": dg.MetadataValue.json(stale),
            "table": dg.MetadataValue.md(markdown_table(cols, table[cols].itertuples(index=False))),
        }
    )


def load_primary_fit(warehouse: Warehouse) -> tuple[pd.DataFrame, Path]:
    """The primary model's table and result file, for the budget plan."""
    with warehouse.connect(read_only=True) as conn:
        table = conn.execute(f"select * from measurement.{PRIMARY_MMM} order by channel").df()
    if table.empty:
        raise dg.Failure(f"measurement.{PRIMARY_MMM} is empty: materialise the MMM first")
    return table, Path(table["result_path"].iloc[0])
