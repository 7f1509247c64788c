"""The asset graph, one module per stage. `all_assets()` and `all_asset_checks()` are the one
list of what the code location holds (orchestration/definitions.py assembles them); imports
are inside the functions so that importing one stage never imports every other."""


def all_assets() -> list:
    from assets import (
        actuation,
        attribution,
        backtest,
        bandits,
        budget,
        creatives,
        dbt,
        decisions,
        experiments,
        ingestion,
        mmm,
    )

    return [
        ingestion.raw_tracking_events,
        *ingestion.raw_source_assets,
        dbt.dbt_event_models,
        dbt.dbt_staging_models,
        dbt.dbt_mart_models,
        experiments.incrementality,
        experiments.geo_test_design,
        attribution.attribution,
        mmm.mmm_pymc_marketing,
        mmm.mmm_pymc_marketing_uncalibrated,
        mmm.mmm_lightweight_mmm,
        mmm.mmm_triangulation,
        budget.budget_plan,
        creatives.brand_passages,
        creatives.creative_embeddings,
        creatives.creative_fatigue,
        creatives.creative_variants,
        bandits.creative_bandit_stats,
        bandits.creative_traffic_split,
        decisions.action_proposals,
        actuation.actuation_results,
        backtest.decision_backtest,
    ]


def all_asset_checks() -> list:
    from assets import ingestion, quality

    return [*ingestion.reconciliation_checks, *quality.quality_checks]


_GRAPH = []


def asset_graph():
    """The whole asset graph (assets and checks), built once per process: what actuation reads
    to find the blocking checks upstream of a proposal, whichever job it runs in."""
    if not _GRAPH:
        # Not Definitions(...).resolve_asset_graph(): that validates resources, which a graph
        # needs none of. AssetGraph is internal to dagster 1.13; pinned in uv.lock.
        from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

        _GRAPH.append(AssetGraph.from_assets([*all_assets(), *all_asset_checks()]))
    return _GRAPH[0]
