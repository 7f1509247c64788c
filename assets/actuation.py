"""Actuation: the gates, then the calls. Only budget changes, reverts and pauses that the
policy allows (or a valid approval unlocked) reach an ad platform, each exactly once.

Gates, each of which stops an action and says why (all are recorded in the audit log):
upstream blocking checks passed; policy verdict (and approval where needed); kill switch off;
the channel's daily cap; canary first. Calls: read, validate_only, write, read back, with the
ledger in `decisions.actuation_ledger` making a rerun after any crash safe
(`models/actuation/executor.py`). Creative launches and traffic splits are proposed, judged
and approved, but no connector applies them yet: they are reported as `unsupported`.
"""

import json
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from assets.decisions import ACTION_PROPOSALS, applied_history, usd_per_unit
from assets.metadata import markdown_table
from assets.resources import AdPlatforms, LandingZone, Warehouse
from connectors.ad_platforms.retry import RetryPolicy
from connectors.kill_switch import KillSwitch
from connectors.warehouse import connect, replace_table, tables_exist
from connectors.warehouse.actuation import actuation_session, read_ledger
from connectors.warehouse.audit_log import DuckDBAuditStore
from connectors.warehouse.decisions_store import DecisionsStore
from models.actuation import (
    AMOUNT,
    STATUS,
    Action,
    Actuator,
    DailyCapGate,
    canary_gate,
    kill_switch_gate,
    to_platform_amount,
    to_usd,
    upstream_checks_gate,
    verdict_gate,
)
from models.audit import AuditLog
from models.policy import DEFAULT_POLICY_PATH, ActionProposal, evaluate, load_actuation_policy
from models.policy.approvals import (
    approval_state,
    approver_keys_from_env,
    proposal_row,
    verify_proposal_row,
)

ACTUATION_RESULTS = dg.AssetKey(["decisions", "actuation_results"])
PLATFORM_BUDGETS = "decisions.platform_budgets"
ACTUATED_TYPES = ("budget_change", "budget_revert", "pause")


class StopLossTrigger(dg.Config):
    """A stop-loss rule that fired on one budget (sent by the spend-anomaly sensor)."""

    target_key: str
    rule_id: str
    action: str  # pause | revert
    detail: str


class ActuationConfig(dg.Config):
    policy_path: str = str(DEFAULT_POLICY_PATH)
    created_for: str | None = None  # the batch of proposals to act on; default the latest
    # When set, this run acts on these stop-loss triggers only (as proposals of their own).
    stop_loss: list[StopLossTrigger] = []  # noqa: RUF012 (pydantic copies defaults)
    max_attempts: int = 6  # per call, for throttling and transient errors
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0


def failed_blocking_checks(context: dg.AssetExecutionContext, sources: set[str]) -> list[str]:
    """Blocking asset checks upstream of the assets that made the proposals whose latest
    execution did not succeed (failed, errored, skipped or never ran)."""
    from assets import asset_graph

    graph = asset_graph()
    keys: set[dg.AssetKey] = set()
    for source in sources:
        key = dg.AssetKey.from_user_string(source)
        if graph.has(key):
            keys |= graph.get_ancestor_asset_keys(key, include_self=True)
    check_keys = [
        ck for ck in graph.get_check_keys_for_assets(keys) if graph.get_check_spec(ck).blocking
    ]
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    failed = []
    for ck in sorted(check_keys, key=lambda k: k.to_user_string()):
        record = latest.get(ck)
        if record is None or record.status != AssetCheckExecutionRecordStatus.SUCCEEDED:
            failed.append(
                f"{ck.to_user_string()} ({record.status.value if record else 'never ran'})"
            )
    return failed


def _canary_widen(
    conn_path: str, policy, created_for: date, observed: pd.DataFrame
) -> dict[str, bool | None]:
    """Per channel: True when a canary change in the canary geos was applied for an earlier
    week and the spend observed since is within the policy's pace of the budget set; False
    when it is outside; None when no canary has been applied yet."""
    if policy.canary is None:
        return {}
    with connect(conn_path, read_only=True) as conn:
        if not tables_exist(conn, "decisions.action_proposals", "decisions.actuation_ledger"):
            return {}
        try:
            applied = conn.execute(
                """select p.channel, p.geo, p.created_for, p.proposed_value
                   from decisions.action_proposals p join decisions.actuation_ledger l
                     on l.proposal_hash = p.proposal_hash
                   where l.state = 'applied' and p.canary and p.created_for < ?
                   order by p.created_for""",
                [created_for],
            ).df()
        except Exception as exc:
            if "does not exist" in str(exc):
                return {}
            raise
    widen: dict[str, bool | None] = {}
    for r in applied[applied["geo"].isin(policy.canary.geos)].itertuples():
        spent = observed[(observed["channel"] == r.channel) & (observed["geo"] == r.geo)
                         & (observed["date_day"] >= pd.Timestamp(r.created_for))]  # fmt: skip
        if spent.empty:
            continue
        pace = spent["spend_usd"].mean() / r.proposed_value - 1
        widen[r.channel] = bool(abs(pace) <= policy.canary.max_spend_pace)
    return widen


def record_stop_loss_proposals(context, config, policy, warehouse, targets, store) -> set[str]:
    """Turn stop-loss triggers into proposals (pause, or revert to the budget before the last
    change), judged by the policy, stored and audited like any other; returns their hashes."""
    by_key = {t.key: t for t in targets}
    with warehouse.connect(read_only=True) as conn:
        snaps = conn.execute(
            f"select * from {PLATFORM_BUDGETS} where created_for = (select max(created_for) from {PLATFORM_BUDGETS})"
        ).df()
    if snaps.empty:
        raise dg.Failure("stop-loss: no platform budgets recorded yet, nothing to revert to")
    created_for = pd.Timestamp(snaps["created_for"].iloc[0]).date()
    usd = {
        (ph, k): v
        for ph, k, v in zip(snaps["phase"], snaps["target_key"], snaps["usd_per_day"], strict=True)
    }
    audit = AuditLog(DuckDBAuditStore(warehouse.path))
    rows, hashes = [], set()
    for trig in config.stop_loss:
        target = by_key.get(trig.target_key)
        if target is None or trig.action not in ("pause", "revert"):
            raise dg.Failure(
                f"stop-loss trigger for unknown target or action: {trig.target_key} {trig.action}"
            )
        now_usd, good_usd = (
            usd.get(("after", trig.target_key)),
            usd.get(("before", trig.target_key)),
        )
        common = dict(
            platform=target.platform, account_id=target.account_id, target_id=target.target_id,
            channel=target.channel, inputs={"rule": trig.rule_id, "trigger": trig.detail},
            proposer="adloop/spend_anomaly_sensor", created_for=created_for,
        )  # fmt: skip
        if trig.action == "pause":
            proposal = ActionProposal(
                action_type="pause", current_value=1.0, proposed_value=0.0, unit="status", **common
            )
        else:
            proposal = ActionProposal(action_type="budget_revert", current_value=round(now_usd, 2),
                                      proposed_value=round(good_usd, 2), unit="usd_per_day", **common)  # fmt: skip
        verdict = evaluate(proposal, policy, today=created_for)
        rows.append(
            proposal_row(
                proposal,
                verdict,
                geo=target.geo,
                source=ACTUATION_RESULTS.to_user_string(),
                run_id=context.run_id,
            )
        )
        audit.append("proposal", proposal.proposal_hash, proposal.proposer, proposal.to_dict())
        audit.append("verdict", proposal.proposal_hash, "adloop/policy_engine", verdict.to_dict())
        context.log.warning(
            f"stop-loss {trig.rule_id} on {trig.target_key}: {trig.action} ({trig.detail}); policy: {verdict.outcome}"
        )
        hashes.add(proposal.proposal_hash)
    store.upsert_proposals(rows)
    return hashes


def _observed_spend(warehouse: Warehouse) -> pd.DataFrame:
    with warehouse.connect(read_only=True) as conn:
        return conn.execute(
            "select channel, geo, date_day, sum(spend_usd) as spend_usd "
            "from marts.mart_channel_geo_daily group by all order by all"
        ).df()


@dg.asset(
    key=ACTUATION_RESULTS,
    deps=[ACTION_PROPOSALS],
    group_name="actuation",
    kinds={"python", "duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            "no_failed_or_conflicting_actions",
            asset=ACTUATION_RESULTS,
            description="Every action that passed its gates was applied (or already held its "
            "value). Failed actions are safe to rerun; conflicts need a person.",
        )
    ],
)
def actuation_results(
    context: dg.AssetExecutionContext,
    config: ActuationConfig,
    warehouse: Warehouse,
    landing: LandingZone,
    ad_platforms: AdPlatforms,
):
    """`decisions.actuation_results`: what this run did with each proposal of the batch (applied,
    blocked by which gate, failed, unsupported), and `decisions.platform_budgets`: the budgets
    the platforms held before and after. The audit head after the run is in the metadata."""
    policy = load_actuation_policy(Path(config.policy_path))
    store = DecisionsStore(warehouse.path)
    stop_hashes = (
        record_stop_loss_proposals(context, config, policy, warehouse, ad_platforms.targets(landing), store)
        if config.stop_loss else set()
    )  # fmt: skip
    proposals = pd.DataFrame(store.proposals())
    if proposals.empty:
        raise dg.Failure("no action proposals: materialise decisions/action_proposals first")
    proposals["created_for"] = [
        None if pd.isna(d) else pd.Timestamp(d).date() for d in proposals["created_for"]
    ]
    created_for = (
        date.fromisoformat(config.created_for)
        if config.created_for
        else max(d for d in proposals["created_for"] if d is not None)
    )
    ledger = {e.action_id: e for e in read_ledger(warehouse.path)}
    in_doubt = {e.proposal_hash for e in ledger.values() if e.state == "write_sent"}
    if stop_hashes:
        batch = proposals[proposals["proposal_hash"].isin(stop_hashes | in_doubt)]
    else:
        batch = proposals[
            (proposals["created_for"] == created_for)
            | proposals["created_for"].isna()  # creative launches and splits: not tied to a week
            | proposals["proposal_hash"].isin(in_doubt)
        ]
    batch = batch.sort_values(["action_type", "channel", "geo", "proposal_hash"])
    unsupported = batch[~batch["action_type"].isin(ACTUATED_TYPES)]
    batch = batch[batch["action_type"].isin(ACTUATED_TYPES)]

    approvals = store.approvals()
    approver_ids = sorted({a for t in policy.action_types for a in policy.approvers(t)})
    keys = approver_keys_from_env(approver_ids)
    # The stored verdict column is not covered by the proposal hash, so the policy is run
    # again here on the verified proposal: an edited verdict cannot unlock an action.
    history = applied_history(warehouse)
    states, verdicts = {}, {}
    for row in pd.concat([batch, unsupported]).itertuples():
        proposal = verify_proposal_row(row._asdict())
        fresh = evaluate(proposal, policy, today=proposal.created_for or created_for,
                         history=history.get(f"{row.platform}:{row.account_id}:{row.target_id}", ()))  # fmt: skip
        verdicts[row.proposal_hash] = fresh.outcome
        mine = [a for a in approvals if a["proposal_hash"] == row.proposal_hash]
        states[row.proposal_hash] = approval_state(
            row._asdict(), mine, policy, keys, verdict=fresh.outcome
        ).state

    targets = {t.key: t for t in ad_platforms.targets(landing)}
    rates = {
        c: usd_per_unit(warehouse, c, created_for) for c in {t.currency for t in targets.values()}
    }
    kill = KillSwitch()

    def engaged() -> str | None:
        state = kill.state()
        return (state.reason or "engaged") if state.engaged else None

    actions = []
    for row in batch.itertuples():
        proposal = verify_proposal_row(row._asdict())
        key = f"{row.platform}:{row.account_id}:{row.target_id}"
        target = targets.get(key)
        if target is None:
            continue  # offline channels: the verdict already rejected them; nothing to call
        if row.action_type == "pause":
            actions.append(Action(proposal, target, STATUS, "PAUSED", canary_group=row.channel))
        else:
            usd = float(row.proposed_value)
            amount = to_platform_amount(usd, target, rates[target.currency])
            actions.append(Action(proposal, target, AMOUNT, amount, usd, canary_group=row.channel))

    upstream = failed_blocking_checks(context, set(batch["source"]))
    results = []
    with ad_platforms.session(context.log) as platforms:
        before = {k: platforms[t.platform].read_budget(t) for k, t in sorted(targets.items())}
        current_usd = {
            k: to_usd(r.amount, targets[k], rates[targets[k].currency]) for k, r in before.items()
        }
        gates = [
            upstream_checks_gate(upstream),
            verdict_gate(verdicts, states),
            kill_switch_gate(engaged),
            DailyCapGate(
                {ch: c.daily_spend_cap for ch, c in policy.channels.items()}, dict(current_usd),
                {k: t.channel for k, t in targets.items()},
            ),
            canary_gate(
                policy.canary.geos if policy.canary else (),
                _canary_widen(warehouse.path, policy, created_for, _observed_spend(warehouse)),
            ),
        ]  # fmt: skip
        with actuation_session(warehouse.path) as session:
            actuator = Actuator(
                platforms, session.ledger, audit=AuditLog(session.audit_store), kill_switch=engaged,
                retry=RetryPolicy(max_attempts=config.max_attempts, base_s=config.backoff_base_s,
                                  cap_s=config.backoff_cap_s),
                log=context.log.info,
            )  # fmt: skip
            summary = actuator.run(actions, gates)
            head = session.audit_store.last_rows(1)
        after = {k: platforms[t.platform].read_budget(t) for k, t in sorted(targets.items())}

    by_hash = {r.proposal_hash: r for r in summary.results}
    now = datetime.now(UTC).replace(tzinfo=None)
    for row in pd.concat([batch, unsupported]).itertuples():
        r = by_hash.get(row.proposal_hash)
        if row.action_type not in ACTUATED_TYPES:
            outcome, detail, gates_json, calls = (
                "unsupported",
                f"no connector applies {row.action_type} yet; proposal kept",
                "[]",
                0,
            )
        elif r is None:
            outcome, detail, gates_json, calls = (
                ("rejected", "rejected by policy: never sent", "[]", 0) if row.verdict == "rejected"
                else ("not_reached", "the run stopped before this action", "[]", 0)
            )  # fmt: skip
        else:
            outcome, detail, calls = r.outcome, r.detail, r.calls
            gates_json = json.dumps([g._asdict() for g in r.gates])
        results.append({
            "run_id": context.run_id, "created_for": created_for, "proposal_id": row.proposal_id,
            "proposal_hash": row.proposal_hash, "action_type": row.action_type, "channel": row.channel,
            "geo": row.geo, "current_value": row.current_value, "proposed_value": row.proposed_value,
            "verdict": row.verdict, "approval": states.get(row.proposal_hash, ""), "outcome": outcome,
            "detail": detail, "gates": gates_json, "calls": calls, "recorded_at": now,
        })  # fmt: skip
    table = pd.DataFrame(results)
    snap = pd.DataFrame([
        {"created_for": created_for, "phase": phase, "run_id": context.run_id, "target_key": k,
         "channel": targets[k].channel, "geo": targets[k].geo, "amount": r.amount, "status": r.status,
         "usd_per_day": to_usd(r.amount, targets[k], rates[targets[k].currency])}
        for phase, readings in (("before", before), ("after", after)) for k, r in readings.items()
    ])  # fmt: skip
    with warehouse.connect() as conn:
        replace_table(conn, "decisions.actuation_results", table)
        conn.register("snap", snap)
        conn.execute(f"create table if not exists {PLATFORM_BUDGETS} as select * from snap limit 0")
        conn.execute(
            f"delete from {PLATFORM_BUDGETS} where created_for = ? and phase = 'after'",
            [created_for],
        )
        if not conn.execute(
            f"select count(*) from {PLATFORM_BUDGETS} where created_for = ? and phase = 'before'",
            [created_for],
        ).fetchone()[0]:
            conn.execute(
                f"insert into {PLATFORM_BUDGETS} select * from snap where phase = 'before'"
            )
        conn.execute(f"insert into {PLATFORM_BUDGETS} select * from snap where phase = 'after'")
    counts = table["outcome"].value_counts().to_dict() if len(table) else {}
    context.log.info(f"actuation for {created_for}: {counts}"
                     + (f"; STOPPED by the kill switch: {summary.stopped_by_kill_switch}" if summary.stopped_by_kill_switch else ""))  # fmt: skip
    bad = table[table["outcome"].isin(["failed", "conflict"])] if len(table) else table
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "created_for": created_for.isoformat(),
            **{f"outcome_{k}": int(v) for k, v in sorted(counts.items())},
            "http_calls": actuator.calls,
            "kill_switch": summary.stopped_by_kill_switch or "off",
            "approvals_pending": sum(1 for st in states.values() if st == "pending"),
            "upstream_checks_failed": dg.MetadataValue.json(upstream),
            "audit_head": head[0]["entry_hash"] if head else "",
            "audit_entries": head[0]["seq"] if head else 0,
            "results": dg.MetadataValue.md(
                markdown_table(
                    [
                        "id",
                        "type",
                        "channel",
                        "geo",
                        "proposed",
                        "verdict",
                        "approval",
                        "outcome",
                        "detail",
                    ],
                    [
                        (
                            r.proposal_id,
                            r.action_type,
                            r.channel,
                            r.geo,
                            r.proposed_value,
                            r.verdict,
                            r.approval,
                            r.outcome,
                            r.detail[:100],
                        )
                        for r in table.head(60).itertuples()
                    ],
                )
            )
            if len(table)
            else "nothing to do",
        }
    )
    yield dg.AssetCheckResult(
        check_name="no_failed_or_conflicting_actions",
        passed=bool(len(bad) == 0),
        metadata={
            "failed_or_conflicting": len(bad),
            "ids": dg.MetadataValue.json(list(bad.get("proposal_id", []))),
        },
    )
