"""What both ad-platform clients share: one HTTP exchange, its `CallRecord` with every
credential scrubbed, transport failures sorted into "nothing happened" and "unknown", error
answers sorted onto `base`'s classes, and the client's construction, `from_env` and `with`."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

import httpx

from connectors.ad_platforms.base import (
    AdPlatformError,
    CallRecord,
    OutcomeUnknown,
    PermanentError,
    Throttled,
    TransientError,
)

REDACTED = "[redacted]"
# Response headers worth keeping in the audit record: ids to quote to support, usage, replays.
KEPT_RESPONSE_HEADERS = (
    "request-id",
    "x-fb-trace-id",
    "x-fb-request-id",
    "x-business-use-case-usage",
    "x-ad-account-usage",
    "x-app-usage",
    "retry-after",
    "idempotent-replayed",
)
MAX_TEXT_CHARS = 2000
# The real APIs ignore this header; the sandbox honours it.
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class Exchange:
    status: int
    body: dict[str, Any]
    headers: httpx.Headers
    record: CallRecord

    @property
    def error(self) -> dict[str, Any]:
        """The answer's `error` object; {} when it has none."""
        error = self.body.get("error")
        return error if isinstance(error, dict) else {}


class HttpSession:
    """An httpx client bound to one base URL, that knows which strings are secrets."""

    def __init__(self, base_url: str, *, timeout_s: float, secrets: Iterable[str], platform: str):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.platform = platform
        # Longest first, so a secret that contains another is scrubbed whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._client: httpx.Client | None = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def scrub(self, value: Any) -> Any:
        """`value` with every secret replaced, through dicts, lists and strings."""
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, Mapping):
            return {self.scrub(k): self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        return value

    def send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        recorded_headers: Mapping[str, str],
        is_write: bool,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Exchange:
        """One request. Transport failures raise: a refused connection (or one never made)
        is a `TransientError`; a timeout or a dropped connection is an `OutcomeUnknown` for a
        write, a `TransientError` for a read. Any HTTP answer is returned, whatever its status.
        An idempotency key is sent, and recorded, as the Idempotency-Key header."""
        if idempotency_key:
            headers = {**headers, IDEMPOTENCY_HEADER: idempotency_key}
            recorded_headers = {**recorded_headers, IDEMPOTENCY_HEADER: idempotency_key}
        url = str(httpx.URL(self.base_url + path, params=params or None))
        request: dict[str, Any] = {}
        if recorded_headers:
            request["headers"] = dict(recorded_headers)
        if params:
            request["params"] = dict(params)
        if json_body is not None:
            request["json"] = json_body
        if form is not None:
            request["form"] = dict(form)
        request = self.scrub(request)
        started = time.perf_counter()

        def record(status: int | None, response: dict[str, Any] | None) -> CallRecord:
            return CallRecord(
                method=method,
                url=self.scrub(url),
                request=request,
                status=status,
                response=self.scrub(response) if response is not None else None,
                latency_s=round(time.perf_counter() - started, 6),
            )

        try:
            response = self._http().request(
                method, url, headers=dict(headers), json=json_body, data=form
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection was made, so nothing was sent.
            raise TransientError(
                self.scrub(
                    f"{self.platform} {method} {path}: could not connect ({_describe(exc)})"
                ),
                call=record(None, None),
            ) from None
        except httpx.TransportError as exc:
            # Sent, or partly sent, and no answer: a write may have been applied.
            what = "timed out" if isinstance(exc, httpx.TimeoutException) else "lost the connection"
            message = self.scrub(f"{self.platform} {method} {path}: {what} ({_describe(exc)})")
            if is_write:
                raise OutcomeUnknown(
                    message + "; the write may or may not have been applied: read back",
                    call=record(None, None),
                ) from None
            raise TransientError(message, call=record(None, None)) from None
        body = _body_of(response)
        kept = {
            name: response.headers[name]
            for name in KEPT_RESPONSE_HEADERS
            if name in response.headers
        }
        recorded = {"headers": kept, "body": body} if kept else {"body": body}
        return Exchange(
            response.status_code, body, response.headers, record(response.status_code, recorded)
        )

    def _http(self) -> httpx.Client:
        if self._client is None:
            # An HTTP(S)_PROXY meant for the outside world must not capture a local sandbox.
            self._client = httpx.Client(
                timeout=httpx.Timeout(self.timeout_s),
                trust_env=not _is_loopback(self.base_url),
                follow_redirects=False,
            )
        return self._client


class HttpClient:
    """The base of both ad-platform clients: the settings every client has, checked, its
    `HttpSession`, closing it, and `with`."""

    # An API version the client accepts (a full match), and the one it uses by default.
    api_version_pattern: ClassVar[str]
    default_api_version: ClassVar[str]

    def __init__(
        self,
        base_url: str,
        *,
        tokens: Mapping[str, str],
        api_version: str,
        timeout_s: float,
        platform: str,
    ) -> None:
        """`tokens`: the credentials, by how a message names them ("an access token"); every
        one is required, and scrubbed from call records and errors."""
        if not all(tokens.values()):
            raise ValueError(f"{type(self).__name__} needs {' and '.join(tokens)}")
        if not re.fullmatch(self.api_version_pattern, api_version):
            raise ValueError(
                f"api_version looks like {self.default_api_version}, not {api_version!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version
        self.timeout_s = timeout_s
        self._http = HttpSession(
            self.base_url, timeout_s=timeout_s, secrets=tokens.values(), platform=platform
        )

    @classmethod
    def _from_env(
        cls,
        overrides: Mapping[str, Any],
        *,
        name: str,
        required: Mapping[str, str],
        optional: Mapping[str, tuple[str, Any]],
        base_url: tuple[str, str],
    ) -> Self:
        """A client from the environment: `required` and `optional` map arguments to their
        variables (`optional` with a default), `base_url` is (variable, default); keyword
        arguments in `overrides` win."""
        missing = [
            env for arg, env in required.items() if arg not in overrides and not os.environ.get(env)
        ]
        if missing:
            raise ValueError(f"set {' and '.join(missing)} to build a {name} client")
        kwargs: dict[str, Any] = {arg: os.environ.get(env, "") for arg, env in required.items()}
        for arg, (env, default) in optional.items():
            kwargs[arg] = os.environ.get(env) or default
        kwargs.update(overrides)
        base_url_env, default_base_url = base_url
        url = kwargs.pop("base_url", None) or os.environ.get(base_url_env) or default_base_url
        return cls(url, **kwargs)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()


def error_for(
    exchange: Exchange,
    message: str,
    *,
    is_write: bool,
    throttled: bool,
    timed_out: bool,
    transient: bool,
    code: str,
    retry_after_s: Callable[[], float | None],
) -> AdPlatformError:
    """`base`'s error for an HTTP error answer, from what the platform's error says: throttled
    (`retry_after_s` is asked only then); a gateway timeout (HTTP 504 or `timed_out`), an
    `OutcomeUnknown` for a write and a `TransientError` for a read; a `TransientError` for any
    5xx or when `transient`; else a `PermanentError` with `code`."""
    call = exchange.record
    if throttled:
        return Throttled(message, retry_after_s=retry_after_s(), call=call)
    if exchange.status == 504 or timed_out:
        if is_write:
            return OutcomeUnknown(message + "; read back before retrying", call=call)
        return TransientError(message, call=call)
    if exchange.status >= 500 or transient:
        return TransientError(message, call=call)
    return PermanentError(message, code=code, call=call)


def _body_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return {"text": response.text[:MAX_TEXT_CHARS]}
    return body if isinstance(body, dict) else {"value": body}


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
