"""Embeddings from the OpenAI API or any server that speaks its `/embeddings` endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from connectors.embeddings.base import EmbeddingError, check_texts, normalise_rows
from connectors.openai_api import OpenAIAPI

if TYPE_CHECKING:
    import openai

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Native sizes of OpenAI's models, so `dimensions` is known without a call.
KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class OpenAIEmbedder:
    """`client.embeddings.create` in batches of `batch_size`, rows returned unit length.

    `dimensions` asks the server for shortened vectors (text-embedding-3 models); it is part of
    `model_id` because shortened and full vectors must never share a cache entry. For a model
    whose size is not known in advance, reading `dimensions` before any `embed` costs one call.
    The API key is handed to the client and never kept in messages or the repr.
    """

    def __init__(
        self,
        model: str,
        api_key: str,
        base_url: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 256,
        *,
        timeout_s: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        if not model:
            raise ValueError(
                "model is empty: name an embeddings model, e.g. text-embedding-3-small"
            )
        if dimensions is not None and dimensions < 1:
            raise ValueError(f"dimensions must be positive, got {dimensions}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.requested_dimensions = dimensions
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.model_id = f"openai:{model}" if dimensions is None else f"openai:{model}:{dimensions}"
        self._api = OpenAIAPI(api_key, self.base_url, timeout_s, max_retries)
        self._dimensions = dimensions or KNOWN_DIMENSIONS.get(model)

    def __repr__(self) -> str:
        return (
            f"OpenAIEmbedder(model={self.model!r}, base_url={self.base_url!r}, "
            f"dimensions={self.requested_dimensions!r}, batch_size={self.batch_size})"
        )

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            self._dimensions = int(self._request(["dimension probe"]).shape[1])
        return self._dimensions

    def _openai(self) -> openai.OpenAI:
        return self._api.client()

    def _scrub(self, message: str) -> str:
        return self._api.scrub(message)

    def _request(self, batch: list[str]) -> np.ndarray:
        import openai

        extra = (
            {} if self.requested_dimensions is None else {"dimensions": self.requested_dimensions}
        )
        try:
            response = self._openai().embeddings.create(model=self.model, input=batch, **extra)
        except openai.APIConnectionError as exc:
            # `from None` throughout: the chained exception holds the request and its headers.
            reason = self._scrub(str(exc.__cause__ or exc))
            raise EmbeddingError(
                f"could not reach the embeddings server at {self.base_url} ({reason}): check "
                "that it is running and that the base URL is right"
            ) from None
        except openai.APIStatusError as exc:
            raise EmbeddingError(
                f"the embeddings server at {self.base_url} answered HTTP {exc.status_code} for "
                f"model {self.model!r}: {self._scrub(str(exc.message))}"
            ) from None
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(batch):
            raise EmbeddingError(
                f"{self.base_url} returned {len(rows)} embeddings for {len(batch)} inputs"
            )
        matrix = np.array([row.embedding for row in rows], dtype=np.float64)
        if matrix.ndim != 2:
            raise EmbeddingError(f"{self.base_url} returned embeddings of unequal lengths")
        return normalise_rows(matrix)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if not items:
            return np.empty((0, self.dimensions), dtype=np.float32)
        for i, text in enumerate(items):
            if not text:
                raise ValueError(f"text {i} is empty: the embeddings API rejects empty input")
        parts = [
            self._request(items[start : start + self.batch_size])
            for start in range(0, len(items), self.batch_size)
        ]
        out = np.vstack(parts)
        if self._dimensions is None:
            self._dimensions = out.shape[1]
        elif out.shape[1] != self._dimensions:
            raise EmbeddingError(
                f"{self.model_id} returned {out.shape[1]}-d vectors, expected {self._dimensions}"
            )
        return out
