"""The vector-store edge: DuckDB tables by default, Weaviate when a server is configured."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connectors.vector_store.base import Hit, VectorRecord, VectorStore, VectorStoreError
from connectors.vector_store.duckdb_store import DuckDBVectorStore

if TYPE_CHECKING:
    from connectors.vector_store.weaviate_store import WeaviateVectorStore

__all__ = [
    "DuckDBVectorStore",
    "Hit",
    "VectorRecord",
    "VectorStore",
    "VectorStoreError",
    "WeaviateVectorStore",
]


def __getattr__(name: str) -> Any:
    # The weaviate client takes over a second to import; only Weaviate users should pay for it.
    if name == "WeaviateVectorStore":
        from connectors.vector_store.weaviate_store import WeaviateVectorStore

        return WeaviateVectorStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
