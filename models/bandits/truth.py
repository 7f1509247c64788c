"""The true value of a creative policy on the simulator's serving contexts, from truth.json
(`truth["creative_serving"]`): what off-policy estimates are checked against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.bandits.logs import CONTEXT_COLUMNS, Policy, check_probabilities, eligibility, greedy


@dataclass(frozen=True)
class ServingTruth:
    """Every serving context with its probability, and the true click rate of each arm there."""

    contexts: pd.DataFrame  # CONTEXT_COLUMNS
    weights: np.ndarray  # [n], probability of each context, summing to 1
    arms: tuple[str, ...]  # sorted creative ids
    eligible: np.ndarray  # [n, K]
    click_probability: np.ndarray  # [n, K], 0 where not eligible
    logging_probability: np.ndarray  # [n, K]
    logging_policy: str


def serving_truth(truth: Mapping) -> ServingTruth:
    """Expand `truth["creative_serving"]` (or that section itself) to context x arm tables."""
    t = truth.get("creative_serving", truth)
    for key in ("contexts", "creatives", "devices", "device_share", "device_multiplier"):
        if key not in t:
            raise ValueError(f"serving truth lacks {key!r}: not a creative_serving section")
    creatives = t["creatives"]
    arms = tuple(sorted(creatives))
    if not arms or not t["contexts"]:
        raise ValueError("the serving truth has no creatives or no contexts")
    rows, weights = [], []
    for c in t["contexts"]:
        for dev in t["devices"]:
            rows.append((c["campaign_id"], c["channel"], c["geo"], dev))
            weights.append(c["share"] * t["device_share"][c["channel"]][dev])
    contexts = pd.DataFrame(rows, columns=list(CONTEXT_COLUMNS))
    w = np.array(weights)
    eligible = eligibility(
        contexts["campaign_id"], arms, {a: creatives[a]["campaign_id"] for a in arms}
    )
    dev_mult = contexts["device"].map(t["device_multiplier"]).to_numpy(dtype=float)
    geo_mult = contexts["geo"].map(t["geo_multiplier"]).to_numpy(dtype=float)
    ctr = np.array([creatives[a]["ctr"] for a in arms])
    effect = np.column_stack(
        [contexts["device"].map(creatives[a]["device_effect"]).to_numpy(dtype=float) for a in arms]
    )
    q = np.minimum(ctr[None, :] * effect * (dev_mult * geo_mult)[:, None], 1.0)
    logging = np.column_stack(
        [
            contexts["device"].map(creatives[a]["logging_probability"]).to_numpy(dtype=float)
            for a in arms
        ]
    )
    return ServingTruth(
        contexts=contexts,
        weights=w / w.sum(),
        arms=arms,
        eligible=eligible,
        click_probability=np.where(eligible, q, 0.0),
        logging_probability=np.where(eligible, logging, 0.0),
        logging_policy=str(t.get("logging_policy", "")),
    )


def true_policy_value(truth: Mapping | ServingTruth, policy: Policy) -> float:
    """The policy's true expected CTR per impression over the serving contexts."""
    st = truth if isinstance(truth, ServingTruth) else serving_truth(truth)
    probs = check_probabilities(policy(st.contexts, st.arms, st.eligible), st.eligible)
    return float(st.weights @ (probs * st.click_probability).sum(axis=1))


def _lookup(st: ServingTruth, table: np.ndarray, contexts: pd.DataFrame, arms: Sequence[str]):
    """Rows of a [truth contexts, truth arms] table for other contexts and arm orders."""
    key = pd.MultiIndex.from_frame(st.contexts[["campaign_id", "geo", "device"]].astype(str))
    pos = key.get_indexer(
        pd.MultiIndex.from_frame(contexts[["campaign_id", "geo", "device"]].astype(str))
    )
    if (pos < 0).any():
        raise ValueError("some contexts are not in the serving truth")
    col = {a: i for i, a in enumerate(st.arms)}
    missing = [a for a in arms if a not in col]
    if missing:
        raise ValueError(f"arms not in the serving truth: {missing[:5]}")
    return table[pos][:, [col[a] for a in arms]]


def truth_logging_policy(truth: Mapping | ServingTruth) -> Policy:
    """The simulator's logging policy, from its recorded probabilities."""
    st = truth if isinstance(truth, ServingTruth) else serving_truth(truth)

    def policy(contexts: pd.DataFrame, arms: Sequence[str], eligible: np.ndarray) -> np.ndarray:
        return _lookup(st, st.logging_probability, contexts, arms)

    return policy


def true_click_probabilities(
    truth: Mapping | ServingTruth, contexts: pd.DataFrame, arms: Sequence[str]
) -> np.ndarray:
    """[n, K] true click probability of each arm in each context (0 where not eligible)."""
    st = truth if isinstance(truth, ServingTruth) else serving_truth(truth)
    return _lookup(st, st.click_probability, contexts, arms)


def oracle_policy(truth: Mapping | ServingTruth) -> Policy:
    """Serve the truly best eligible creative in every context: the ceiling for any policy."""
    st = truth if isinstance(truth, ServingTruth) else serving_truth(truth)

    def policy(contexts: pd.DataFrame, arms: Sequence[str], eligible: np.ndarray) -> np.ndarray:
        return greedy(true_click_probabilities(st, contexts, arms), eligible)

    return policy


def policy_from_shares(shares: Mapping[tuple[str, str | None, str], float]) -> Policy:
    """A policy from traffic shares keyed by (campaign, device or None, creative), as a split
    table states them; a device-free share applies to every device of its campaign."""

    def policy(contexts: pd.DataFrame, arms: Sequence[str], eligible: np.ndarray) -> np.ndarray:
        out = np.zeros(eligible.shape)
        for i, (campaign, device) in enumerate(
            zip(contexts["campaign_id"], contexts["device"], strict=True)
        ):
            for j in np.flatnonzero(eligible[i]):
                arm = arms[j]
                out[i, j] = shares.get(
                    (campaign, device, arm), shares.get((campaign, None, arm), 0)
                )
        return out / out.sum(axis=1, keepdims=True)

    return policy
