"""Multi-touch attribution over consented click paths: first touch, last touch, Markov removal
effect and Shapley. Associational, and labelled so wherever it is shown."""

import dagster as dg

from assets.metadata import markdown_table
from assets.resources import Warehouse
from connectors.warehouse import replace_table
from models.attribution import CAVEAT, attribute

PATHS = dg.AssetKey(["intermediate", "int_touchpoint_paths"])


@dg.asset(
    key=["measurement", "attribution"],
    deps=[PATHS],
    group_name="measurement",
    kinds={"python", "duckdb"},
)
def attribution(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """`measurement.attribution`: tracked revenue of consented users credited to channels by
    first touch, last touch, Markov removal effect and Shapley value, with each method's shares.
    Associational, not causal: the triangulation shows it beside the experiments and MMMs."""
    with warehouse.connect(read_only=True) as conn:
        paths = conn.execute(
            "select user_key, channel_path, converted, revenue_usd from intermediate.int_touchpoint_paths order by user_key"
        ).df()
    table = attribute(paths, value="revenue_usd", path_col="channel_path")
    facts = dict(table.attrs)
    context.log.info(
        f"attributed {facts.get('total', 0):,.0f} USD over {facts.get('n_paths', 0):,} paths "
        f"({facts.get('n_converting_paths', 0):,} converting, {facts.get('n_empty_paths', 0):,} empty)"
    )
    table = table.assign(caveat=CAVEAT)
    with warehouse.connect() as conn:
        replace_table(conn, "measurement.attribution", table)
    cols = ["channel", "first_touch_share", "last_touch_share", "markov_share", "shapley_share"]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "caveat": CAVEAT,
            "paths": int(facts.get("n_paths", 0)),
            "converting_paths": int(facts.get("n_converting_paths", 0)),
            "empty_paths_ignored": int(facts.get("n_empty_paths", 0)),
            "shares": dg.MetadataValue.md(
                markdown_table(cols, table[cols].itertuples(index=False))
            ),
        }
    )
