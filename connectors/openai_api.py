"""The one way adloop opens an OpenAI-API client (chat and embeddings alike), and keeps its key
out of every message it builds."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import openai

# OpenAI echoes a masked key in 401 messages ("sk-proj-****abcd"); even the tail is kept out.
KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_*\-]{4,}")
MAX_ERROR_CHARS = 600


class OpenAIAPI:
    """A lazily opened `openai.OpenAI` client for one base URL and key."""

    def __init__(self, api_key: str, base_url: str | None, timeout_s: float, max_retries: int):
        if not api_key:
            raise ValueError(
                "api_key is empty: pass OPENAI_API_KEY (a local OpenAI-compatible server that "
                "checks no key still needs a placeholder such as 'none')"
            )
        self._api_key = api_key
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._client: openai.OpenAI | None = None

    def client(self) -> openai.OpenAI:
        if self._client is None:
            import openai  # ~0.5 s; only paid by processes that call the API

            self._client = openai.OpenAI(
                api_key=self._api_key,
                base_url=self._base_url,
                timeout=self._timeout_s,
                max_retries=self._max_retries,
            )
        return self._client

    def scrub(self, text: str) -> str:
        """`text` without the key or anything shaped like one, cut to a readable length."""
        return KEY_LIKE.sub("sk-***", text.replace(self._api_key, "***"))[:MAX_ERROR_CHARS]
