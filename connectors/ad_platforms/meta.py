"""A Meta Marketing API client for one ad set: read its daily budget and status, set the
budget, pause or resume it. The token goes in the Authorization header, never in the URL."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from connectors.ad_platforms._http import Exchange, HttpSession
from connectors.ad_platforms.base import (
    ENABLED,
    META,
    PAUSED,
    AdPlatformError,
    BudgetReading,
    BudgetTarget,
    CallRecord,
    OutcomeUnknown,
    PermanentError,
    Throttled,
    TransientError,
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


class MetaClient:
    """`AdPlatform` for Meta. A target is an ad set: `account_id` the ad account id (digits,
    no `act_`), `target_id` the ad set id; amounts are minor units of the account currency."""

    platform = META

    def __init__(
        self,
        base_url: str,
        *,
        access_token: str,
        api_version: str = DEFAULT_API_VERSION,
        timeout_s: float = 10.0,
    ) -> None:
        if not access_token:
            raise ValueError("MetaClient needs an access token")
        if not re.fullmatch(r"v\d+\.\d+", api_version):
            raise ValueError(f"api_version looks like v21.0, not {api_version!r}")
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version
        self.timeout_s = timeout_s
        self._access_token = access_token
        self._http = HttpSession(
            self.base_url, timeout_s=timeout_s, secrets=(access_token,), platform=META
        )

    @classmethod
    def from_env(cls, **overrides: Any) -> MetaClient:
        """From ADLOOP_META_ACCESS_TOKEN (required), ADLOOP_META_BASE_URL (default: the real
        API) and ADLOOP_META_API_VERSION (optional); keyword arguments win."""
        if not os.environ.get(ENV_ACCESS_TOKEN) and "access_token" not in overrides:
            raise ValueError(f"set {ENV_ACCESS_TOKEN} to build a Meta client")
        kwargs: dict[str, Any] = {
            "access_token": os.environ.get(ENV_ACCESS_TOKEN, ""),
            "api_version": os.environ.get(ENV_API_VERSION) or DEFAULT_API_VERSION,
        }
        kwargs.update(overrides)
        base_url = kwargs.pop("base_url", None) or os.environ.get(ENV_BASE_URL) or META_BASE_URL
        return cls(base_url, **kwargs)

    def __repr__(self) -> str:
        return f"MetaClient(base_url={self.base_url!r}, api_version={self.api_version!r})"

    def __enter__(self) -> MetaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

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
        recorded: dict[str, str] = {}
        if idempotency_key:
            # The real API ignores this header; the sandbox honours it.
            headers["Idempotency-Key"] = recorded["Idempotency-Key"] = idempotency_key
        path = f"/{self.api_version}/{node}"
        exchange = self._http.send(
            method,
            path,
            headers=headers,
            recorded_headers=recorded,
            is_write=is_write,
            params=params,
            form=form,
        )
        if exchange.status >= 300:
            raise self._error(exchange, method=method, path=path, is_write=is_write)
        return exchange

    def _error(
        self, exchange: Exchange, *, method: str, path: str, is_write: bool
    ) -> AdPlatformError:
        status, call = exchange.status, exchange.record
        error = exchange.body.get("error") if isinstance(exchange.body.get("error"), dict) else {}
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
        if code in THROTTLE_CODES:
            return Throttled(message, retry_after_s=_retry_after(exchange), call=call)
        if status == 504:
            if is_write:
                return OutcomeUnknown(message + "; read back before retrying", call=call)
            return TransientError(message, call=call)
        if status >= 500 or code in TRANSIENT_CODES or error.get("is_transient") is True:
            return TransientError(message, call=call)
        return PermanentError(message, code=label or f"HTTP_{status}", call=call)

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
