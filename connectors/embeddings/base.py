"""The embeddings interface: texts in, L2-normalised float32 vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Any sentence-embedding model. `model_id` names the model and its version exactly: it is
    part of the cache key, so two models never share vectors."""

    model_id: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A float32 array of shape (len(texts), dimensions), each row of unit length."""
        ...


class EmbeddingError(RuntimeError):
    """An embedder could not produce vectors: a missing or altered model, an unreachable server."""


def check_texts(texts: Sequence[str]) -> list[str]:
    """The texts as a list; a bare string is refused because iterating it would embed characters."""
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of strings, got one str: wrap it as [text]")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"embed() takes strings; item {i} is {type(text).__name__}")
    return items


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32; zero or non-finite rows are refused."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if not np.all(np.isfinite(matrix)):
        raise EmbeddingError("the model returned NaN or infinite values")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if matrix.size and not np.all(norms > 0):
        raise EmbeddingError("the model returned an all-zero vector, which has no direction")
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)
