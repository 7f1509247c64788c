"""Near-duplicate screening of candidate copy by embedding cosine, against the existing creatives
and among the candidates themselves (the first of a near-identical pair is kept)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from models.creative.variant import Variant

DEFAULT_THRESHOLD = 0.92


class TextEmbedder(Protocol):
    model_id: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class DuplicateMatch:
    candidate_index: int
    nearest_existing_index: int | None  # None when there are no existing creatives
    nearest_existing_id: str | None
    existing_cosine: float | None
    nearest_candidate_index: int | None  # the closest earlier candidate that was kept
    candidate_cosine: float | None
    threshold: float

    @property
    def duplicate_of_existing(self) -> bool:
        return self.existing_cosine is not None and self.existing_cosine >= self.threshold

    @property
    def duplicate_of_candidate(self) -> bool:
        return self.candidate_cosine is not None and self.candidate_cosine >= self.threshold

    @property
    def is_duplicate(self) -> bool:
        return self.duplicate_of_existing or self.duplicate_of_candidate

    @property
    def reason(self) -> str | None:
        """Why the candidate is dropped, naming the closer of the two matches; None if kept."""
        existing = self.existing_cosine if self.duplicate_of_existing else None
        candidate = self.candidate_cosine if self.duplicate_of_candidate else None
        if existing is None and candidate is None:
            return None
        if candidate is None or (existing is not None and existing >= candidate):
            label = self.nearest_existing_id or f"#{self.nearest_existing_index}"
            return (
                f"near-duplicate of creative {label} (cosine {existing:.3f} ≥ {self.threshold:g})"
            )
        return (
            f"near-duplicate of candidate {self.nearest_candidate_index} "
            f"(cosine {candidate:.3f} ≥ {self.threshold:g})"
        )


def _unit_rows(vectors: np.ndarray | Sequence[Sequence[float]], name: str) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, d), got shape {arr.shape}")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if arr.shape[0] and np.any(norms == 0):
        raise ValueError(f"{name} has zero vectors; cosine is undefined for them")
    # Embedders promise unit rows; normalising again costs nothing and keeps cosines honest for
    # vectors that came from elsewhere.
    return arr / np.where(norms == 0, 1.0, norms)


def near_duplicates(
    candidate_vectors: np.ndarray | Sequence[Sequence[float]],
    existing_vectors: np.ndarray | Sequence[Sequence[float]],
    threshold: float = DEFAULT_THRESHOLD,
    *,
    existing_ids: Sequence[str] | None = None,
) -> list[DuplicateMatch]:
    """One match per candidate, in order: its nearest existing creative, and its nearest earlier
    candidate among those kept so far (greedy, so the kept set has no pair above `threshold`)."""
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine, in [-1, 1]; got {threshold}")
    if np.asarray(candidate_vectors).size == 0:
        return []
    cand = _unit_rows(candidate_vectors, "candidate_vectors")
    existing = np.asarray(existing_vectors, dtype=np.float64)
    if existing.size == 0:
        existing = np.zeros((0, cand.shape[1]))
    existing = _unit_rows(existing, "existing_vectors")
    if cand.shape[0] and existing.shape[0] and cand.shape[1] != existing.shape[1]:
        raise ValueError(
            f"dimension mismatch: candidates {cand.shape[1]}, existing {existing.shape[1]}"
        )
    if existing_ids is not None and len(existing_ids) != existing.shape[0]:
        raise ValueError(
            f"{len(existing_ids)} existing ids for {existing.shape[0]} existing vectors"
        )

    to_existing = cand @ existing.T if existing.shape[0] else None
    among = cand @ cand.T
    kept: list[int] = []
    matches: list[DuplicateMatch] = []
    for i in range(cand.shape[0]):
        e_idx = e_cos = None
        if to_existing is not None:
            e_idx = int(np.argmax(to_existing[i]))
            e_cos = float(to_existing[i, e_idx])
        c_idx = c_cos = None
        if kept:
            j = int(np.argmax(among[i, kept]))
            c_idx, c_cos = kept[j], float(among[i, kept[j]])
        match = DuplicateMatch(
            candidate_index=i,
            nearest_existing_index=e_idx,
            nearest_existing_id=(
                existing_ids[e_idx] if existing_ids is not None and e_idx is not None else None
            ),
            existing_cosine=e_cos,
            nearest_candidate_index=c_idx,
            candidate_cosine=c_cos,
            threshold=threshold,
        )
        if not match.is_duplicate:
            kept.append(i)
        matches.append(match)
    return matches


@dataclass(frozen=True)
class DedupResult[T]:
    kept: list[T]
    dropped: list[tuple[T, str]]  # (item, reason)
    matches: list[DuplicateMatch]


def split_duplicates[T](
    items: Sequence[T],
    candidate_vectors: np.ndarray | Sequence[Sequence[float]],
    existing_vectors: np.ndarray | Sequence[Sequence[float]],
    threshold: float = DEFAULT_THRESHOLD,
    *,
    existing_ids: Sequence[str] | None = None,
) -> DedupResult[T]:
    """`items` (one per candidate vector, same order) split into kept and dropped-with-reason."""
    if len(items) != len(candidate_vectors):
        raise ValueError(f"{len(items)} items for {len(candidate_vectors)} candidate vectors")
    matches = near_duplicates(
        candidate_vectors, existing_vectors, threshold, existing_ids=existing_ids
    )
    kept = [item for item, m in zip(items, matches, strict=True) if not m.is_duplicate]
    dropped = [
        (item, m.reason or "") for item, m in zip(items, matches, strict=True) if m.is_duplicate
    ]
    return DedupResult(kept=kept, dropped=dropped, matches=matches)


def dedupe_variants(
    variants: Sequence[Variant],
    embedder: TextEmbedder,
    existing: Sequence[tuple[str, str]],
    threshold: float = DEFAULT_THRESHOLD,
) -> DedupResult[Variant]:
    """Variants screened against existing creatives given as (creative_id, headline + newline +
    body), the same text `Variant.text` embeds."""
    if not variants:
        return DedupResult(kept=[], dropped=[], matches=[])
    cand = embedder.embed([v.text for v in variants])
    ids = [cid for cid, _ in existing]
    existing_vectors = (
        embedder.embed([text for _, text in existing])
        if existing
        else np.zeros((0, cand.shape[1]), np.float32)
    )
    return split_duplicates(variants, cand, existing_vectors, threshold, existing_ids=ids)
