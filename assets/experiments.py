"""Incrementality: geo holdouts measured with (augmented) synthetic control and conformal
inference, and where and how long the next test should run to be worth running."""

import dagster as dg

from assets.metadata import markdown_table
from assets.resources import Warehouse
from connectors.warehouse import replace_table
from models.experiments.geo import AUGMENTED_SYNTHETIC_CONTROL, SYNTHETIC_CONTROL
from models.experiments.holdouts import completed_holdouts, estimate_holdouts, weekly_outcomes
from models.experiments.power import select_test_markets

PANEL = dg.AssetKey(["marts", "mart_mmm_weekly_panel"])
EXPERIMENTS = dg.AssetKey(["staging", "stg_adloop__experiments"])
INCREMENTALITY = dg.AssetKey(["measurement", "incrementality"])
# Ordered reads: the estimates, and the MMM's graph built from them, follow row order.
REGISTRY_SQL = "select * from staging.stg_adloop__experiments order by experiment_id"
PANEL_SQL = "select * from marts.mart_mmm_weekly_panel order by week_start, geo"


class IncrementalityConfig(dg.Config):
    alpha: float = 0.1  # intervals are (1 - alpha); p-values test "no effect"
    cooldown_weeks: int = 7  # adstock lags after a holdout in which its loss still shows
    seed: int = 0


class TestDesignConfig(dg.Config):
    treated_geos: int = 4
    weeks: int = 8
    max_combinations: int = 12
    seed: int = 0


@dg.asset(
    key=INCREMENTALITY,
    deps=[PANEL, EXPERIMENTS],
    group_name="measurement",
    kinds={"python", "duckdb"},
    check_specs=[dg.AssetCheckSpec("every_completed_holdout_estimated", asset=INCREMENTALITY)],
)
def incrementality(
    context: dg.AssetExecutionContext, config: IncrementalityConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    """`measurement.incrementality`: one row per completed geo holdout, method (augmented and
    plain synthetic control) and metric (revenue in the dark weeks; with the adstock cool-down),
    with lift, incremental revenue, conformal interval and p-value, the placebo p-value and
    donor weights in `inputs`, and the incremental ROAS per dollar withheld. Signs: a holdout
    that works shows negative incremental revenue. BI tools and the MMM calibration read it."""
    with warehouse.connect(read_only=True) as conn:
        registry = conn.execute(REGISTRY_SQL).df()
        panel = conn.execute(PANEL_SQL).df()
    table, skipped = estimate_holdouts(
        registry, panel, methods=(AUGMENTED_SYNTHETIC_CONTROL, SYNTHETIC_CONTROL),
        alpha=config.alpha, cooldown_weeks=config.cooldown_weeks, seed=config.seed,
        progress=context.log.info,
    )  # fmt: skip
    for reason in skipped:
        context.log.warning(f"experiment not estimated: {reason}")
    with warehouse.connect() as conn:
        replace_table(conn, "measurement.incrementality", table)
    completed = completed_holdouts(registry)
    estimated = set(table["experiment_id"]) if len(table) else set()
    missing = sorted(set(completed["experiment_id"]) - estimated)
    shown = table[table["method"] == AUGMENTED_SYNTHETIC_CONTROL] if len(table) else table
    cols = [
        "experiment_id",
        "channel",
        "metric",
        "lift_pct",
        "lift_ci_low",
        "lift_ci_high",
        "p_value",
        "iroas",
    ]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "skipped": dg.MetadataValue.json(skipped),
            "estimates": dg.MetadataValue.md(
                markdown_table(cols, shown[cols].itertuples(index=False)) if len(shown) else "none"
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="every_completed_holdout_estimated",
                passed=not missing,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "missing": dg.MetadataValue.json(missing),
                    "skipped": dg.MetadataValue.json(skipped),
                },
            )
        ],
    )


@dg.asset(
    key=["measurement", "geo_test_design"],
    deps=[PANEL],
    group_name="measurement",
    kinds={"python", "duckdb"},
)
def geo_test_design(
    context: dg.AssetExecutionContext, config: TestDesignConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    """`measurement.geo_test_design`: candidate sets of geos for the next holdout, ranked by the
    minimum detectable lift (80% power, 10% level) of a test of the configured length,
    simulated on the revenue history with the same conformal test that will read it."""
    with warehouse.connect(read_only=True) as conn:
        panel = conn.execute(PANEL_SQL).df()
    y = weekly_outcomes(panel)
    context.log.info(
        f"scoring up to {config.max_combinations} sets of {config.treated_geos} geos for a "
        f"{config.weeks}-week holdout on {len(y)} weeks of revenue"
    )
    ranked = select_test_markets(
        y, n_treated=config.treated_geos, n_post_periods=config.weeks,
        max_combinations=config.max_combinations, seed=config.seed,
    )  # fmt: skip
    ranked.insert(0, "rank", range(1, len(ranked) + 1))
    ranked["weeks"] = config.weeks
    with warehouse.connect() as conn:
        replace_table(conn, "measurement.geo_test_design", ranked)
    top = ranked.head(5)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(ranked),
            "best_mde": float(ranked["mde"].iloc[0]) if len(ranked) else float("nan"),
            "top": dg.MetadataValue.md(
                markdown_table(list(top.columns), top.itertuples(index=False))
            ),
        }
    )
