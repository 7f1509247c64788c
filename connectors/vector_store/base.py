"""The vector-store interface: collections of (id, vector, text, metadata), cosine search."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class VectorRecord:
    id: str
    vector: Sequence[float]
    text: str
    metadata: Mapping[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    id: str
    text: str
    score: float  # cosine similarity, higher is closer
    metadata: Mapping[str, Scalar] = field(default_factory=dict)


@runtime_checkable
class VectorStore(Protocol):
    """Upserts are idempotent by id; queries return hits best first, ties broken by id."""

    def upsert(self, collection: str, records: Sequence[VectorRecord]) -> int: ...

    def query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int = 5,
        where: Mapping[str, Scalar] | None = None,
    ) -> list[Hit]: ...

    def count(self, collection: str) -> int: ...

    def delete_collection(self, collection: str) -> None: ...


class VectorStoreError(RuntimeError):
    """A store refused or failed an operation: a bad name, a dimension mismatch, no server."""


COLLECTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
METADATA_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Property names the Weaviate store uses itself; refused everywhere so that both stores accept
# exactly the same records.
RESERVED_METADATA_KEYS = frozenset({"id", "record_id", "text", "vector"})


def check_collection(name: str) -> str:
    if not isinstance(name, str) or not COLLECTION_PATTERN.fullmatch(name):
        raise VectorStoreError(
            f"collection name {name!r} is not allowed: use lower snake case, starting with a "
            "letter, at most 63 characters (e.g. brand_passages)"
        )
    return name


def check_metadata(metadata: Mapping[str, Scalar], where: str = "metadata") -> dict[str, Scalar]:
    """Keys in lower snake case and not reserved; values str, int, float, bool or None."""
    checked: dict[str, Scalar] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not METADATA_KEY_PATTERN.fullmatch(key):
            raise VectorStoreError(
                f"{where} key {key!r} is not allowed: use lower snake case (e.g. channel)"
            )
        if key in RESERVED_METADATA_KEYS:
            raise VectorStoreError(
                f"{where} key {key!r} is reserved ({', '.join(sorted(RESERVED_METADATA_KEYS))})"
            )
        if value is not None and not isinstance(value, str | int | float | bool):
            raise VectorStoreError(
                f"{where}[{key!r}] is {type(value).__name__}: values must be str, int, float, "
                "bool or None"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise VectorStoreError(f"{where}[{key!r}] is {value}: values must be finite")
        checked[key] = value
    return checked


def check_vector(vector: Sequence[float], what: str) -> np.ndarray:
    """A finite, non-zero float32 vector: cosine similarity is undefined for a zero vector."""
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim != 1 or array.size == 0:
        raise VectorStoreError(f"{what} must be a non-empty flat vector, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise VectorStoreError(f"{what} has NaN or infinite values")
    if not np.any(array):
        raise VectorStoreError(f"{what} is all zeros: cosine similarity needs a direction")
    return array


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise VectorStoreError(f"k must be a positive integer, got {k!r}")
    return k


def dimension_mismatch(collection: str, expected: int, got: int, what: str) -> VectorStoreError:
    return VectorStoreError(
        f"{what} has {got} dimensions but collection {collection!r} holds {expected}-dimensional "
        "vectors: embed with the same model, or delete the collection to change models"
    )


@dataclass(frozen=True)
class CheckedRecords:
    records: list[VectorRecord]  # one per id, the last given for it
    vectors: list[np.ndarray]
    metadata: list[dict[str, Scalar]]
    dimensions: int


def check_records(collection: str, records: Sequence[VectorRecord]) -> CheckedRecords | None:
    """The records an upsert writes, checked the same way by every store; None when empty."""
    latest: dict[str, VectorRecord] = {}
    for record in records:  # the last record for an id wins, as it would one at a time
        if not isinstance(record.id, str) or not record.id:
            raise VectorStoreError(f"record id must be a non-empty string, got {record.id!r}")
        latest[record.id] = record
    if not latest:
        return None
    vectors = [check_vector(r.vector, f"vector of record {r.id!r}") for r in latest.values()]
    dims = {v.size for v in vectors}
    if len(dims) > 1:
        raise VectorStoreError(
            f"records for {collection!r} mix vector sizes {sorted(dims)}: use one model"
        )
    metadata = [check_metadata(r.metadata, f"metadata of {r.id!r}") for r in latest.values()]
    return CheckedRecords(list(latest.values()), vectors, metadata, dims.pop())
