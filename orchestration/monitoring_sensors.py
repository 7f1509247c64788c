"""The spend-anomaly sensor: spend observed since the last budget change against the budgets
the platforms were set to. A stop-loss rule that fires requests an actuation run that pauses
the budget or reverts it to its last good value (per policy), recorded as proposals of their
own, judged by the policy and written to the audit log like every other change."""

from __future__ import annotations

import hashlib
import json

import dagster as dg
import pandas as pd

from assets.actuation import PLATFORM_BUDGETS
from assets.resources import Warehouse
from models.policy import DEFAULT_POLICY_PATH, evaluate_stop_loss, load_actuation_policy

ACTIONABLE = ("pause", "revert")


def stop_loss_triggers(budgets: pd.DataFrame, spend: pd.DataFrame, policy) -> list[dict[str, str]]:
    """Stop-loss triggers from the latest budgets (`decisions.platform_budgets`, phase after)
    and the daily spend observed on or after the day they were set for (`channel`, `geo`,
    `date_day`, `spend_usd`)."""
    if budgets.empty:
        return []
    latest = budgets[
        (budgets["phase"] == "after") & (budgets["created_for"] == budgets["created_for"].max())
    ]
    since = pd.Timestamp(latest["created_for"].iloc[0]) if len(latest) else None
    triggers = []
    for b in latest.sort_values("target_key").itertuples():
        seen = spend[
            (spend["channel"] == b.channel)
            & (spend["geo"] == b.geo)
            & (pd.to_datetime(spend["date_day"]) >= since)
        ]
        if seen.empty or b.status == "PAUSED":
            continue
        observed = {
            "spend": float(seen["spend_usd"].sum()),
            "planned_spend": float(b.usd_per_day) * len(seen),
        }
        for result in evaluate_stop_loss(policy, observed, channel=b.channel):
            if result.triggered and result.action in ACTIONABLE:
                triggers.append({
                    "target_key": b.target_key, "rule_id": result.rule_id,
                    "action": result.action, "detail": f"{b.channel} {b.geo} since {since.date()}: {result.detail}",
                })  # fmt: skip
    return triggers


def build_spend_anomaly_sensor(
    job_name: str, policy_path: str = str(DEFAULT_POLICY_PATH)
) -> dg.SensorDefinition:
    @dg.sensor(
        name="spend_anomaly_sensor",
        job_name=job_name,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Watches spend since the last budget change against the budgets set. A spike "
        "beyond a stop-loss rule's threshold requests an actuation run that pauses or reverts "
        "that budget (policies/actuation.yaml, stop_loss). The cursor holds the triggers already "
        "acted on, so one anomaly requests one run.",
    )
    def spend_anomaly_sensor(context: dg.SensorEvaluationContext, warehouse: Warehouse):
        policy = load_actuation_policy(policy_path)
        try:
            with warehouse.connect(read_only=True) as conn:
                budgets = conn.execute(f"select * from {PLATFORM_BUDGETS}").df()
                spend = conn.execute(
                    "select channel, geo, date_day, sum(spend_usd) as spend_usd "
                    "from marts.mart_channel_geo_daily where date_day >= "
                    f"(select max(created_for) from {PLATFORM_BUDGETS}) group by all"
                ).df()
        except Exception as exc:  # nothing actuated yet, or no marts
            return dg.SkipReason(f"nothing to watch yet: {exc}")
        seen = set(json.loads(context.cursor)) if context.cursor else set()
        triggers = stop_loss_triggers(budgets, spend, policy)
        new = [t for t in triggers if json.dumps(t, sort_keys=True) not in seen]
        cursor = json.dumps(sorted(seen | {json.dumps(t, sort_keys=True) for t in triggers}))
        if not new:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(
                    f"spend within every stop-loss rule ({len(triggers)} earlier trigger(s) already acted on)"
                ),
                cursor=cursor,
            )
        key = hashlib.sha256(json.dumps(new, sort_keys=True).encode()).hexdigest()[:16]
        context.log.warning(f"{len(new)} stop-loss trigger(s): {[t['detail'] for t in new][:5]}")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"stop_loss:{key}",
                    run_config={
                        "ops": {"decisions__actuation_results": {"config": {"stop_loss": new}}}
                    },
                    tags={"adloop/stop_loss": ",".join(sorted({t["rule_id"] for t in new}))},
                )
            ],
            cursor=cursor,
        )

    return spend_anomaly_sensor
