"""The approvals sensor: a new signed approval in decisions.approvals requests a run of the
actuation job, once per batch of approvals (the cursor is the approvals' `seq`)."""

from __future__ import annotations

import dagster as dg

from assets.resources import Warehouse
from connectors.warehouse.decisions_store import DecisionsStore, WarehouseLockedError
from models.policy import (
    ActuationPolicy,
    TamperedProposalError,
    load_actuation_policy,
    verify_proposal_row,
)

APPROVALS_SEQ_TAG = "adloop/approvals_through_seq"
PROPOSALS_TAG = "adloop/approved_proposals"
_MAX_TAGGED = 10  # proposal ids in the tag; the run itself reads every approval


def _looks_valid(approval: dict, proposals: dict[str, dict], policy: ActuationPolicy) -> bool:
    """An approve of a known needs_approval proposal, untampered, by an allowed approver who
    is not the proposer. Signatures are checked by the actuation run, which holds the keys."""
    row = proposals.get(approval["proposal_hash"])
    if approval["decision"] != "approve" or row is None:
        return False
    try:
        proposal = verify_proposal_row(row)
    except TamperedProposalError:
        return False
    return policy.can_approve(proposal.action_type, approval["approver"], proposal.proposer)


def build_approvals_sensor(
    job_name: str,
    *,
    name: str = "approvals_sensor",
    policy_path: str | None = None,
    minimum_interval_seconds: int = 30,
) -> dg.SensorDefinition:
    """A sensor that requests one run of `job_name` when new valid-looking approvals arrive."""

    @dg.sensor(
        job_name=job_name,
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Watches decisions.approvals. New approvals of proposals that need one (by an "
        f"allowed approver, not the proposer) request one {job_name} run, whose run key names the "
        "highest approval seq; the cursor is that seq. Signatures are verified by the run.",
    )
    def _sensor(context: dg.SensorEvaluationContext, warehouse: Warehouse) -> dg.SensorResult:
        after = int(context.cursor) if context.cursor else 0
        store = DecisionsStore(warehouse.path, lock_timeout_s=2.0)
        try:
            rows = store.approvals_after(after)
            proposals = (
                {p["proposal_hash"]: p for p in store.proposals(verdict="needs_approval")}
                if rows
                else {}
            )
        except WarehouseLockedError as exc:  # a job holds the warehouse: look again next tick
            return dg.SensorResult(skip_reason=str(exc), cursor=context.cursor)
        if not rows:
            return dg.SensorResult(skip_reason=f"no new approvals after seq {after}", cursor=str(after))  # fmt: skip
        newest = max(int(r["seq"]) for r in rows)
        policy = load_actuation_policy(policy_path)
        good = [r for r in rows if _looks_valid(r, proposals, policy)]
        if not good:
            return dg.SensorResult(
                skip_reason=f"{len(rows)} new approval row(s) up to seq {newest}, none an approve "
                "that could count (rejections, unknown or tampered proposals, disallowed approvers)",
                cursor=str(newest),
            )
        ids = sorted({r["proposal_hash"][:12] for r in good})
        context.log.info(f"{len(good)} new approval(s) of {len(ids)} proposal(s) up to seq {newest}")  # fmt: skip
        more = ",..." if len(ids) > _MAX_TAGGED else ""
        request = dg.RunRequest(
            run_key=f"approvals-through-seq-{newest}",
            tags={
                APPROVALS_SEQ_TAG: str(newest),
                PROPOSALS_TAG: ",".join(ids[:_MAX_TAGGED]) + more,
            },
        )
        return dg.SensorResult(run_requests=[request], cursor=str(newest))

    return _sensor
