"""An embedder wrapper that keeps every vector in the warehouse, keyed by model and text, so a
rerun embeds only what it has not seen."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from connectors.embeddings.base import Embedder, EmbeddingError, check_texts
from connectors.warehouse import connect

CACHE_TABLE = "features.embedding_cache"
_CREATE = f"""
create schema if not exists features;
create table if not exists {CACHE_TABLE} (
    content_sha256 varchar primary key,
    model_id varchar not null,
    dimensions integer not null,
    vector float[] not null,
    created_at timestamp not null
)
"""


def content_hash(model_id: str, text: str) -> str:
    """The cache key: the model is part of it, so two models never share a vector."""
    return hashlib.sha256(f"{model_id}\0{text}".encode()).hexdigest()


class CachedEmbedder:
    """`inner` behind a DuckDB cache in `features.embedding_cache`.

    Only texts missing from the cache reach `inner`, each once per call however often it
    repeats. Connections are opened per call and closed at once, because DuckDB has a single
    writer and dbt or another asset may need the file between calls.
    """

    def __init__(self, inner: Embedder, warehouse_path: str | os.PathLike) -> None:
        self.inner = inner
        self.model_id: str = inner.model_id
        self.warehouse_path = warehouse_path
        self._hits = 0
        self._misses = 0

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    @property
    def stats(self) -> dict[str, int]:
        """Since construction: `misses` texts went to the model, `hits` rows were answered
        without it (from the cache, or as repeats of a text earlier in the same call)."""
        return {"hits": self._hits, "misses": self._misses}

    def __repr__(self) -> str:
        return f"CachedEmbedder({self.inner!r}, warehouse_path={str(self.warehouse_path)!r})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if not items:
            return np.empty((0, self.dimensions), dtype=np.float32)
        keys = [content_hash(self.model_id, text) for text in items]
        first_text = dict(zip(keys, items, strict=True))  # one text per distinct key

        found = self._read(list(first_text))
        missing = [key for key in first_text if key not in found]
        if missing:
            fresh = self.inner.embed([first_text[key] for key in missing])
            expected = (len(missing), self.dimensions)
            if fresh.shape != expected:
                raise EmbeddingError(
                    f"{self.model_id} returned shape {fresh.shape}, expected {expected}"
                )
            fresh = np.asarray(fresh, dtype=np.float32)
            self._write(missing, fresh)
            found.update(zip(missing, fresh, strict=True))

        self._misses += len(missing)
        self._hits += len(items) - len(missing)
        return np.stack([found[key] for key in keys])

    def _read(self, keys: list[str]) -> dict[str, np.ndarray]:
        with connect(self.warehouse_path) as conn:
            # Every time, not once: the warehouse file may have been rebuilt since the last call.
            conn.execute(_CREATE)
            # No filter on dimensions: the key already names the model, and asking an API
            # model for its size can cost a call.
            table = conn.sql(
                f"""
                select content_sha256, vector
                from {CACHE_TABLE}
                where content_sha256 in (select unnest($keys::varchar[]))
                  and model_id = $model_id
                """,
                params={"keys": keys, "model_id": self.model_id},
            ).to_arrow_table()
        if table.num_rows == 0:
            return {}
        flat = table.column("vector").combine_chunks().flatten().to_numpy()
        vectors = flat.astype(np.float32, copy=False).reshape(table.num_rows, -1)
        return dict(zip(table.column("content_sha256").to_pylist(), vectors, strict=True))

    def _write(self, keys: list[str], vectors: np.ndarray) -> None:
        n, d = vectors.shape
        offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
        frame = pa.table(
            {
                "content_sha256": pa.array(keys, pa.string()),
                "vector": pa.ListArray.from_arrays(offsets, pa.array(vectors.ravel())),
            }
        )
        with connect(self.warehouse_path) as conn:
            conn.execute(_CREATE)
            conn.register("_adloop_new_embeddings", frame)
            # Another process may have cached the same text meanwhile; its vector is as good.
            conn.execute(
                f"""
                insert into {CACHE_TABLE}
                select content_sha256, ?, ?, vector, current_timestamp::timestamp
                from _adloop_new_embeddings
                on conflict do nothing
                """,
                [self.model_id, d],
            )
            conn.unregister("_adloop_new_embeddings")
