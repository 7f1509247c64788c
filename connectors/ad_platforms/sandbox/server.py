"""The sandbox HTTP server: routes each request to the Google Ads or Meta face or to the admin
API, injects faults, and applies writes exactly as the state store says."""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.ad_platforms.sandbox.common import ApiError, PlatformApi, Reply, Request
from connectors.ad_platforms.sandbox.faults import (
    CRASH_AFTER_APPLY,
    SERVER_ERROR,
    SLOW,
    THROTTLE,
    TIMEOUT,
    FaultConfig,
    FaultInjector,
)
from connectors.ad_platforms.sandbox.google_ads_api import GoogleAdsApi
from connectors.ad_platforms.sandbox.meta_api import MetaApi
from connectors.ad_platforms.sandbox.store import Store, StoredAnswer, validate_target

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/_sandbox/"
ADMIN_TOKEN_HEADER = "X-Sandbox-Admin-Token"
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# The exit status of a process that crashed on purpose (crash_after_apply in exit mode).
EXIT_INJECTED_CRASH = 70
MAX_BODY_BYTES = 1_000_000


@dataclass
class Outcome:
    """What the HTTP layer does with a request: wait, then answer, drop or exit."""

    reply: Reply | None
    sleep_s: float = 0.0
    drop: bool = False  # close the connection without an answer
    exit: bool = False  # the whole process exits (after the change was committed)


class SandboxApp:
    """Everything but the sockets: usable in-process by tests that want no HTTP server."""

    def __init__(
        self,
        state_dir: str | Path,
        *,
        api_token: str,
        admin_token: str,
        developer_token: str,
        faults: FaultConfig | None = None,
    ) -> None:
        if not api_token or not admin_token or not developer_token:
            raise ValueError("api_token, admin_token and developer_token must not be empty")
        if admin_token in (api_token, developer_token):
            raise ValueError("the admin token must differ from the API and developer tokens")
        self.store = Store(state_dir)
        self.faults = FaultInjector(faults)
        self._admin_token = admin_token
        self.apis: list[PlatformApi] = [
            GoogleAdsApi(self.store, access_token=api_token, developer_token=developer_token),
            MetaApi(self.store, access_token=api_token),
        ]
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")

    def handle(self, request: Request) -> Outcome:
        if request.path.startswith(ADMIN_PREFIX):
            return Outcome(self._admin(request))
        for api in self.apis:
            route = api.route(request)
            if route is not None:
                return self._api(api, route, request)
        # Paths that look like Google's (/v18/customers/...) get Google's 404, others Meta's.
        api = self.apis[0] if "/customers/" in request.path else self.apis[1]
        reply = api.not_found(request)
        api.decorate(request, None, reply, throttled_s=0.0)
        return Outcome(reply)

    # --- the ad-platform APIs ------------------------------------------------------------------

    def _api(self, api: PlatformApi, route: Any, request: Request) -> Outcome:
        config = self.faults.config
        throttled_s = 0.0
        try:
            outcome = self._api_outcome(api, route, request)
        except ApiError as exc:
            outcome = Outcome(exc.reply)
        except _Throttled as exc:
            outcome = Outcome(exc.reply)
            throttled_s = config.throttle_retry_after_s
        if outcome.reply is not None:
            api.decorate(request, route, outcome.reply, throttled_s=throttled_s)
        return outcome

    def _api_outcome(self, api: PlatformApi, route: Any, request: Request) -> Outcome:
        config = self.faults.config
        denied = api.authenticate(request, route)
        if denied is not None:
            return Outcome(denied)
        is_write = api.is_write(request, route)
        draw = self.faults.draw(is_write=is_write)
        if draw.kind == SLOW:
            time.sleep(config.slow_s)
        elif draw.kind == THROTTLE:
            raise _Throttled(
                api.throttled(
                    request,
                    route,
                    retry_after_s=config.throttle_retry_after_s,
                    code=draw.meta_throttle_code,
                )
            )
        elif draw.kind == SERVER_ERROR:
            return Outcome(api.server_error(request, route))
        timeout_s = config.timeout_sleep_s if draw.kind == TIMEOUT else 0.0
        if not is_write:
            try:
                reply = api.read(request, route)
            except ApiError as exc:
                reply = exc.reply
            return Outcome(reply, sleep_s=timeout_s)
        if draw.kind == TIMEOUT and not draw.applies:
            # The backend never got to it: after the client has given up, a 5xx nobody reads.
            return Outcome(api.server_error(request, route), sleep_s=timeout_s)

        try:
            validate_only = api.validate_only(request, route)
        except ApiError:
            if draw.kind == CRASH_AFTER_APPLY:
                self.faults.refund(CRASH_AFTER_APPLY)
            raise
        key = None if validate_only else request.header(IDEMPOTENCY_HEADER)
        with self.store.lock:
            # Held from the key check to the commit: a concurrent retry with the same key
            # waits here and then finds the stored answer.
            fingerprint = api.fingerprint(request, route) if key else ""
            if key and config.honour_idempotency_key:
                stored = self.store.stored_answer(api.platform, key)
                if stored is not None:
                    if stored.fingerprint != fingerprint:
                        return Outcome(api.key_reused(request, route, key))
                    if draw.kind == CRASH_AFTER_APPLY:
                        self.faults.refund(CRASH_AFTER_APPLY)
                    return Outcome(
                        Reply(stored.status, stored.body, {REPLAYED_HEADER: "true"}),
                        sleep_s=timeout_s,
                    )
            try:
                plan = api.plan_write(request, route)
            except ApiError as exc:
                if draw.kind == CRASH_AFTER_APPLY:
                    self.faults.refund(CRASH_AFTER_APPLY)
                return Outcome(exc.reply, sleep_s=timeout_s)
            applied = not plan.validate_only and plan.reply.status == 200
            if applied:
                self.store.apply(
                    api.platform,
                    plan.changes,
                    request_id=request.request_id,
                    idempotency_key=key,
                    answer=StoredAnswer(fingerprint, 200, plan.reply.body) if key else None,
                )
        if draw.kind == CRASH_AFTER_APPLY:
            if applied and plan.changes:
                logger.warning("injected crash after applying request %s", request.request_id)
                if config.crash_mode == "exit":
                    return Outcome(None, exit=True)
                return Outcome(None, drop=True)
            self.faults.refund(CRASH_AFTER_APPLY)
        return Outcome(plan.reply, sleep_s=timeout_s)

    # --- the admin API -------------------------------------------------------------------------

    def _admin(self, request: Request) -> Reply:
        token = request.header(ADMIN_TOKEN_HEADER) or ""
        if not hmac.compare_digest(token.encode(), self._admin_token.encode()):
            return Reply(
                401,
                {
                    "error": f"the admin API needs the admin token in the {ADMIN_TOKEN_HEADER} header"
                },
            )
        name = request.path.removeprefix(ADMIN_PREFIX).strip("/")
        handler = {
            ("GET", "health"): self._health,
            ("POST", "seed"): self._seed,
            ("GET", "budgets"): self._budgets,
            ("GET", "mutations"): self._mutations,
            ("GET", "faults"): lambda _request: Reply(200, self.faults.snapshot()),
            ("POST", "faults"): self._set_faults,
            ("POST", "reset"): self._reset,
        }.get((request.method, name))
        if handler is None:
            return Reply(404, {"error": f"no admin endpoint {request.method} {request.path}"})
        try:
            return handler(request)
        except ValueError as exc:
            return Reply(400, {"error": str(exc)})

    def _health(self, request: Request) -> Reply:
        return Reply(
            200,
            {
                "status": "ok",
                "pid": os.getpid(),
                "started_at": self.started_at,
                "state_db": str(self.store.path),
                **self.store.counts(),
            },
        )

    def _seed(self, request: Request) -> Reply:
        body = request.json_body()
        if isinstance(body, dict) and "targets" in body:
            body = body["targets"]
        if not isinstance(body, list):
            raise ValueError('seed takes a JSON list of targets (or {"targets": [...]})')
        targets = []
        for index, raw in enumerate(body):
            try:
                targets.append(validate_target(raw))
            except ValueError as exc:
                raise ValueError(f"target {index}: {exc}") from None
        return Reply(200, {"seeded": self.store.seed(targets)})

    def _budgets(self, request: Request) -> Reply:
        query = {name: values[0] for name, values in request.query.items()}
        return Reply(200, self.store.targets(query.get("platform"), query.get("account_id")))

    def _mutations(self, request: Request) -> Reply:
        query = {name: values[0] for name, values in request.query.items()}
        return Reply(
            200,
            self.store.mutations(
                platform=query.get("platform"),
                target_id=query.get("target_id"),
                since_id=int(query.get("since_id", 0)),
            ),
        )

    def _set_faults(self, request: Request) -> Reply:
        body = request.json_body() or {}
        if not isinstance(body, dict):
            raise ValueError("faults take a JSON object of settings")
        self.faults.configure(FaultConfig.from_dict(body))
        return Reply(200, self.faults.snapshot())

    def _reset(self, request: Request) -> Reply:
        self.store.reset()
        return Reply(200, {"reset": True})


class _Throttled(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__("throttled")
        self.reply = reply


# --- HTTP -----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "adloop-sandbox/1"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection is closed after this long
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every answer.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding") or length > MAX_BODY_BYTES:
            self._send(
                Reply(
                    411 if length <= MAX_BODY_BYTES else 413,
                    {"error": "send a Content-Length body under 1 MB"},
                )
            )
            return
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
        )
        try:
            outcome = self.server.app.handle(request)
        except Exception:
            logger.exception("sandbox failed on %s %s", self.command, url.path)
            self._send(Reply(500, {"error": "the sandbox itself failed; see its stderr"}))
            return
        if outcome.sleep_s:
            time.sleep(outcome.sleep_s)
        if outcome.exit:
            _die(f"injected crash (exit mode) after committing request {request.request_id}")
        if outcome.drop or outcome.reply is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(outcome.reply)

    def _send(self, reply: Reply) -> None:
        payload = json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout fault)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: SandboxApp) -> None:
        super().__init__(address, _Handler)
        self.app = app


def _die(message: str) -> None:
    print(f"adloop sandbox: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(EXIT_INJECTED_CRASH)


def make_server(app: SandboxApp, host: str = "127.0.0.1", port: int = 0) -> _Server:
    return _Server((host, port), app)


def serve_in_thread(server: _Server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="sandbox-http", daemon=True)
    thread.start()
    return thread
