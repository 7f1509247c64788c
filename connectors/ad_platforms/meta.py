"""A Meta Marketing API client for one ad set: read its daily budget and status, set the
budget, pause or resume it. The token goes in the Authorization header, never in the URL."""

from __future__ import annotations

import json
from typing import Any

from connectors.ad_platforms._http import Exchange, HttpClient, error_for
from connectors.ad_platforms.base import (
    ENABLED,
    META,
    PAUSED,
    AdPlatformError,
    BudgetReading,
    BudgetTarget,
    CallRecord,
    PermanentError,
)

META_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v21.0"
# Rate-limit codes: app (4), user (17), page (32), API (613), business use case (80000-80014).
THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
# Temporary errors: 1 unknown error, 2 service unavailable.
TRANSIENT_CODES = frozenset({1, 2})
# Meta's estimated_time_to_regain_access can run to hours; the hint is cut to this.
MAX_RETRY_AFTER_S = 3600.0
ENV_BASE_URL = "ADLOOP_META_BASE_URL"
ENV_ACCESS_TOKEN = "ADLOOP_META_ACCESS_TOKEN"
ENV_API_VERSION = "ADLOOP_META_API_VERSION"
READ_FIELDS = "id,account_id,daily_budget,status"


class MetaClient(HttpClient):
    """`AdPlatform` for Meta. A target is an ad set: `account_id` the ad account id (digits,
    no `act_`), `target_id` the ad set id; amounts are minor units of the account currency."""

    platform = META
    api_version_pattern = r"v\d+\.\d+"
    default_api_version = DEFAULT_API_VERSION

    def __init__(
        self,
        base_url: str,
        *,
        access_token: str,
        api_version: str = DEFAULT_API_VERSION,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(
            base_url,
            tokens={"an access token": access_token},
            api_version=api_version,
            timeout_s=timeout_s,
            platform=META,
        )
        self._access_token = access_token

    @classmethod
    def from_env(cls, **overrides: Any) -> MetaClient:
        """From ADLOOP_META_ACCESS_TOKEN (required), ADLOOP_META_BASE_URL (default: the real
        API) and ADLOOP_META_API_VERSION (optional); keyword arguments win."""
        return cls._from_env(
            overrides,
            name="Meta",
            required={"access_token": ENV_ACCESS_TOKEN},
            optional={"api_version": (ENV_API_VERSION, DEFAULT_API_VERSION)},
            base_url=(ENV_BASE_URL, META_BASE_URL),
        )

    def __repr__(self) -> str:
        return f"MetaClient(base_url={self.base_url!r}, api_version={self.api_version!r})"

    # --- AdPlatform ----------------------------------------------------------------------------

    def read_budget(self, target: BudgetTarget) -> BudgetReading:
        adset = self._adset(target)
        exchange = self._send("GET", adset, params={"fields": READ_FIELDS}, is_write=False)
        body = exchange.body
        account = str(body.get("account_id", "")).removeprefix("act_")
        if account and account != target.account_id.removeprefix("act_"):
            raise PermanentError(
                f"meta: ad set {adset} belongs to ad account {account}, not {target.account_id}",
                code="ACCOUNT_MISMATCH",
                call=exchange.record,
            )
        try:
            # Meta sends numbers as strings; no daily_budget means a lifetime or campaign budget.
            amount = int(body.get("daily_budget") or 0)
        except (TypeError, ValueError):
            raise PermanentError(
                f"meta: daily_budget {body.get('daily_budget')!r} of ad set {adset} is not an integer",
                code="BAD_RESPONSE",
                call=exchange.record,
            ) from None
        # ARCHIVED and DELETED ad sets spend nothing either.
        status = ENABLED if body.get("status") == "ACTIVE" else PAUSED
        return BudgetReading(amount=amount, status=status)

    def update_budget(
        self, target: BudgetTarget, amount: int, *, validate_only: bool, idempotency_key: str
    ) -> CallRecord:
        adset = self._adset(target)
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise PermanentError(
                f"meta: the amount is an integer of minor units, not {amount!r}",
                code="INVALID_AMOUNT",
            )
        return self._write(adset, {"daily_budget": str(amount)}, validate_only, idempotency_key)

    def set_status(
        self, target: BudgetTarget, status: str, *, validate_only: bool, idempotency_key: str
    ) -> CallRecord:
        adset = self._adset(target)
        if status not in (ENABLED, PAUSED):
            raise PermanentError(
                f"meta: status is ENABLED or PAUSED, not {status!r}", code="INVALID_STATUS"
            )
        meta_status = "ACTIVE" if status == ENABLED else "PAUSED"
        return self._write(adset, {"status": meta_status}, validate_only, idempotency_key)

    # --- the calls -----------------------------------------------------------------------------

    def _write(
        self, adset: str, form: dict[str, str], validate_only: bool, idempotency_key: str
    ) -> CallRecord:
        if validate_only:
            form["execution_options"] = json.dumps(["validate_only"])
        exchange = self._send(
            "POST", adset, form=form, is_write=True, idempotency_key=idempotency_key
        )
        if exchange.body.get("success") is not True:
            raise PermanentError(
                f"meta POST {adset}: the answer did not say success: {exchange.body}",
                code="NOT_SUCCESS",
                call=exchange.record,
            )
        return exchange.record

    def _send(
        self,
        method: str,
        node: str,
        *,
        is_write: bool,
        params: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Exchange:
        headers = {"Authorization": f"Bearer {self._access_token}"}
        path = f"/{self.api_version}/{node}"
        exchange = self._http.send(
            method,
            path,
            headers=headers,
            recorded_headers={},
            is_write=is_write,
            params=params,
            form=form,
            idempotency_key=idempotency_key,
        )
        if exchange.status >= 300:
            raise self._error(exchange, method=method, path=path, is_write=is_write)
        return exchange

    def _error(
        self, exchange: Exchange, *, method: str, path: str, is_write: bool
    ) -> AdPlatformError:
        status, error = exchange.status, exchange.error
        try:
            code = int(error.get("code"))
        except (TypeError, ValueError):
            code = None
        subcode = error.get("error_subcode")
        label = f"{code}.{subcode}" if code is not None and subcode else str(code or "")
        message = self._http.scrub(
            f"meta {method} {path}: HTTP {status}"
            f"{' code ' + label if label else ''}: {error.get('message') or exchange.body}"
        )
        return error_for(
            exchange,
            message,
            is_write=is_write,
            throttled=code in THROTTLE_CODES,
            timed_out=False,
            transient=code in TRANSIENT_CODES or error.get("is_transient") is True,
            code=label or f"HTTP_{status}",
            retry_after_s=lambda: _retry_after(exchange),
        )

    def _adset(self, target: BudgetTarget) -> str:
        if target.platform != META:
            raise PermanentError(
                f"MetaClient cannot act on a {target.platform} target ({target.key})",
                code="WRONG_PLATFORM",
            )
        if not target.target_id.isdigit():
            raise PermanentError(
                f"meta: an ad set id is digits, not {target.target_id!r}", code="INVALID_TARGET"
            )
        return target.target_id


def _retry_after(exchange: Exchange) -> float | None:
    """Seconds until access returns, from X-Business-Use-Case-Usage
    (estimated_time_to_regain_access, in minutes) or X-Ad-Account-Usage (reset_time_duration,
    in seconds); None when neither gives a positive hint."""
    hints: list[float] = []
    usage = _json_header(exchange, "x-business-use-case-usage")
    if isinstance(usage, dict):
        for entries in usage.values():
            for entry in entries if isinstance(entries, list) else []:
                try:
                    minutes = float(entry.get("estimated_time_to_regain_access") or 0)
                except (AttributeError, TypeError, ValueError):
                    continue
                if minutes > 0:
                    hints.append(minutes * 60.0)
    account_usage = _json_header(exchange, "x-ad-account-usage")
    if isinstance(account_usage, dict):
        try:
            seconds = float(account_usage.get("reset_time_duration") or 0)
        except (TypeError, ValueError):
            seconds = 0.0
        if seconds > 0:
            hints.append(seconds)
    return min(max(hints), MAX_RETRY_AFTER_S) if hints else None


def _json_header(exchange: Exchange, name: str) -> Any:
    raw = exchange.headers.get(name)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
