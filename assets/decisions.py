"""Action proposals: the budget plan, moderated creative variants and OPE-gated traffic splits
turned into one row per proposed platform change, each judged by the policy engine.

A proposal states the change from what the platform holds *now* (read from its API), so the
step limits measure what the platform will see. The plan is a target; a proposal moves toward
it by at most the policy's step per action, and the rest follows in later weeks. Rows are keyed
by the proposal's hash: rerunning on the same inputs writes nothing new, and a changed input is
a new proposal (earlier approvals do not carry over).
"""

import hashlib
import json
from datetime import UTC, date, datetime, time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from assets.budget import BUDGET_PLAN
from assets.creatives import CREATIVE_VARIANTS
from assets.metadata import markdown_table
from assets.mmm import PRIMARY_MMM, load_primary_fit
from assets.resources import AdPlatforms, LandingZone, Warehouse
from connectors.ad_platforms.base import BudgetTarget
from connectors.warehouse import tables_exist
from connectors.warehouse.decisions_store import DecisionsStore
from models.actuation import to_usd
from models.audit import AuditLog
from models.mmm.artifacts import load_result
from models.policy import (
    DEFAULT_POLICY_PATH,
    UNIT_USD_PER_DAY,
    ActionProposal,
    ActuationPolicy,
    AppliedChange,
    evaluate,
    load_actuation_policy,
    step_toward,
)
from models.policy.approvals import proposal_row

ACTION_PROPOSALS = dg.AssetKey(["decisions", "action_proposals"])
TRAFFIC_SPLIT = dg.AssetKey(["decisions", "creative_traffic_split"])
EFFECT_METRIC = "revenue_usd_per_week"
CI = 0.94


class ProposalsConfig(dg.Config):
    policy_path: str = str(DEFAULT_POLICY_PATH)
    # The day the changes are for; default the budget plan's week. Verdicts (blackouts, step
    # windows) are judged on this day.
    as_of: str | None = None
    proposer: str = "adloop/weekly_budget"
    include_creatives: bool = True
    launch_share: float = 0.1  # traffic share a launched variant starts with


def usd_per_unit(warehouse: Warehouse, currency: str, as_of: date) -> float:
    """The latest exchange rate on or before `as_of` (1 for USD)."""
    if currency == "USD":
        return 1.0
    with warehouse.connect(read_only=True) as conn:
        row = conn.execute(
            "select usd_per_unit from staging.stg_fx__rates where currency = ? and date_day <= ? "
            "order by date_day desc limit 1",
            [currency, as_of],
        ).fetchone()
    if row is None:
        raise dg.Failure(f"no {currency} exchange rate on or before {as_of} in stg_fx__rates")
    return float(row[0])


def _table(warehouse: Warehouse, sql: str, params=(), *, needs: tuple[str, ...]) -> pd.DataFrame:
    """`sql`'s result, or an empty frame while a table it reads (`needs`) does not exist yet."""
    with warehouse.connect(read_only=True) as conn:
        if not tables_exist(conn, *needs):
            return pd.DataFrame()
        return conn.execute(sql, list(params)).df()


def applied_history(warehouse: Warehouse) -> dict[str, list[AppliedChange]]:
    """Budget changes applied so far, by target key, dated by the day they were for."""
    rows = _table(
        warehouse,
        """select p.platform, p.account_id, p.target_id, p.created_for, p.value_json
           from decisions.action_proposals p
           join decisions.actuation_ledger l on l.proposal_hash = p.proposal_hash
           where l.state = 'applied' order by p.created_for, p.proposal_hash""",
        needs=("decisions.action_proposals", "decisions.actuation_ledger"),
    )
    history: dict[str, list[AppliedChange]] = {}
    for r in rows.itertuples():
        values = json.loads(r.value_json)
        at = datetime.combine(pd.Timestamp(r.created_for).date(), time(), tzinfo=UTC)
        history.setdefault(f"{r.platform}:{r.account_id}:{r.target_id}", []).append(
            AppliedChange(at, values["current"], values["proposed"])
        )
    return history


def _budget_proposals(
    context, config: ProposalsConfig, warehouse, landing, ad_platforms, policy: ActuationPolicy
) -> tuple[list[tuple[ActionProposal, str]], date, dict]:
    plan = _table(
        warehouse, "select * from decisions.budget_plan order by channel, geo",
        needs=("decisions.budget_plan",),
    )  # fmt: skip
    if plan.empty:
        raise dg.Failure("decisions.budget_plan is empty: materialise the budget plan first")
    fit, result_path = load_primary_fit(warehouse)
    fit_id = str(fit["fit_id"].iloc[0])
    if str(plan["fit_id"].iloc[0]) != fit_id:
        raise dg.Failure("the budget plan was made from another MMM fit than the current one")
    curves = load_result(result_path).curves
    as_of = (
        date.fromisoformat(config.as_of)
        if config.as_of
        else pd.Timestamp(plan["week_of"].iloc[0]).date()
    )
    plan_id = str(plan["plan_id"].iloc[0])

    targets = {(t.channel, t.geo): t for t in ad_platforms.targets(landing)}
    rates = {c: usd_per_unit(warehouse, c, as_of) for c in {t.currency for t in targets.values()}}
    with ad_platforms.session(context.log) as platforms:
        readings = {key: platforms[t.platform].read_budget(t) for key, t in sorted(targets.items())}
    current_daily = {
        key: to_usd(r.amount, targets[key], rates[targets[key].currency])
        for key, r in readings.items()
    }
    snapshot = hashlib.sha256(
        json.dumps(
            {f"{c}|{g}": [r.amount, r.status] for (c, g), r in readings.items()}, sort_keys=True
        ).encode()
    ).hexdigest()[:16]

    rule = policy.action_types.get("budget_change")
    step = rule.max_change_per_action if rule else None
    index = {(c, g): i for i, (c, g) in enumerate(zip(curves.channel, curves.geo, strict=True))}
    weekly_now = np.zeros(curves.n_units)
    weekly_new = np.zeros(curves.n_units)
    chosen: dict[tuple[str, str], tuple[float, float, float]] = {}
    for r in plan.itertuples():
        key = (r.channel, r.geo)
        cur = current_daily.get(key, r.current_spend / 7)
        target_daily = r.proposed_spend / 7
        new, _ = step_toward(cur, round(target_daily, 2), step)
        i = index[key]
        weekly_now[i], weekly_new[i] = cur * 7, new * 7
        chosen[key] = (cur, new, target_daily)
    effect = curves.contribution(weekly_new) - curves.contribution(weekly_now)  # [d, u]
    lo, hi = np.quantile(effect, [(1 - CI) / 2, 1 - (1 - CI) / 2], axis=0)
    mean = effect.mean(axis=0)

    out = []
    for (channel, geo), (cur, new, target_daily) in sorted(chosen.items()):
        if abs(new - round(cur, 2)) < 0.005:
            continue  # the platform already holds the plan (within a cent)
        t: BudgetTarget | None = targets.get((channel, geo))
        i = index[(channel, geo)]
        ratio = abs(new - cur) / cur if cur > 0 else None
        proposal = ActionProposal(
            action_type="budget_change",
            platform=t.platform if t else "offline",
            account_id=t.account_id if t else "offline",
            target_id=t.target_id if t else f"{channel}|{geo}",
            channel=channel,
            current_value=round(cur, 2),
            proposed_value=new,
            unit=UNIT_USD_PER_DAY,
            inputs={
                "budget_plan": plan_id,
                "mmm_fit": fit_id,
                "platform_snapshot": snapshot,
                "plan_target_usd_per_day": f"{target_daily:.2f}",
            },
            model_version=f"{PRIMARY_MMM}:{fit_id}",
            seed=0,
            expected_effect=float(mean[i]),
            effect_low=float(min(lo[i], mean[i])),
            effect_high=float(max(hi[i], mean[i])),
            effect_metric=EFFECT_METRIC,
            proposer=config.proposer,
            canary=policy.is_canary("budget_change", ratio),
            created_for=as_of,
        )
        out.append((proposal, geo))
    meta = {"plan_id": plan_id, "platform_snapshot": snapshot, "as_of": as_of.isoformat()}
    return out, as_of, meta


def _creative_proposals(
    warehouse,
    config: ProposalsConfig,
    policy: ActuationPolicy,
    targets_by_channel: dict[str, BudgetTarget],
) -> list[tuple[ActionProposal, str, str]]:
    """Creative launches (moderated variants) and traffic splits (OPE-gated); both always wait
    for a person (policy tier needs_approval)."""
    out = []
    rule = policy.action_types.get("traffic_split")
    split_step = rule.max_change_per_action if rule else None
    variants = _table(
        warehouse,
        "select * from decisions.creative_variants where status = 'proposed' order by variant_id",
        needs=("decisions.creative_variants",),
    )
    campaigns = _table(
        warehouse, "select campaign_id, platform, channel from marts.mart_campaigns",
        needs=("marts.mart_campaigns",),
    )  # fmt: skip
    account = {t.platform: t.account_id for t in targets_by_channel.values()}
    platform_of = dict(
        zip(campaigns.get("campaign_id", []), campaigns.get("platform", []), strict=True)
    )
    for v in variants.itertuples():
        platform = platform_of.get(v.campaign_id, "offline")
        copy_sha = hashlib.sha256(f"{v.headline}\n{v.body}".encode()).hexdigest()
        out.append((ActionProposal(
            action_type="creative_launch", platform=platform,
            account_id=account.get(platform, platform), target_id=str(v.campaign_id),
            channel=v.channel, current_value=None, proposed_value=config.launch_share,
            unit="share", inputs={"variant_id": str(v.variant_id), "copy_sha256": copy_sha},
            model_version=str(v.model), prompt_version=str(v.prompt_version), seed=int(v.seed),
            effect_metric="", proposer="adloop/creative_loop",
        ), "", str(CREATIVE_VARIANTS.to_user_string())))  # fmt: skip
    split = _table(
        warehouse,
        "select * from decisions.creative_traffic_split where proposed order by campaign_id, context, creative_id",
        needs=("decisions.creative_traffic_split",),
    )
    groups = split.groupby(["campaign_id", "context"], sort=True) if len(split) else []
    for (campaign_id, ctx), rows in groups:
        platform = platform_of.get(campaign_id, "offline")
        channel = (
            str(campaigns.set_index("campaign_id").loc[campaign_id, "channel"])
            if campaign_id in platform_of
            else "unknown"
        )
        r = rows.iloc[0]
        current = {
            str(c): float(x)
            for c, x in zip(rows["creative_id"], rows["current_share"], strict=True)
        }
        target = {
            str(c): float(x)
            for c, x in zip(rows["creative_id"], rows["proposed_share"], strict=True)
        }
        proposed, frac = step_toward(current, target, split_step)
        out.append((ActionProposal(
            action_type="traffic_split", platform=platform,
            account_id=account.get(platform, platform), target_id=f"{campaign_id}|{ctx}",
            channel=channel,
            current_value=current, proposed_value=proposed, unit="share",
            inputs={"candidate": str(r["candidate"]), "estimator": str(r["estimator"]),
                    "fraction_of_target": f"{frac:.6f}"},
            model_version=str(r["candidate"]), seed=int(r["seed"]),
            # A mixture's value is linear in the mixing weight: the effect scales exactly.
            expected_effect=frac * float(r["improvement"]),
            effect_low=frac * float(min(r["improvement_low"], r["improvement"])),
            effect_high=frac * float(max(r["improvement_high"], r["improvement"])),
            effect_metric="ctr_relative_improvement", proposer="adloop/creative_loop",
        ), "", str(TRAFFIC_SPLIT.to_user_string())))  # fmt: skip
    return out


@dg.asset(
    key=ACTION_PROPOSALS,
    deps=[BUDGET_PLAN],
    group_name="actuation",
    kinds={"python", "duckdb"},
)
def action_proposals(
    context: dg.AssetExecutionContext,
    config: ProposalsConfig,
    warehouse: Warehouse,
    landing: LandingZone,
    ad_platforms: AdPlatforms,
) -> dg.MaterializeResult:
    """`decisions.action_proposals`: one row per proposed change (budget changes from the plan,
    creative launches and traffic splits from the creative loop), with its inputs, model
    versions, seed, expected effect and interval, hash, and the policy's verdict and reasons.
    Every new proposal and verdict also goes into the audit log."""
    policy = load_actuation_policy(Path(config.policy_path))
    budget, as_of, meta = _budget_proposals(
        context, config, warehouse, landing, ad_platforms, policy
    )
    history = applied_history(warehouse)
    judged = []
    for proposal, geo in budget:
        key = f"{proposal.platform}:{proposal.account_id}:{proposal.target_id}"
        verdict = evaluate(proposal, policy, today=as_of, history=history.get(key, ()))
        judged.append((proposal, verdict, geo, BUDGET_PLAN.to_user_string()))
    if config.include_creatives:
        targets = {t.channel: t for t in ad_platforms.targets(landing)}
        for proposal, geo, source in _creative_proposals(warehouse, config, policy, targets):
            judged.append((proposal, evaluate(proposal, policy, today=as_of), geo, source))

    rows = [
        proposal_row(p, v, geo=geo, source=source, run_id=context.run_id)
        for p, v, geo, source in judged
    ]
    store = DecisionsStore(warehouse.path)
    known = {r["proposal_hash"] for r in store.proposals()}
    new_rows = [r for r in rows if r["proposal_hash"] not in known]
    written = store.upsert_proposals(rows)
    audit = AuditLog(_audit_store(warehouse))
    for p, v, _geo, source in judged:
        if p.proposal_hash in known:
            continue
        audit.append("proposal", p.proposal_hash, p.proposer, {"source": source, **p.to_dict()})
        audit.append("verdict", p.proposal_hash, "adloop/policy_engine", v.to_dict())
    frame = pd.DataFrame(rows)
    counts = (
        frame.groupby(["action_type", "verdict"]).size().reset_index(name="n")
        if len(frame)
        else frame
    )
    context.log.info(f"{len(rows)} proposals ({written} new) for {as_of}: "
                     f"{frame['verdict'].value_counts().to_dict() if len(frame) else {}}")  # fmt: skip
    shown = frame.sort_values(["action_type", "channel", "geo"]).head(40) if len(frame) else frame
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "new_proposals": len(new_rows),
            "policy_version": policy.version,
            "policy_sha256": policy.sha256,
            **meta,
            "by_verdict": dg.MetadataValue.md(
                markdown_table(["action_type", "verdict", "n"], counts.itertuples(index=False))
            )
            if len(frame)
            else "no proposals",
            "proposals": dg.MetadataValue.md(
                markdown_table(
                    ["id", "type", "channel", "geo", "current", "proposed", "verdict", "reasons"],
                    [
                        (
                            r.proposal_id,
                            r.action_type,
                            r.channel,
                            r.geo,
                            r.current_value,
                            r.proposed_value,
                            r.verdict,
                            "; ".join(json.loads(r.reasons))[:120],
                        )
                        for r in shown.itertuples()
                    ],
                )
            )
            if len(frame)
            else "no proposals",
        }
    )


def _audit_store(warehouse: Warehouse):
    from connectors.warehouse.audit_log import DuckDBAuditStore

    return DuckDBAuditStore(warehouse.path)
