"""What the sandbox's two API faces share: the parsed request, the reply, a write's plan."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Protocol
from urllib.parse import parse_qs

from connectors.ad_platforms.sandbox.store import Change


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    request_id: str = field(default_factory=lambda: new_request_id())

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value.strip() if isinstance(value, str) else None

    def json_body(self) -> Any:
        """The body as JSON (None when empty); raises ValueError when it does not parse."""
        if not self.body.strip():
            return None
        return json.loads(self.body)

    def form_body(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8", errors="replace"), keep_blank_values=True)

    @property
    def content_type(self) -> str:
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """Raised inside a handler to answer with `reply` at once."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"HTTP {reply.status}")
        self.reply = reply


@dataclass
class WritePlan:
    """A write, validated against the current state: the answer to send and the changes to
    apply with it (none when validate_only or when every operation failed)."""

    reply: Reply
    changes: list[Change]
    validate_only: bool


class PlatformApi(Protocol):
    platform: str

    def route(self, request: Request) -> Any | None:
        """The route this request is for, or None when the path is not this platform's."""

    def is_write(self, request: Request, route: Any) -> bool: ...

    def authenticate(self, request: Request, route: Any) -> Reply | None: ...

    def validate_only(self, request: Request, route: Any) -> bool: ...

    def fingerprint(self, request: Request, route: Any) -> str: ...

    def read(self, request: Request, route: Any) -> Reply: ...

    def plan_write(self, request: Request, route: Any) -> WritePlan: ...

    def throttled(
        self, request: Request, route: Any, *, retry_after_s: float, code: int
    ) -> Reply: ...

    def server_error(self, request: Request, route: Any) -> Reply: ...

    def key_reused(self, request: Request, route: Any, key: str) -> Reply: ...

    def not_found(self, request: Request) -> Reply: ...

    def decorate(self, request: Request, route: Any, reply: Reply, *, throttled_s: float) -> None:
        """Add the headers every answer of this platform carries."""


def new_request_id() -> str:
    return secrets.token_urlsafe(16)[:22]


def duration(seconds: float) -> str:
    """google.protobuf.Duration's JSON form: 2.0 -> "2s", 1.5 -> "1.5s"."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"
