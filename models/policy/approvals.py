"""Four-eyes approvals: a person signs an approve or reject for one exact proposal hash, and the
actuation run checks every signature against the proposal as it is now and the current policy.

An approval is an HMAC-SHA256 over the RFC 8785 canonical JSON of {schema, proposal_hash,
decision, approver, signed_at, comment}. It binds to the proposal hash, so a changed proposal
(or a stored row whose JSON no longer matches its hash) invalidates every earlier approval.
Keys only ever come from the environment and never appear in a repr, an error or a row.

HMAC means the verifier holds every approver's secret; asymmetric signatures (Ed25519) would
remove that and fit behind the same `sign_approval` / `check_approval` functions later.

Plain Python: proposals arrive as `ActionProposal`s or as rows of `decisions.action_proposals`
(plain dicts), approvals as `Approval`s or rows of `decisions.approvals`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from models.audit import canonical_json
from models.policy.config import ActuationPolicy
from models.policy.engine import Verdict
from models.policy.proposal import PROPOSAL_SCHEMA, ActionProposal

APPROVAL_SCHEMA = "adloop.approval/1"
DECISIONS: tuple[str, ...] = ("approve", "reject")
STATES: tuple[str, ...] = ("approved", "rejected", "pending", "not_needed", "forbidden")
VERDICTS: tuple[str, ...] = ("allowed", "needs_approval", "rejected")

APPROVER_ID_ENV = "ADLOOP_APPROVER_ID"
APPROVER_KEY_ENV = "ADLOOP_APPROVER_KEY"
APPROVER_KEY_PREFIX = "ADLOOP_APPROVER_KEY_"
MIN_KEY_BYTES = 16  # a short shared secret is guessable offline from one signature

# Columns of decisions.action_proposals that repeat a field of proposal_json (for queries):
# they must agree with the hashed JSON, or the row was edited.
_MIRRORED = ("action_type", "platform", "account_id", "target_id", "channel", "unit", "proposer")


class ApprovalConfigError(ValueError):
    """A signer or verifier key is missing or unusable. Messages name variables, never values."""


class TamperedProposalError(ValueError):
    """A stored proposal row disagrees with its own hash: someone edited it after it was hashed."""


@dataclass(frozen=True)
class Approval:
    """One signed approve or reject of one proposal hash, as stored in decisions.approvals."""

    approval_id: str
    proposal_hash: str
    decision: str  # approve | reject
    approver: str
    signed_at: str  # ISO 8601 UTC, exactly the text that was signed
    comment: str
    signature: str  # hex HMAC-SHA256; not a secret (the key is)

    def message(self) -> bytes:
        return signed_message(
            self.proposal_hash, self.decision, self.approver, self.signed_at, self.comment
        )

    def to_row(self) -> dict[str, Any]:
        return {
            "approval_id": self.approval_id,
            "proposal_hash": self.proposal_hash,
            "decision": self.decision,
            "approver": self.approver,
            "signed_at": self.signed_at,
            "comment": self.comment,
            "signature": self.signature,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Approval:
        """From a decisions.approvals row (extra columns such as seq are ignored)."""
        return cls(
            approval_id=str(row["approval_id"]),
            proposal_hash=str(row["proposal_hash"]),
            decision=str(row["decision"]),
            approver=str(row["approver"]),
            signed_at=str(row["signed_at"]),
            comment=str(row.get("comment") or ""),
            signature=str(row["signature"]),
        )


class ApprovalCheck(NamedTuple):
    """Whether one approval counts, and why (or why not)."""

    valid: bool
    reason: str


@dataclass(frozen=True)
class ApprovalState:
    state: str  # approved | rejected | pending | not_needed | forbidden
    valid: list[Approval] = field(default_factory=list)
    refused: list[tuple[Approval, str]] = field(default_factory=list)
    reason: str = ""  # one line: why this state


@dataclass(frozen=True)
class Signer:
    """A person who signs: their id and their key (from the environment; never shown)."""

    approver: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_id(self.approver, APPROVER_ID_ENV)
        _check_key(self.key, APPROVER_KEY_ENV)

    def sign(
        self,
        proposal_hash: str,
        decision: str,
        *,
        signed_at: datetime | None = None,
        comment: str = "",
    ) -> Approval:
        return sign_approval(
            proposal_hash,
            decision,
            self.approver,
            self.key,
            signed_at=signed_at or datetime.now(UTC),
            comment=comment,
        )


# --- signing -----------------------------------------------------------------------------------


def format_signed_at(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("signed_at must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def signed_message(
    proposal_hash: str, decision: str, approver: str, signed_at: str, comment: str
) -> bytes:
    """The exact bytes an approval's HMAC covers (RFC 8785 canonical JSON)."""
    return canonical_json(
        {
            "schema": APPROVAL_SCHEMA,
            "proposal_hash": proposal_hash,
            "decision": decision,
            "approver": approver,
            "signed_at": signed_at,
            "comment": comment,
        }
    )


def _mac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_approval(
    proposal_hash: str,
    decision: str,
    approver: str,
    key: bytes,
    *,
    signed_at: datetime,
    comment: str = "",
) -> Approval:
    """Sign `decision` (approve | reject) of the proposal with this hash as `approver`."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {list(DECISIONS)}, got {decision!r}")
    if not re.fullmatch(r"[0-9a-f]{64}", proposal_hash or ""):
        raise ValueError(f"proposal_hash must be a full sha256 hex digest, got {proposal_hash!r}")
    if not isinstance(comment, str):
        raise ValueError("comment must be text")
    _check_id(approver, "approver")
    _check_key(key, "the approver key")
    at = format_signed_at(signed_at)
    message = signed_message(proposal_hash, decision, approver, at, comment)
    return Approval(
        approval_id=hashlib.sha256(message).hexdigest()[:16],
        proposal_hash=proposal_hash,
        decision=decision,
        approver=approver,
        signed_at=at,
        comment=comment,
        signature=_mac(key, message),
    )


# --- keys from the environment -----------------------------------------------------------------


def approver_key_env(approver_id: str) -> str:
    """ADLOOP_APPROVER_KEY_<ID>: the id upper-cased, anything but letters and digits as `_`."""
    return APPROVER_KEY_PREFIX + re.sub(r"[^A-Z0-9]", "_", approver_id.upper())


def _check_id(approver: Any, where: str) -> None:
    if not isinstance(approver, str) or not approver.strip() or approver != approver.strip():
        raise ApprovalConfigError(f"{where} must be a non-empty id without surrounding spaces")


def _check_key(key: Any, where: str) -> None:
    if not isinstance(key, bytes):
        raise ApprovalConfigError(f"{where} must be bytes")
    if len(key) < MIN_KEY_BYTES:
        raise ApprovalConfigError(f"{where} is shorter than {MIN_KEY_BYTES} bytes: use a long random secret")  # fmt: skip


def approver_keys_from_env(
    approver_ids: Iterable[str], environ: Mapping[str, str] = os.environ
) -> dict[str, bytes]:
    """The verifier's keys: ADLOOP_APPROVER_KEY_<ID> for each approver id where it is set."""
    keys: dict[str, bytes] = {}
    for approver in dict.fromkeys(approver_ids):
        name = approver_key_env(approver)
        value = environ.get(name)
        if value:
            key = value.encode("utf-8")
            _check_key(key, name)
            keys[approver] = key
    return keys


def signer_from_env(environ: Mapping[str, str] = os.environ) -> Signer:
    """The person signing: ADLOOP_APPROVER_ID and ADLOOP_APPROVER_KEY."""
    approver = (environ.get(APPROVER_ID_ENV) or "").strip()
    key = environ.get(APPROVER_KEY_ENV) or ""
    if not approver:
        raise ApprovalConfigError(f"{APPROVER_ID_ENV} is not set: who is signing?")
    if not key:
        raise ApprovalConfigError(f"{APPROVER_KEY_ENV} is not set: no key to sign with")
    return Signer(approver, key.encode("utf-8"))


# --- stored proposals ----------------------------------------------------------------------------


def proposal_from_json(text: str) -> ActionProposal:
    """The ActionProposal whose canonical_json() is `text` (the hash is not checked here)."""
    try:
        document = json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"proposal_json is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("proposal_json must be a JSON object")
    schema = document.pop("schema", None)
    if schema != PROPOSAL_SCHEMA:
        raise ValueError(f"proposal_json has schema {schema!r}, expected {PROPOSAL_SCHEMA!r}")
    if document.get("created_for") is not None:
        document["created_for"] = date.fromisoformat(document["created_for"])
    try:
        return ActionProposal(**document)
    except TypeError as exc:  # unknown or missing fields
        raise ValueError(f"proposal_json does not describe an ActionProposal: {exc}") from None


def verify_proposal_row(row: Mapping[str, Any]) -> ActionProposal:
    """The proposal a decisions.action_proposals row holds, after checking the row against its
    hash: sha256(proposal_json) is proposal_hash, the JSON is canonical, proposal_id is the
    hash's prefix and the mirrored columns agree with the JSON. TamperedProposalError if not."""
    text, stored = row.get("proposal_json"), row.get("proposal_hash")
    if not isinstance(text, str) or not isinstance(stored, str):
        raise TamperedProposalError("the row lacks proposal_json or proposal_hash")
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != stored:
        raise TamperedProposalError(
            f"proposal {stored[:12]}: proposal_json does not hash to proposal_hash "
            "(the row was edited after it was proposed)"
        )
    try:
        proposal = proposal_from_json(text)
    except ValueError as exc:
        raise TamperedProposalError(f"proposal {stored[:12]}: {exc}") from None
    if proposal.proposal_hash != stored:
        raise TamperedProposalError(f"proposal {stored[:12]}: proposal_json is not canonical")
    if row.get("proposal_id") not in (None, stored[:12]):
        raise TamperedProposalError(f"proposal {stored[:12]}: proposal_id is not the hash prefix")
    for name in _MIRRORED:
        if name in row and row[name] is not None and row[name] != getattr(proposal, name):
            raise TamperedProposalError(
                f"proposal {stored[:12]}: column {name} ({row[name]!r}) disagrees with "
                f"proposal_json ({getattr(proposal, name)!r})"
            )
    return proposal


def proposal_row(
    proposal: ActionProposal,
    verdict: Verdict,
    *,
    source: str,
    run_id: str = "",
    proposed_at: datetime | None = None,
    geo: str | None = None,
) -> dict[str, Any]:
    """A decisions.action_proposals row for one proposal and its verdict (for DecisionsStore)."""
    if verdict.proposal_hash != proposal.proposal_hash:
        raise ValueError("the verdict is for another proposal (hashes differ)")

    def plain(value: Any) -> Any:
        return dict(value) if isinstance(value, Mapping) else value

    def number(value: Any) -> float | None:
        return None if isinstance(value, Mapping) or value is None else float(value)

    ratio = proposal.change_ratio
    moment = proposed_at or datetime.now(UTC)
    if moment.tzinfo is not None:  # the column is a naive TIMESTAMP in UTC
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return {
        "proposal_id": proposal.proposal_hash[:12],
        "proposal_hash": proposal.proposal_hash,
        "proposal_json": proposal.canonical_json(),
        "action_type": proposal.action_type,
        "platform": proposal.platform,
        "account_id": proposal.account_id,
        "target_id": proposal.target_id,
        "channel": proposal.channel,
        "geo": geo,
        "current_value": number(proposal.current_value),
        "proposed_value": number(proposal.proposed_value),
        "value_json": json.dumps(
            {"current": plain(proposal.current_value), "proposed": plain(proposal.proposed_value)},
            sort_keys=True,
        ),
        "unit": proposal.unit,
        "change_ratio": ratio if ratio is None or math.isfinite(ratio) else None,
        "expected_effect": proposal.expected_effect,
        "effect_low": proposal.effect_low,
        "effect_high": proposal.effect_high,
        "effect_metric": proposal.effect_metric,
        "proposer": proposal.proposer,
        "canary": proposal.canary,
        "created_for": proposal.created_for,
        "proposed_at": moment,
        "source": source,
        "run_id": run_id,
        "verdict": verdict.outcome,
        "reasons": json.dumps(list(verdict.reasons)),
        "checks": json.dumps([c._asdict() for c in verdict.checks]),
        "approvers": json.dumps(list(verdict.approvers)),
        "policy_version": verdict.policy_version,
        "policy_sha256": verdict.policy_sha256,
    }


# --- checking ----------------------------------------------------------------------------------


def _as_approval(approval: Approval | Mapping[str, Any]) -> Approval:
    return approval if isinstance(approval, Approval) else Approval.from_row(approval)


def _resolve(proposal: ActionProposal | Mapping[str, Any]) -> ActionProposal:
    if isinstance(proposal, ActionProposal):
        return proposal
    return verify_proposal_row(proposal)


def _check(
    approval: Approval,
    proposal: ActionProposal,
    policy: ActuationPolicy,
    keys: Mapping[str, bytes],
) -> ApprovalCheck:
    who = approval.approver
    if approval.decision not in DECISIONS:
        return ApprovalCheck(False, f"unknown decision {approval.decision!r}; one of {list(DECISIONS)}")  # fmt: skip
    current = proposal.proposal_hash
    if not hmac.compare_digest(approval.proposal_hash.encode(), current.encode()):
        return ApprovalCheck(
            False,
            f"signed for proposal hash {approval.proposal_hash[:12]}, but the proposal now "
            f"hashes to {current[:12]}: a changed proposal needs a new approval",
        )
    if who == proposal.proposer:
        return ApprovalCheck(False, f"{who} proposed it: no one approves their own proposal")
    allowed = policy.approvers(proposal.action_type)
    if not policy.can_approve(proposal.action_type, who, proposal.proposer):
        return ApprovalCheck(
            False,
            f"{who} may not approve {proposal.action_type} under policy v{policy.version} "
            f"(allowed: {', '.join(allowed) or 'nobody'})",
        )
    key = keys.get(who)
    if not key:
        return ApprovalCheck(False, f"no key for approver {who} (set {approver_key_env(who)})")
    expected = _mac(key, approval.message())
    if not hmac.compare_digest(expected.encode(), approval.signature.encode("utf-8", "replace")):
        return ApprovalCheck(False, f"signature of {who} does not verify (wrong key or altered fields)")  # fmt: skip
    return ApprovalCheck(True, f"valid {approval.decision} by {who}, signed {approval.signed_at}")


def check_approval(
    approval: Approval | Mapping[str, Any],
    proposal: ActionProposal | Mapping[str, Any],
    policy: ActuationPolicy,
    keys: Mapping[str, bytes],
) -> ApprovalCheck:
    """Whether one approval counts for this proposal (an ActionProposal, or a stored row whose
    integrity is checked first) under `policy`, with the approvers' keys in `keys`."""
    try:
        resolved = _resolve(proposal)
    except TamperedProposalError as exc:
        return ApprovalCheck(False, f"tampered proposal: {exc}")
    return _check(_as_approval(approval), resolved, policy, keys)


def approval_state(
    proposal: ActionProposal | Mapping[str, Any],
    approvals: Iterable[Approval | Mapping[str, Any]],
    policy: ActuationPolicy,
    keys: Mapping[str, bytes],
    *,
    verdict: str | Verdict | None = None,
) -> ApprovalState:
    """Where a proposal stands: verdict allowed -> not_needed; rejected -> forbidden (never
    approvable); needs_approval -> a valid reject wins, else a valid approve -> approved, else
    pending. The verdict comes from the row, or from `verdict` for an ActionProposal. A row
    that fails its integrity check is forbidden, and every approval of it refused."""
    items = [_as_approval(a) for a in approvals]
    try:
        resolved = _resolve(proposal)
    except TamperedProposalError as exc:
        why = f"tampered proposal: {exc}"
        return ApprovalState("forbidden", [], [(a, why) for a in items], why)
    if isinstance(verdict, Verdict):
        outcome = verdict.outcome
    elif verdict is not None:
        outcome = verdict
    elif isinstance(proposal, Mapping):
        outcome = proposal.get("verdict")
    else:
        raise ValueError("pass the verdict with an ActionProposal")

    valid: list[Approval] = []
    refused: list[tuple[Approval, str]] = []
    for item in items:
        result = _check(item, resolved, policy, keys)
        if result.valid:
            valid.append(item)
        else:
            refused.append((item, result.reason))

    if outcome == "allowed":
        return ApprovalState("not_needed", valid, refused, "the policy allows it without approval")
    if outcome == "rejected":
        return ApprovalState(
            "forbidden", valid, refused, "the policy rejected it: never approvable"
        )
    if outcome != "needs_approval":
        return ApprovalState("forbidden", valid, refused, f"unknown verdict {outcome!r}")
    rejects = [a for a in valid if a.decision == "reject"]
    if rejects:
        return ApprovalState("rejected", valid, refused, f"rejected by {rejects[0].approver}")
    approves = [a for a in valid if a.decision == "approve"]
    if approves:
        who = ", ".join(sorted({a.approver for a in approves}))
        return ApprovalState("approved", valid, refused, f"approved by {who}")
    return ApprovalState("pending", valid, refused, "awaiting a valid approval")
