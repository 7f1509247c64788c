"""The Meta Marketing API face of the sandbox: read and update one ad set
(`GET|POST /v{N}.0/{adset_id}`), with Graph API error shapes and the
X-Business-Use-Case-Usage header on every answer."""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from connectors.ad_platforms.sandbox.common import ApiError, Reply, Request, WritePlan
from connectors.ad_platforms.sandbox.store import Change, Store

PLATFORM = "meta"
_ROUTE = re.compile(r"^/(?P<version>v\d+\.\d+)/(?P<node>[^/]+)/?$")
READ_FIELDS = (
    "id",
    "name",
    "account_id",
    "daily_budget",
    "status",
    "configured_status",
    "effective_status",
)
WRITE_PARAMS = frozenset({"daily_budget", "status", "execution_options", "access_token"})
EXECUTION_OPTIONS = frozenset({"validate_only", "include_recommendations", "synchronous_ad_review"})
META_STATUS = {"ENABLED": "ACTIVE", "PAUSED": "PAUSED"}
# The sandbox's floor for a daily budget: one unit of the account currency in minor units
# (Meta's real floor depends on the optimisation goal and is usually higher).
MIN_DAILY_BUDGET = 100
# Calls per account per minute that count as 100 % in the usage header.
CALLS_PER_MINUTE_AT_100 = 600
THROTTLE_MESSAGES = {
    17: (400, "(#17) User request limit reached", 2446079),
    613: (403, "(#613) Calls to this api have exceeded the rate limit.", None),
    80004: (
        400,
        "(#80004) There have been too many calls to this ad-account. Wait a bit and try again. "
        "For more info, please refer to "
        "https://developers.facebook.com/docs/graph-api/overview/rate-limiting#ads-management.",
        2446079,
    ),
}


@dataclass(frozen=True)
class Route:
    version: str
    node: str


class MetaApi:
    platform = PLATFORM

    def __init__(self, store: Store, *, access_token: str) -> None:
        self.store = store
        self._access_token = access_token
        self._calls: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self._calls_lock = threading.Lock()

    # --- routing and auth ----------------------------------------------------------------

    def route(self, request: Request) -> Route | None:
        match = _ROUTE.match(request.path)
        if match is None:
            return None
        return Route(match["version"], match["node"])

    def is_write(self, request: Request, route: Route) -> bool:
        return request.method == "POST"

    def authenticate(self, request: Request, route: Route) -> Reply | None:
        if request.method not in ("GET", "POST"):
            raise ApiError(
                _error(400, f"(#100) Unsupported {request.method.lower()} request.", 100)
            )
        params = self._params(request)
        auth = request.header("Authorization") or ""
        scheme, _, header_token = auth.partition(" ")
        token = header_token.strip() if scheme.lower() in ("bearer", "oauth") else ""
        token = token or _first(params.get("access_token"))
        if not token:
            return _error(400, "An access token is required to request this resource.", 104)
        if not hmac.compare_digest(token.encode(), self._access_token.encode()):
            return _error(400, "Invalid OAuth access token - Cannot parse access token", 190)
        return None

    def validate_only(self, request: Request, route: Route) -> bool:
        return "validate_only" in self._execution_options(self._params(request))

    def fingerprint(self, request: Request, route: Route) -> str:
        params = {
            name: value
            for name, value in self._params(request).items()
            if name != "access_token"  # never kept, not even hashed
        }
        payload = json.dumps({"node": route.node, "params": params}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()

    # --- answers every request can get --------------------------------------------------------

    def throttled(
        self, request: Request, route: Route, *, retry_after_s: float, code: int
    ) -> Reply:
        status, message, subcode = THROTTLE_MESSAGES[code]
        reply = _error(status, message, code, subcode=subcode, transient=True)
        return reply

    def server_error(self, request: Request, route: Route) -> Reply:
        return _error(
            503,
            "An unexpected error has occurred. Please retry your request later.",
            2,
            transient=True,
        )

    def key_reused(self, request: Request, route: Route, key: str) -> Reply:
        return _error(
            400,
            f"(#100) (sandbox only) Idempotency-Key {key!r} was first used for a different "
            "request; use a new key for a new action.",
            100,
        )

    def not_found(self, request: Request) -> Reply:
        return _error(400, f"Unknown path components: {request.path}", 2500)

    def decorate(self, request: Request, route: Route, reply: Reply, *, throttled_s: float) -> None:
        reply.headers.setdefault("x-fb-trace-id", request.request_id)
        reply.headers.setdefault("x-fb-request-id", request.request_id)
        if isinstance(reply.body, dict) and isinstance(reply.body.get("error"), dict):
            reply.body["error"].setdefault("fbtrace_id", request.request_id)
        target = self.store.get(PLATFORM, route.node) if route else None
        if target is None:
            reply.headers["X-Business-Use-Case-Usage"] = "{}"
            return
        account = target["account_id"]
        usage = self._usage(account, throttled_s)
        reply.headers["X-Business-Use-Case-Usage"] = json.dumps({account: [usage]})

    def _usage(self, account: str, throttled_s: float) -> dict[str, Any]:
        now = time.monotonic()
        with self._calls_lock:
            calls = self._calls[account]
            calls.append(now)
            while calls and calls[0] < now - 60.0:
                calls.popleft()
            percent = min(100, math.ceil(100 * len(calls) / CALLS_PER_MINUTE_AT_100))
        if throttled_s > 0:
            percent = 100
        return {
            "type": "ads_management",
            "call_count": percent,
            "total_cputime": max(1, percent // 2),
            "total_time": max(1, percent // 2),
            # Meta counts in minutes; 0 means "not throttled".
            "estimated_time_to_regain_access": math.ceil(throttled_s / 60.0) if throttled_s else 0,
        }

    # --- reads -------------------------------------------------------------------------------

    def read(self, request: Request, route: Route) -> Reply:
        target = self._target(request, route)
        params = self._params(request)
        raw_fields = _first(params.get("fields")) or "id"
        wanted = [name.strip() for name in raw_fields.split(",") if name.strip()]
        for name in wanted:
            if name not in READ_FIELDS:
                raise ApiError(
                    _error(
                        400,
                        f"(#100) Tried accessing nonexisting field ({name}) on node type (AdSet)",
                        100,
                    )
                )
        status = META_STATUS[target["status"]]
        values = {
            "id": target["target_id"],
            "name": target["name"],
            "account_id": target["account_id"],
            "daily_budget": str(target["amount"]),
            "status": status,
            "configured_status": status,
            "effective_status": status,
        }
        body = {name: values[name] for name in wanted}
        body.setdefault("id", target["target_id"])
        return Reply(200, body)

    # --- writes ------------------------------------------------------------------------------

    def plan_write(self, request: Request, route: Route) -> WritePlan:
        target = self._target(request, route)
        params = self._params(request)
        unknown = sorted(set(params) - WRITE_PARAMS)
        if unknown:
            raise ApiError(
                _error(
                    400,
                    f"(#100) Param {unknown[0]} is not supported by the adloop sandbox "
                    f"(it takes {sorted(WRITE_PARAMS - {'access_token'})}).",
                    100,
                )
            )
        options = self._execution_options(params)
        changes: list[Change] = []
        if "daily_budget" in params:
            raw = _first(params["daily_budget"])
            if raw is None or not re.fullmatch(r"-?\d+", str(raw).strip()):
                raise ApiError(_error(400, "(#100) Param daily_budget must be an integer", 100))
            amount = int(str(raw).strip())
            if amount < MIN_DAILY_BUDGET:
                raise ApiError(
                    _error(
                        400,
                        "Invalid parameter",
                        100,
                        subcode=1885272,
                        user_title="Your Budget Is Too Low",
                        user_msg=f"The minimum daily budget for this ad set is {MIN_DAILY_BUDGET} "
                        f"in the minor unit of {target['currency']}.",
                    )
                )
            changes.append(Change(target["target_id"], "amount", amount))
        if "status" in params:
            status = str(_first(params["status"]) or "")
            if status not in ("ACTIVE", "PAUSED", "ARCHIVED", "DELETED"):
                raise ApiError(
                    _error(
                        400,
                        "(#100) Param status must be one of {ACTIVE, PAUSED, DELETED, ARCHIVED}",
                        100,
                    )
                )
            if status not in ("ACTIVE", "PAUSED"):
                raise ApiError(
                    _error(
                        400,
                        f"(#100) The adloop sandbox pauses and resumes ad sets; it does not "
                        f"set {status}.",
                        100,
                    )
                )
            changes.append(
                Change(target["target_id"], "status", "ENABLED" if status == "ACTIVE" else "PAUSED")
            )
        if not changes:
            raise ApiError(
                _error(
                    400,
                    "(#100) The adloop sandbox expects daily_budget and/or status in an ad set "
                    "update.",
                    100,
                )
            )
        validate_only = "validate_only" in options
        return WritePlan(
            Reply(200, {"success": True}), [] if validate_only else changes, validate_only
        )

    # --- helpers -----------------------------------------------------------------------------

    def _target(self, request: Request, route: Route) -> dict[str, Any]:
        target = self.store.get(PLATFORM, route.node) if route.node.isdigit() else None
        if target is None:
            verb = request.method.lower()
            raise ApiError(
                _error(
                    400,
                    f"Unsupported {verb} request. Object with ID '{route.node}' does not exist, "
                    "cannot be loaded due to missing permissions, or does not support this "
                    "operation. Please read the Graph API documentation at "
                    "https://developers.facebook.com/docs/graph-api",
                    100,
                    subcode=33,
                    kind="GraphMethodException",
                )
            )
        return target

    def _params(self, request: Request) -> dict[str, Any]:
        """Query string and body together, as the Graph API reads them (the body wins)."""
        params: dict[str, Any] = {name: values for name, values in request.query.items()}
        if request.method == "POST" and request.body.strip():
            if request.content_type == "application/json":
                try:
                    body = request.json_body()
                except ValueError:
                    raise ApiError(
                        _error(400, "(#100) The request body is not valid JSON", 100)
                    ) from None
                if not isinstance(body, dict):
                    raise ApiError(_error(400, "(#100) The request body must be an object", 100))
                params.update({name: [value] for name, value in body.items()})
            else:
                params.update(request.form_body())
        return params

    def _execution_options(self, params: dict[str, Any]) -> list[str]:
        raw = _first(params.get("execution_options"))
        if raw is None:
            return []
        options: Any = raw
        if isinstance(raw, str):
            try:
                options = json.loads(raw)
            except ValueError:
                options = [part.strip() for part in raw.split(",") if part.strip()]
        if isinstance(options, str):
            options = [options]
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise ApiError(
                _error(400, "(#100) Param execution_options must be an array of strings", 100)
            )
        bad = sorted(set(options) - EXECUTION_OPTIONS)
        if bad:
            raise ApiError(
                _error(
                    400,
                    f"(#100) Param execution_options[0] must be one of "
                    f"{{{', '.join(sorted(EXECUTION_OPTIONS))}}}, not {bad[0]}",
                    100,
                )
            )
        return options


def _first(values: Any) -> Any:
    if isinstance(values, list):
        return values[0] if values else None
    return values


def _error(
    http_status: int,
    message: str,
    code: int,
    *,
    subcode: int | None = None,
    kind: str = "OAuthException",
    transient: bool | None = None,
    user_title: str | None = None,
    user_msg: str | None = None,
) -> Reply:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if transient is not None:
        error["is_transient"] = transient
    if user_title:
        error["error_user_title"] = user_title
    if user_msg:
        error["error_user_msg"] = user_msg
    return Reply(http_status, {"error": error})
