"""A Google Ads REST client for the three calls adloop makes: read a campaign budget (GAQL
search), set its amount (campaignBudgets:mutate) and pause or resume the campaigns it funds
(campaigns:mutate). Errors are mapped onto `base`'s classes."""

from __future__ import annotations

import re
from typing import Any

from connectors.ad_platforms._http import Exchange, HttpClient, error_for
from connectors.ad_platforms.base import (
    ENABLED,
    GOOGLE_ADS,
    PAUSED,
    AdPlatformError,
    BudgetReading,
    BudgetTarget,
    CallRecord,
    PermanentError,
)

GOOGLE_ADS_BASE_URL = "https://googleads.googleapis.com"
DEFAULT_API_VERSION = "v18"
# The longest server hint honoured as given; a longer one is cut to this.
MAX_RETRY_AFTER_S = 3600.0
ENV_BASE_URL = "ADLOOP_GOOGLE_ADS_BASE_URL"
ENV_ACCESS_TOKEN = "ADLOOP_GOOGLE_ADS_ACCESS_TOKEN"
ENV_DEVELOPER_TOKEN = "ADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN"
ENV_LOGIN_CUSTOMER_ID = "ADLOOP_GOOGLE_ADS_LOGIN_CUSTOMER_ID"
ENV_API_VERSION = "ADLOOP_GOOGLE_ADS_API_VERSION"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


class GoogleAdsClient(HttpClient):
    """`AdPlatform` for Google Ads. A target is a campaign budget: `account_id` the customer id
    (digits), `target_id` the budget id; amounts are micros of the account currency.

    `set_status` pauses or resumes every non-removed campaign the budget funds (found with a
    GAQL query first), so it also works for shared budgets on the real API."""

    platform = GOOGLE_ADS
    api_version_pattern = r"v\d+"
    default_api_version = DEFAULT_API_VERSION

    def __init__(
        self,
        base_url: str,
        *,
        access_token: str,
        developer_token: str,
        login_customer_id: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(
            base_url,
            tokens={"an access token": access_token, "a developer token": developer_token},
            api_version=api_version,
            timeout_s=timeout_s,
            platform=GOOGLE_ADS,
        )
        self.login_customer_id = _digits(login_customer_id) if login_customer_id else None
        self._access_token = access_token
        self._developer_token = developer_token

    @classmethod
    def from_env(cls, **overrides: Any) -> GoogleAdsClient:
        """From ADLOOP_GOOGLE_ADS_ACCESS_TOKEN and ADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN (required),
        ADLOOP_GOOGLE_ADS_BASE_URL (default: the real API), ADLOOP_GOOGLE_ADS_LOGIN_CUSTOMER_ID
        and ADLOOP_GOOGLE_ADS_API_VERSION (optional); keyword arguments win."""
        return cls._from_env(
            overrides,
            name="Google Ads",
            required={"access_token": ENV_ACCESS_TOKEN, "developer_token": ENV_DEVELOPER_TOKEN},
            optional={
                "login_customer_id": (ENV_LOGIN_CUSTOMER_ID, None),
                "api_version": (ENV_API_VERSION, DEFAULT_API_VERSION),
            },
            base_url=(ENV_BASE_URL, GOOGLE_ADS_BASE_URL),
        )

    def __repr__(self) -> str:
        return (
            f"GoogleAdsClient(base_url={self.base_url!r}, api_version={self.api_version!r}, "
            f"login_customer_id={self.login_customer_id!r})"
        )

    # --- AdPlatform ----------------------------------------------------------------------------

    def read_budget(self, target: BudgetTarget) -> BudgetReading:
        customer, budget_id = self._ids(target)
        rows, _ = self.search(
            customer,
            "SELECT campaign_budget.resource_name, campaign_budget.amount_micros, "
            "campaign.resource_name, campaign.status FROM campaign "
            f"WHERE campaign_budget.id = {budget_id} AND campaign.status != 'REMOVED'",
        )
        if rows:
            amount = _amount(rows[0], target)
            live = {row.get("campaign", {}).get("status") for row in rows}
            return BudgetReading(amount=amount, status=ENABLED if ENABLED in live else PAUSED)
        # No live campaign uses it: the budget may still exist, and then nothing spends it.
        rows, call = self.search(
            customer,
            "SELECT campaign_budget.resource_name, campaign_budget.amount_micros "
            f"FROM campaign_budget WHERE campaign_budget.id = {budget_id}",
        )
        if not rows:
            raise PermanentError(
                f"google_ads: campaign budget {budget_id} not found in customer {customer}",
                code="NOT_FOUND",
                call=call,
            )
        return BudgetReading(amount=_amount(rows[0], target), status=PAUSED)

    def update_budget(
        self, target: BudgetTarget, amount: int, *, validate_only: bool, idempotency_key: str
    ) -> CallRecord:
        customer, budget_id = self._ids(target)
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise PermanentError(
                f"google_ads: the amount is an integer of micros, not {amount!r}",
                code="INVALID_AMOUNT",
            )
        body = {
            "operations": [
                {
                    "update": {
                        "resourceName": f"customers/{customer}/campaignBudgets/{budget_id}",
                        "amountMicros": str(amount),
                    },
                    "updateMask": "amount_micros",
                }
            ],
            "partialFailure": False,
            "validateOnly": bool(validate_only),
        }
        return self._mutate(customer, "campaignBudgets:mutate", body, idempotency_key).record

    def set_status(
        self, target: BudgetTarget, status: str, *, validate_only: bool, idempotency_key: str
    ) -> CallRecord:
        customer, budget_id = self._ids(target)
        if status not in (ENABLED, PAUSED):
            raise PermanentError(
                f"google_ads: status is ENABLED or PAUSED, not {status!r}", code="INVALID_STATUS"
            )
        rows, call = self.search(
            customer,
            "SELECT campaign.resource_name, campaign.status FROM campaign "
            f"WHERE campaign_budget.id = {budget_id} AND campaign.status != 'REMOVED'",
        )
        names = [row["campaign"]["resourceName"] for row in rows if row.get("campaign")]
        if not names:
            raise PermanentError(
                f"google_ads: no campaign uses budget {budget_id} in customer {customer}",
                code="NOT_FOUND",
                call=call,
            )
        body = {
            "operations": [
                {"update": {"resourceName": name, "status": status}, "updateMask": "status"}
                for name in names
            ],
            "partialFailure": False,
            "validateOnly": bool(validate_only),
        }
        return self._mutate(customer, "campaigns:mutate", body, idempotency_key).record

    # --- the calls -----------------------------------------------------------------------------

    def search(self, customer_id: str, query: str) -> tuple[list[dict[str, Any]], CallRecord]:
        """Run a GAQL query; the rows (the API's `results`, [] when none) and the call."""
        exchange = self._send(
            f"/customers/{_digits(customer_id)}/googleAds:search",
            {"query": query},
            is_write=False,
            idempotency_key=None,
        )
        return list(exchange.body.get("results") or []), exchange.record

    def _mutate(
        self, customer: str, method: str, body: dict[str, Any], idempotency_key: str
    ) -> Exchange:
        return self._send(
            f"/customers/{customer}/{method}",
            body,
            is_write=True,
            idempotency_key=idempotency_key,
        )

    def _send(
        self, path: str, body: dict[str, Any], *, is_write: bool, idempotency_key: str | None
    ) -> Exchange:
        headers = {
            "Authorization": f"Bearer {self._access_token}",
            "developer-token": self._developer_token,
        }
        recorded: dict[str, str] = {}
        if self.login_customer_id:
            headers["login-customer-id"] = recorded["login-customer-id"] = self.login_customer_id
        exchange = self._http.send(
            "POST",
            f"/{self.api_version}{path}",
            headers=headers,
            recorded_headers=recorded,
            is_write=is_write,
            json_body=body,
            idempotency_key=idempotency_key,
        )
        if exchange.status >= 300:
            raise self._error(exchange, is_write=is_write, path=path)
        return exchange

    def _error(self, exchange: Exchange, *, is_write: bool, path: str) -> AdPlatformError:
        status, error = exchange.status, exchange.error
        rpc_status = str(error.get("status", ""))
        details = [d for d in error.get("details", []) or [] if isinstance(d, dict)]
        failures = [
            e
            for d in details
            if str(d.get("@type", "")).endswith("errors.GoogleAdsFailure")
            for e in d.get("errors", []) or []
            if isinstance(e, dict)
        ]
        codes = [
            f"{category}.{value}"
            for e in failures
            for category, value in (e.get("errorCode") or {}).items()
        ]
        first = failures[0].get("message") if failures else None
        message = self._http.scrub(
            f"google_ads POST {path}: HTTP {status} {rpc_status or ''}"
            f"{' ' + codes[0] if codes else ''}: {first or error.get('message') or exchange.body}"
        )
        return error_for(
            exchange,
            message,
            is_write=is_write,
            throttled=(
                status == 429
                or rpc_status == "RESOURCE_EXHAUSTED"
                or any(c.startswith("quotaError.") for c in codes)
            ),
            timed_out=rpc_status == "DEADLINE_EXCEEDED",
            # ABORTED is a concurrent modification: rejected, nothing applied.
            transient=rpc_status in ("UNAVAILABLE", "INTERNAL", "ABORTED"),
            code=codes[0] if codes else rpc_status or f"HTTP_{status}",
            retry_after_s=lambda: _retry_delay(details, failures),
        )

    def _ids(self, target: BudgetTarget) -> tuple[str, str]:
        if target.platform != GOOGLE_ADS:
            raise PermanentError(
                f"GoogleAdsClient cannot act on a {target.platform} target ({target.key})",
                code="WRONG_PLATFORM",
            )
        customer = target.account_id.replace("-", "")
        if not customer.isdigit() or not target.target_id.isdigit():
            raise PermanentError(
                f"google_ads: customer and budget ids are digits, not {target.key!r}",
                code="INVALID_TARGET",
            )
        return customer, target.target_id


def _digits(value: str) -> str:
    digits = str(value).replace("-", "")
    if not digits.isdigit():
        raise ValueError(f"a Google Ads customer id is digits (dashes allowed), not {value!r}")
    return digits


def _amount(row: dict[str, Any], target: BudgetTarget) -> int:
    try:
        return int(row["campaignBudget"]["amountMicros"])
    except (KeyError, TypeError, ValueError):
        raise PermanentError(
            f"google_ads: no amountMicros in the search result for {target.key}: {row}",
            code="BAD_RESPONSE",
        ) from None


def parse_duration(value: Any) -> float | None:
    """A protobuf Duration as JSON ("2s", "1.500s") or {"seconds": 2, "nanos": 5e8}."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        return float(match.group(1)) if match else None
    if isinstance(value, dict):
        try:
            return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        except (TypeError, ValueError):
            return None
    return None


def _retry_delay(details: list[dict[str, Any]], failures: list[dict[str, Any]]) -> float | None:
    hints: list[float] = []
    for failure in failures:
        quota = (failure.get("details") or {}).get("quotaErrorDetails") or {}
        delay = parse_duration(quota.get("retryDelay"))
        if delay is not None:
            hints.append(delay)
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = parse_duration(detail.get("retryDelay"))
            if delay is not None:
                hints.append(delay)
    return min(max(hints), MAX_RETRY_AFTER_S) if hints else None
