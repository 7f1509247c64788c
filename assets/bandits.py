"""Traffic among each campaign's creatives: Thompson-sampling posteriors from the platforms'
creative × day delivery, a contextual LinUCB policy from the serving log, and off-policy
evaluation of both against the policy that served. Only a candidate that beats it with
confidence is proposed; nothing here touches an ad platform."""

import json

import dagster as dg
import numpy as np
import pandas as pd

from assets.metadata import markdown_table
from assets.resources import Warehouse
from connectors.warehouse import replace_table
from models.bandits.gate import ope_gate
from models.bandits.linucb import fit_linucb, linucb_policy
from models.bandits.logs import from_serving_log
from models.bandits.thompson import beta_posteriors, floored_split, prob_best
from models.creative.generation import derive_seed

MART_CREATIVE_DAILY = dg.AssetKey(["marts", "mart_creative_daily"])
MART_CREATIVES = dg.AssetKey(["marts", "mart_creatives"])
MART_SERVING = dg.AssetKey(["marts", "mart_creative_serving"])
BANDIT_STATS = dg.AssetKey(["features", "creative_bandit_stats"])
TRAFFIC_SPLIT = dg.AssetKey(["decisions", "creative_traffic_split"])


class BanditStatsConfig(dg.Config):
    window_days: int = 28  # recent delivery only: creatives wear out
    prior_alpha: float = 1.0
    # A CTR-scale prior (mean 0.5%): with a flat Beta(1, 1) a creative never shown would look
    # like a 50% click rate and take most of the traffic.
    prior_beta: float = 199.0
    floor: float = 0.05  # every creative keeps at least this share, so exploration goes on
    draws: int = 10_000
    seed: int = 0


@dg.asset(
    key=BANDIT_STATS,
    deps=[MART_CREATIVE_DAILY, MART_CREATIVES],
    group_name="creative",
    kinds={"python", "duckdb"},
)
def creative_bandit_stats(
    context: dg.AssetExecutionContext, config: BanditStatsConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    """`features.creative_bandit_stats`: per campaign and creative, clicks and impressions over
    the last `window_days` of delivery, the Beta posterior of the click rate (mean and 90%
    interval), the probability of being the campaign's best creative, and the Thompson
    sampling traffic share (that probability, with a floor for exploration)."""
    with warehouse.connect(read_only=True) as conn:
        counts = conn.execute(
            """
            with last_day as (select max(date_day) as d from marts.mart_creative_daily)
            select c.campaign_id, c.creative_id, c.channel,
                   coalesce(sum(d.impressions), 0)::bigint as impressions,
                   coalesce(sum(d.clicks), 0)::bigint as clicks
            from marts.mart_creatives c
            cross join last_day
            left join marts.mart_creative_daily d
              on d.creative_id = c.creative_id and d.date_day > last_day.d - ?::integer
            where c.platform in ('google_ads', 'meta')
            group by c.campaign_id, c.creative_id, c.channel
            order by c.campaign_id, c.creative_id
            """,
            [config.window_days],
        ).df()
    if counts.empty:
        raise dg.Failure("no creatives on google_ads or meta: nothing to allocate")
    prior = (config.prior_alpha, config.prior_beta)
    parts = []
    for campaign_id, g in counts.groupby("campaign_id", sort=True):
        seed = derive_seed(config.seed, "thompson", campaign_id)
        post = beta_posteriors(g["clicks"], g["impressions"], g["creative_id"].tolist(), prior)
        p_best = prob_best(post, config.draws, seed)
        low, high = post.interval(0.9)
        parts.append(
            g.assign(
                posterior_mean=post.mean,
                posterior_low=low,
                posterior_high=high,
                prob_best=p_best,
                thompson_share=floored_split(p_best, min(config.floor, 1 / len(g))),
            )
        )
    table = pd.concat(parts, ignore_index=True).assign(window_days=config.window_days)
    with warehouse.connect() as conn:
        replace_table(conn, "features.creative_bandit_stats", table)
    cols = [
        "campaign_id",
        "creative_id",
        "impressions",
        "clicks",
        "posterior_mean",
        "thompson_share",
    ]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "campaigns": int(table["campaign_id"].nunique()),
            "prior": dg.MetadataValue.json(list(prior)),
            "preview": dg.MetadataValue.md(
                markdown_table(cols, table[cols].itertuples(index=False))
            ),
        }
    )


def _counts(frame: pd.DataFrame, keys: list[str]) -> dict[tuple, int]:
    return (
        {tuple(k): int(n) for k, n in frame.groupby(keys).size().items()}
        if len(keys) > 1
        else {(k,): int(n) for k, n in frame.groupby(keys[0]).size().items()}
    )


def _split_rows(name, policy, gate, log, serving, keys, arm_campaigns) -> list[dict]:
    ctx = log.contexts.drop_duplicates(keys).sort_values(keys).reset_index(drop=True)
    eligible = np.array(
        [[arm_campaigns[a] == c for a in log.arms] for c in ctx["campaign_id"]], dtype=bool
    )
    probs = policy(ctx, log.arms, eligible)
    served = _counts(serving, [*keys, "creative_id"])
    served_total = _counts(serving, keys)
    rows = []
    for i, c in ctx.iterrows():
        key = tuple(c[k] for k in keys)
        for j in np.flatnonzero(eligible[i]):
            arm = log.arms[j]
            rows.append(
                {
                    "candidate": name,
                    "campaign_id": c["campaign_id"],
                    "context": json.dumps({k: c[k] for k in keys[1:]}),
                    "creative_id": arm,
                    "current_share": served.get((*key, arm), 0) / served_total[key],
                    "proposed_share": float(probs[i, j]),
                    "estimated_ctr": gate.candidate_value.value,
                    "estimated_ctr_low": gate.candidate_value.lower,
                    "estimated_ctr_high": gate.candidate_value.upper,
                    "current_ctr": gate.logging_value.value,
                    "improvement": gate.improvement.value,
                    "improvement_low": gate.improvement.lower,
                    "improvement_high": gate.improvement.upper,
                    "gate_passed": gate.proposed,
                    "gate_reason": " ".join(gate.reasons),
                    "ess": gate.ess,
                    "rows_evaluated": gate.n,
                    "estimator": gate.estimator,
                }
            )
    return rows


class TrafficSplitConfig(dg.Config):
    # what LinUCB conditions on, besides the campaign
    context_columns: list[str] = ["device"]  # noqa: RUF012 (pydantic copies defaults)
    linucb_alpha: float = 1.0
    linucb_epsilon: float = 0.1  # the candidate keeps exploring, and OPE needs its probabilities
    # Relative CTR improvement the interval's lower end must clear (0.0 = any improvement).
    min_improvement: float = 0.0
    confidence: float = 0.95
    min_ess: float = 1000.0
    n_boot: int = 1000
    holdout_share: float = 0.5  # LinUCB learns on the rest; both candidates are judged here
    seed: int = 0


@dg.asset(
    key=TRAFFIC_SPLIT,
    deps=[BANDIT_STATS, MART_SERVING],
    group_name="creative",
    kinds={"python", "duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            "proposed_only_after_ope",
            asset=TRAFFIC_SPLIT,
            blocking=True,
            description="A split is proposed only if its off-policy improvement's lower bound "
            "clears the minimum; each context's shares sum to 1.",
        )
    ],
)
def creative_traffic_split(
    context: dg.AssetExecutionContext, config: TrafficSplitConfig, warehouse: Warehouse
):
    """`decisions.creative_traffic_split`: two candidate traffic policies, each creative's
    share per campaign (and device, for LinUCB), evaluated off-policy (doubly robust, with
    paired bootstrap intervals) on held-out rows of the serving log against the policy that
    served them. The better candidate that passes the gate is `proposed`; one that does not
    is kept with the reason. The actuation layer only ever applies proposed rows."""
    with warehouse.connect(read_only=True) as conn:
        serving = conn.execute(
            "select campaign_id, channel, geo, device, creative_id, propensity, clicked "
            "from marts.mart_creative_serving order by impression_id"
        ).df()
        stats = conn.execute(
            "select campaign_id, creative_id, thompson_share from features.creative_bandit_stats "
            "order by campaign_id, creative_id"
        ).df()
    if serving.empty:
        raise dg.Failure("the serving log is empty: no off-policy evaluation, so no proposal")
    arm_campaigns = dict(zip(stats["creative_id"], stats["campaign_id"], strict=True))
    log = from_serving_log(serving, arm_campaigns)
    rng = np.random.default_rng(derive_seed(config.seed, "holdout"))
    holdout = rng.random(log.n) < config.holdout_share
    train, evaluate = log.subset(~holdout), log.subset(holdout)

    share = stats.set_index("creative_id")["thompson_share"]

    def thompson_policy(contexts, arms, eligible):
        probs = np.where(eligible, share.reindex(list(arms)).to_numpy()[None, :], 0.0)
        return probs / probs.sum(axis=1, keepdims=True)

    model, encoder = fit_linucb(train, config.context_columns, alpha=config.linucb_alpha)
    linucb = linucb_policy(model, encoder, epsilon=config.linucb_epsilon)
    candidates = {"thompson": thompson_policy, "linucb": linucb}
    gates = {}
    for name, policy in candidates.items():
        probs = policy(evaluate.contexts, evaluate.arms, evaluate.eligible)
        gates[name] = ope_gate(
            evaluate, probs, min_improvement=config.min_improvement, confidence=config.confidence,
            min_ess=config.min_ess, n_boot=config.n_boot, seed=derive_seed(config.seed, name),
        )  # fmt: skip
        context.log.info(f"{name}: {'PROPOSED' if gates[name].proposed else 'held back'}; "
                         f"{gates[name].reasons[0]}")  # fmt: skip
    passed = [n for n, g in gates.items() if g.proposed]
    chosen = max(passed, key=lambda n: gates[n].improvement.lower) if passed else None

    # One row per candidate, campaign, context and creative, over the logged contexts:
    # Thompson's split is per campaign, LinUCB's per campaign and context.
    rows = []
    for name, policy in candidates.items():
        keys = ["campaign_id"] if name == "thompson" else ["campaign_id", *config.context_columns]
        rows += _split_rows(name, policy, gates[name], log, serving, keys, arm_campaigns)
    table = pd.DataFrame(rows).assign(proposed=lambda t: t["candidate"] == chosen, seed=config.seed)
    with warehouse.connect() as conn:
        replace_table(conn, "decisions.creative_traffic_split", table)
    summary = [
        (n, g.proposed, g.candidate_value.value, g.logging_value.value, g.improvement.lower,
         g.improvement.upper, g.ess)
        for n, g in gates.items()
    ]  # fmt: skip
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "chosen": chosen or "none: no candidate beat the serving policy with confidence",
            "serving_log_rows": log.n,
            "rows_evaluated": int(holdout.sum()),
            "gates": dg.MetadataValue.md(
                markdown_table(
                    [
                        "candidate",
                        "gate passed",
                        "CTR (DR)",
                        "current CTR",
                        "improvement low",
                        "improvement high",
                        "ESS",
                    ],
                    summary,
                )
            ),
        }
    )
    sums = table.groupby(["candidate", "campaign_id", "context"])["proposed_share"].sum()
    bad_sums = sums[(sums - 1).abs() > 1e-6].index.tolist()
    ungated = table[table["proposed"] & ~table["gate_passed"]]
    yield dg.AssetCheckResult(
        check_name="proposed_only_after_ope",
        passed=ungated.empty and not bad_sums,
        metadata={
            "proposed_rows": int(table["proposed"].sum()),
            "proposed_without_passing_gate": len(ungated),
            "contexts_not_summing_to_one": dg.MetadataValue.json([list(k) for k in bad_sums]),
        },
    )
