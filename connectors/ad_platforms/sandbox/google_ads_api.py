"""The Google Ads REST face of the sandbox: campaignBudgets:mutate, campaigns:mutate and
googleAds:search, with Google's error shapes (google.rpc.Status carrying a GoogleAdsFailure)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from connectors.ad_platforms.sandbox import gaql
from connectors.ad_platforms.sandbox.common import (
    ApiError,
    Reply,
    Request,
    WritePlan,
    duration,
)
from connectors.ad_platforms.sandbox.store import Change, Store, min_budget_step_micros

PLATFORM = "google_ads"
_ROUTE = re.compile(
    r"^/(?P<version>v\d+)/customers/(?P<customer>[^/]+)/"
    r"(?P<method>campaignBudgets:mutate|campaigns:mutate|googleAds:search)$"
)
_BUDGET_NAME = re.compile(r"^customers/(?P<customer>\d+)/campaignBudgets/(?P<id>\d+)$")
_CAMPAIGN_NAME = re.compile(r"^customers/(?P<customer>\d+)/campaigns/(?P<id>\d+)$")
# Per mutate method's resource: how messages name it, its resource names, and the one field
# an update may change.
_MUTABLE = {
    "campaignBudgets": ("campaign budget", _BUDGET_NAME, "amount_micros"),
    "campaigns": ("campaign", _CAMPAIGN_NAME, "status"),
}
MUTATE_KEYS = frozenset({"operations", "partialFailure", "validateOnly", "responseContentType"})
SEARCH_KEYS = frozenset(
    {"query", "pageToken", "pageSize", "validateOnly", "returnTotalResultsCount"}
)
# Far above any daily budget the loop proposes; a guard against unit mix-ups (USD sent as micros
# times a million).
MAX_AMOUNT_MICROS = 10**13
CAMPAIGN_STATUSES = ("ENABLED", "PAUSED", "REMOVED")
# The google.rpc status and message of a GoogleAdsFailure, by HTTP status.
_RPC_STATUS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: (
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential.",
    ),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
}


@dataclass(frozen=True)
class Route:
    version: str
    customer: str
    method: str


class GoogleAdsApi:
    platform = PLATFORM

    def __init__(self, store: Store, *, access_token: str, developer_token: str) -> None:
        self.store = store
        self._access_token = access_token
        self._developer_token = developer_token

    # --- routing and auth ----------------------------------------------------------------

    def route(self, request: Request) -> Route | None:
        match = _ROUTE.match(request.path)
        if match is None:
            return None
        return Route(match["version"], match["customer"], match["method"])

    def is_write(self, request: Request, route: Route) -> bool:
        return route.method.endswith(":mutate")

    def authenticate(self, request: Request, route: Route) -> Reply | None:
        if request.method != "POST":
            raise ApiError(
                _status(
                    route,
                    405,
                    "INVALID_ARGUMENT",
                    f"{request.method} is not allowed here; this method takes POST.",
                )
            )
        auth = request.header("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if not auth:
            return _status(
                route,
                401,
                "UNAUTHENTICATED",
                "Request is missing required authentication credential. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )
        fail = functools.partial(_fail, route, request)
        if scheme.lower() != "bearer" or not _same(token.strip(), self._access_token):
            return fail(
                401,
                {"authenticationError": "OAUTH_TOKEN_INVALID"},
                "OAuth token in the header is not valid.",
            )
        developer_token = request.header("developer-token")
        if not developer_token:
            return fail(
                400,
                {"requestError": "DEVELOPER_TOKEN_PARAMETER_MISSING"},
                "The developer-token parameter is required for all requests.",
            )
        if not _same(developer_token, self._developer_token):
            return fail(
                403,
                {"authenticationError": "DEVELOPER_TOKEN_INVALID"},
                "The developer token is not valid.",
            )
        login = request.header("login-customer-id")
        if not route.customer.isdigit() or (login is not None and not login.isdigit()):
            return fail(
                400,
                {"requestError": "INVALID_CUSTOMER_ID"},
                "Customer ID is invalid: use the 10 digits without dashes.",
            )
        if not self.store.has_account(PLATFORM, route.customer):
            return fail(
                403,
                {"authorizationError": "USER_PERMISSION_DENIED"},
                "User doesn't have permission to access customer. Note: If you're "
                "accessing a client customer, the manager's customer id must be set in "
                "the 'login-customer-id' header.",
            )
        return None

    def validate_only(self, request: Request, route: Route) -> bool:
        body = self._body(request, route)
        return bool(body.get("validateOnly", False))

    def fingerprint(self, request: Request, route: Route) -> str:
        body = self._body(request, route)
        payload = json.dumps(
            {"path": f"/customers/{route.customer}/{route.method}", "body": body}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    # --- answers every request can get --------------------------------------------------------

    def throttled(
        self, request: Request, route: Route, *, retry_after_s: float, code: int
    ) -> Reply:
        delay = duration(retry_after_s)
        failure = _failure_detail(
            route,
            [
                {
                    "errorCode": {"quotaError": "RESOURCE_EXHAUSTED"},
                    "message": f"Too many requests. Retry in {delay}.",
                    "details": {
                        "quotaErrorDetails": {
                            "rateScope": "DEVELOPER",
                            "rateName": "Number of operations for explorer access",
                            "retryDelay": delay,
                        }
                    },
                }
            ],
            request,
        )
        return _status(
            route,
            429,
            "RESOURCE_EXHAUSTED",
            "Resource has been exhausted (e.g. check quota).",
            details=[
                failure,
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
            ],
        )

    def server_error(self, request: Request, route: Route) -> Reply:
        return _fail(
            route,
            request,
            503,
            {"internalError": "TRANSIENT_ERROR"},
            "The request failed due to a transient error; retry it.",
        )

    def key_reused(self, request: Request, route: Route, key: str) -> Reply:
        return _fail(
            route,
            request,
            400,
            {"sandboxError": "IDEMPOTENCY_KEY_REUSED"},
            f"(sandbox only) Idempotency-Key {key!r} was first used for a different "
            "request; use a new key for a new action.",
        )

    def not_found(self, request: Request) -> Reply:
        route = Route("v0", "", "")
        return _status(route, 404, "NOT_FOUND", f"The sandbox does not serve {request.path}.")

    def decorate(self, request: Request, route: Route, reply: Reply, *, throttled_s: float) -> None:
        reply.headers.setdefault("request-id", request.request_id)

    # --- reads -------------------------------------------------------------------------------

    def read(self, request: Request, route: Route) -> Reply:
        body = self._body(request, route)
        _check_keys(route, body, SEARCH_KEYS, "SearchGoogleAdsRequest")
        try:
            query = gaql.parse(body.get("query", ""))
        except gaql.GaqlError as exc:
            raise ApiError(
                _fail(
                    route,
                    request,
                    400,
                    {"queryError": exc.code},
                    str(exc),
                    trigger=body.get("query"),
                )
            ) from None
        results = query.run(self._rows(route.customer))
        out: dict[str, Any] = {"fieldMask": query.field_mask, "requestId": request.request_id}
        if results:  # the API leaves `results` out when nothing matched
            out = {"results": results, **out}
        return Reply(200, out)

    def _rows(self, customer: str) -> list[dict[str, Any]]:
        rows = []
        for target in self.store.targets(PLATFORM, customer):
            budget = f"customers/{customer}/campaignBudgets/{target['target_id']}"
            rows.append(
                {
                    "campaign_budget.resource_name": budget,
                    "campaign_budget.id": target["target_id"],
                    "campaign_budget.amount_micros": target["amount"],
                    "campaign_budget.name": target["name"],
                    # One campaign per budget, with the budget's id.
                    "campaign.resource_name": f"customers/{customer}/campaigns/{target['target_id']}",
                    "campaign.id": target["target_id"],
                    "campaign.status": target["status"],
                    "campaign.name": target["name"],
                    "campaign.campaign_budget": budget,
                }
            )
        return rows

    # --- writes ------------------------------------------------------------------------------

    def plan_write(self, request: Request, route: Route) -> WritePlan:
        body = self._body(request, route)
        _check_keys(route, body, MUTATE_KEYS, "MutateRequest")
        operations = body.get("operations")
        if not isinstance(operations, list) or not operations:
            raise ApiError(
                _fail(
                    route,
                    request,
                    400,
                    {"requestError": "OPERATION_REQUIRED"},
                    "At least one operation is required.",
                    location=[{"fieldName": "operations"}],
                )
            )
        partial = _bool_field(route, body, "partialFailure")
        validate_only = _bool_field(route, body, "validateOnly")
        budgets = route.method == "campaignBudgets:mutate"
        errors: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        changes: list[Change] = []
        for index, operation in enumerate(operations):
            try:
                resource_name, change = (
                    self._budget_operation(route, index, operation)
                    if budgets
                    else self._campaign_operation(route, index, operation)
                )
            except _OperationError as exc:
                errors.append(exc.error)
                results.append({})
                continue
            changes.append(change)
            results.append({"resourceName": resource_name})
        if errors and not partial:
            raise ApiError(_failure(route, request, 400, errors))
        if body.get("responseContentType") == "MUTABLE_RESOURCE" and not validate_only:
            self._attach_resources(route, results, changes, budgets)
        reply_body: dict[str, Any] = {} if validate_only else {"results": results}
        if errors:
            first = errors[0]
            reply_body["partialFailureError"] = {
                "code": 3,
                "message": f"Multiple errors in 'details'. First error: {first['message']}",
                "details": [_failure_detail(route, errors, request)],
            }
        return WritePlan(Reply(200, reply_body), [] if validate_only else changes, validate_only)

    def _budget_operation(self, route: Route, index: int, operation: Any) -> tuple[str, Change]:
        update, resource_name, target = self._masked_update(
            route, index, operation, "a budget's amount", "amount_micros"
        )
        where = _at(index)
        raw = update.get("amountMicros", update.get("amount_micros"))
        if raw is None:
            raise _OperationError(
                {"requestError": "REQUIRED_FIELD_MISSING"},
                "amount_micros is in the update mask but has no value.",
                location=[*where, {"fieldName": "update"}, {"fieldName": "amount_micros"}],
            )
        amount = _int64(route, raw, f"operations[{index}].update.amount_micros")
        location = [*where, {"fieldName": "update"}, {"fieldName": "amount_micros"}]
        trigger = {"int64Value": str(amount)}
        if amount <= 0:
            raise _OperationError(
                {"rangeError": "TOO_LOW"}, "Too low.", location=location, trigger=trigger
            )
        if amount > MAX_AMOUNT_MICROS:
            raise _OperationError(
                {"rangeError": "TOO_HIGH"}, "Too high.", location=location, trigger=trigger
            )
        step = min_budget_step_micros(target["currency"])
        if amount % step:
            raise _OperationError(
                {"campaignBudgetError": "NON_MULTIPLE_OF_MINIMUM_CURRENCY_UNIT"},
                f"The budget amount must be a multiple of the currency's minimum unit "
                f"({step} micros for {target['currency']}).",
                location=location,
                trigger=trigger,
            )
        return resource_name, Change(target["target_id"], "amount", amount)

    def _campaign_operation(self, route: Route, index: int, operation: Any) -> tuple[str, Change]:
        update, resource_name, target = self._masked_update(
            route, index, operation, "a campaign's status", "a campaign's status"
        )
        status = update.get("status")
        location = [*_at(index), {"fieldName": "update"}, {"fieldName": "status"}]
        if status not in CAMPAIGN_STATUSES:
            raise ApiError(
                _bad_request(
                    route,
                    f"operations[{index}].update.status",
                    f"Invalid value at 'operations[{index}].update.status' "
                    f"(type.googleapis.com/google.ads.googleads.{route.version}.enums."
                    f"CampaignStatusEnum.CampaignStatus), {json.dumps(status)}",
                )
            )
        if status == "REMOVED":
            raise _OperationError(
                {"campaignError": "CANNOT_MODIFY_REMOVED_CAMPAIGN"},
                "The sandbox pauses and resumes campaigns; it does not remove them.",
                location=location,
                trigger={"stringValue": status},
            )
        return resource_name, Change(target["target_id"], "status", status)

    def _masked_update(
        self, route: Route, index: int, operation: Any, changes_only: str, updates_only: str
    ) -> tuple[dict[str, Any], Any, dict[str, Any]]:
        """One operation of the route's mutate method, whose update mask must name the one field
        the sandbox changes and nothing else: the update, its resource name and the target."""
        kind = route.method.removesuffix(":mutate")
        what, pattern, field = _MUTABLE[kind]
        update, mask = self._operation_parts(route, index, operation, what)
        resource_name = update.get("resourceName")
        target = self._target(route, index, resource_name, pattern, kind)
        mask_location = [*_at(index), {"fieldName": "update_mask"}]
        if field not in mask:
            raise _OperationError(
                {"fieldMaskError": "FIELD_MASK_MISSING"},
                f"The update mask must name {field}: the sandbox changes only {changes_only}.",
                location=mask_location,
            )
        extra = sorted(set(mask) - {field})
        if extra:
            raise _OperationError(
                {"fieldMaskError": "FIELD_NOT_FOUND"},
                f"The sandbox updates only {updates_only}, not {', '.join(extra)}.",
                location=mask_location,
            )
        return update, resource_name, target

    def _operation_parts(
        self, route: Route, index: int, operation: Any, what: str
    ) -> tuple[dict[str, Any], list[str]]:
        if not isinstance(operation, dict):
            raise ApiError(
                _bad_request(route, f"operations[{index}]", "Invalid value: expected an object.")
            )
        unknown = sorted(set(operation) - {"update", "updateMask", "create", "remove"})
        if unknown:
            raise ApiError(
                _bad_request(
                    route,
                    f"operations[{index}]",
                    f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                    f"'operations[{index}]': Cannot find field.",
                )
            )
        if "update" not in operation:
            raise _OperationError(
                {"requestError": "OPERATION_REQUIRED"},
                f"Mutate operation should have update specified: the sandbox does not create "
                f"or remove a {what}.",
                location=_at(index),
            )
        update = operation["update"]
        if not isinstance(update, dict):
            raise ApiError(
                _bad_request(
                    route, f"operations[{index}].update", "Invalid value: expected an object."
                )
            )
        mask = operation.get("updateMask", "")
        if not isinstance(mask, str):
            raise ApiError(
                _bad_request(
                    route, f"operations[{index}].update_mask", "Invalid value: expected a string."
                )
            )
        paths = [_snake(path.strip()) for path in mask.split(",") if path.strip()]
        if not paths:
            raise _OperationError(
                {"fieldMaskError": "FIELD_MASK_MISSING"},
                "The field mask must be present for update operations.",
                location=[*_at(index), {"fieldName": "update_mask"}],
            )
        return update, paths

    def _target(
        self, route: Route, index: int, resource_name: Any, pattern: re.Pattern[str], kind: str
    ) -> dict[str, Any]:
        """The seeded target a resource name points at, or the operation's error."""
        location = [*_at(index), {"fieldName": "update"}, {"fieldName": "resource_name"}]
        if not resource_name:
            raise _OperationError(
                {"requestError": "RESOURCE_NAME_MISSING"},
                "Resource name is required for this request.",
                location=location,
            )
        match = pattern.match(str(resource_name))
        if match is None:
            raise _OperationError(
                {"requestError": "RESOURCE_NAME_MALFORMED"},
                f"Resource name provided is malformed: expected customers/<id>/{kind}/<id>.",
                location=location,
                trigger={"stringValue": str(resource_name)},
            )
        if match["customer"] != route.customer:
            raise _OperationError(
                {"requestError": "INVALID_CUSTOMER_ID"},
                f"The resource belongs to customer {match['customer']}, not to the request's "
                f"customer {route.customer}.",
                location=location,
                trigger={"stringValue": str(resource_name)},
            )
        target = self.store.get(PLATFORM, match["id"])
        if target is None or target["account_id"] != route.customer:
            raise _OperationError(
                {"mutateError": "RESOURCE_NOT_FOUND"},
                "Requested resource was not found.",
                location=location,
                trigger={"stringValue": str(resource_name)},
            )
        return target

    def _attach_resources(
        self, route: Route, results: list[dict[str, Any]], changes: list[Change], budgets: bool
    ) -> None:
        by_id = {change.target_id: change for change in changes}
        for result in results:
            if not result:
                continue
            target_id = result["resourceName"].rsplit("/", 1)[1]
            target = self.store.get(PLATFORM, target_id) or {}
            change = by_id.get(target_id)
            if budgets:
                amount = change.new_value if change else target.get("amount")
                result["campaignBudget"] = {
                    "resourceName": result["resourceName"],
                    "id": target_id,
                    "name": target.get("name", ""),
                    "amountMicros": str(amount),
                }
            else:
                status = change.new_value if change else target.get("status")
                result["campaign"] = {
                    "resourceName": result["resourceName"],
                    "id": target_id,
                    "name": target.get("name", ""),
                    "status": status,
                }

    def _body(self, request: Request, route: Route) -> dict[str, Any]:
        try:
            body = request.json_body()
        except ValueError as exc:
            raise ApiError(
                _bad_request(route, "", f"Invalid JSON payload received. {exc}")
            ) from None
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ApiError(
                _bad_request(route, "", "Invalid JSON payload received. Expected an object.")
            )
        return body


# --- error shapes --------------------------------------------------------------------------


class _OperationError(Exception):
    """One operation failed; the others may still apply (partial failure)."""

    def __init__(
        self,
        code: dict[str, str],
        message: str,
        *,
        location: list[dict[str, Any]] | None = None,
        trigger: Any = None,
    ) -> None:
        super().__init__(message)
        self.error = _error(code, message, location=location, trigger=trigger)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _snake(path: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", path).lower()


def _at(index: int) -> list[dict[str, Any]]:
    return [{"fieldName": "operations", "index": index}]


def _error(
    code: dict[str, str],
    message: str,
    *,
    location: list[dict[str, Any]] | None = None,
    trigger: Any = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {"errorCode": code, "message": message}
    if trigger is not None:
        error["trigger"] = trigger if isinstance(trigger, dict) else {"stringValue": str(trigger)}
    if location:
        error["location"] = {"fieldPathElements": location}
    return error


def _failure_detail(route: Route, errors: list[dict[str, Any]], request: Request) -> dict[str, Any]:
    return {
        "@type": f"type.googleapis.com/google.ads.googleads.{route.version}.errors.GoogleAdsFailure",
        "errors": errors,
        "requestId": request.request_id,
    }


def _failure(
    route: Route, request: Request, http_status: int, errors: list[dict[str, Any]]
) -> Reply:
    """A google.rpc.Status carrying a GoogleAdsFailure, with the status and message the API
    gives for `http_status`."""
    status, message = _RPC_STATUS[http_status]
    return _status(
        route, http_status, status, message, details=[_failure_detail(route, errors, request)]
    )


def _fail(
    route: Route,
    request: Request,
    http_status: int,
    code: dict[str, str],
    message: str,
    **error: Any,
) -> Reply:
    """A failure with one error (`error`: its location and trigger)."""
    return _failure(route, request, http_status, [_error(code, message, **error)])


def _status(
    route: Route,
    http_status: int,
    status: str,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
) -> Reply:
    error: dict[str, Any] = {"code": http_status, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return Reply(http_status, {"error": error})


def _bad_request(route: Route, field: str, description: str) -> Reply:
    """A body that does not even parse into the request message fails as a whole, partial
    failure or not."""
    violations = {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": field, "description": description}],
    }
    return _status(route, 400, "INVALID_ARGUMENT", description, details=[violations])


def _check_keys(route: Route, body: dict[str, Any], known: frozenset[str], message: str) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise ApiError(
            _bad_request(
                route,
                unknown[0],
                f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field '
                f"(the sandbox's {message} knows {sorted(known)}).",
            )
        )


def _bool_field(route: Route, body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise ApiError(
            _bad_request(route, name, f"Invalid value at '{name}' (TYPE_BOOL), {json.dumps(value)}")
        )
    return value


def _int64(route: Route, raw: Any, field: str) -> int:
    if isinstance(raw, bool):
        raw = "bool"
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"-?\d+", raw.strip()):
        return int(raw)
    raise ApiError(
        _bad_request(route, field, f"Invalid value at '{field}' (TYPE_INT64), {json.dumps(raw)}")
    )
