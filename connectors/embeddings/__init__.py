"""The embeddings edge: a local MiniLM model by default, OpenAI-compatible servers, a cache."""

from connectors.embeddings.base import Embedder, EmbeddingError
from connectors.embeddings.cache import CachedEmbedder, content_hash
from connectors.embeddings.local import LocalMiniLMEmbedder
from connectors.embeddings.openai_embedder import OpenAIEmbedder

__all__ = [
    "CachedEmbedder",
    "Embedder",
    "EmbeddingError",
    "LocalMiniLMEmbedder",
    "OpenAIEmbedder",
    "content_hash",
]
