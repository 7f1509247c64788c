"""The interface every ad-platform connector implements, and the errors it raises.

Amounts are integers in the platform's own unit, never floats: Google Ads budgets are micros
of the account currency (`amountMicros`, multiples of 10,000 for USD), Meta budgets are minor
units of the ad account's currency (`daily_budget`, cents). Converting the decision's USD into
that unit is the actuator's job (`BudgetTarget.currency` says which currency).

Errors are split by what the caller may do next:
- `Throttled`: nothing happened; retry after `retry_after_s` (the server's hint, when it gave one).
- `TransientError`: nothing happened (a 5xx before any effect, a refused connection); retry with backoff.
- `OutcomeUnknown`: a write was sent and no answer came back (timeout, dropped connection,
  server crash). It may or may not have been applied; read back before doing anything else.
- `PermanentError`: the platform refused the request (validation, auth, not found); do not retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

GOOGLE_ADS = "google_ads"
META = "meta"
PLATFORMS: tuple[str, ...] = (GOOGLE_ADS, META)

# Target statuses, normalised across platforms (Google Ads ENABLED/PAUSED, Meta ACTIVE/PAUSED).
ENABLED = "ENABLED"
PAUSED = "PAUSED"


@dataclass(frozen=True)
class BudgetTarget:
    """One budget the loop may change: a Google Ads campaign budget or a Meta ad set."""

    platform: str  # google_ads | meta
    account_id: str  # Google Ads customer id (digits only) | Meta ad account id (digits, no act_)
    target_id: str  # campaign budget id | ad set id
    channel: str  # search, display, video, social
    geo: str  # the geo the budget serves, e.g. US-CA
    currency: str  # the account currency: USD, EUR, ...
    name: str = ""

    def __post_init__(self) -> None:
        if self.platform not in PLATFORMS:
            raise ValueError(f"unknown platform {self.platform!r}; known: {PLATFORMS}")
        for name in ("account_id", "target_id", "channel", "geo", "currency"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"BudgetTarget.{name} must not be empty")

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.account_id}:{self.target_id}"


@dataclass(frozen=True)
class BudgetReading:
    """A budget as the platform holds it right now."""

    amount: int  # micros (Google Ads) or minor units (Meta)
    status: str  # ENABLED | PAUSED


@dataclass(frozen=True)
class CallRecord:
    """One HTTP exchange, for the audit log: never carries a credential."""

    method: str
    url: str  # without query-string credentials
    request: dict
    status: int | None  # None when no answer came back
    response: dict | None
    latency_s: float


class AdPlatformError(Exception):
    """Base of every connector error; `call` is the exchange that failed, when there was one."""

    def __init__(self, message: str, *, call: CallRecord | None = None) -> None:
        super().__init__(message)
        self.call = call


class Throttled(AdPlatformError):
    def __init__(
        self, message: str, *, retry_after_s: float | None = None, call: CallRecord | None = None
    ) -> None:
        super().__init__(message, call=call)
        self.retry_after_s = retry_after_s


class TransientError(AdPlatformError):
    pass


class OutcomeUnknown(AdPlatformError):
    pass


class PermanentError(AdPlatformError):
    def __init__(self, message: str, *, code: str = "", call: CallRecord | None = None) -> None:
        super().__init__(message, call=call)
        self.code = code


@runtime_checkable
class AdPlatform(Protocol):
    """A connector to one platform. Every method raises only `AdPlatformError` subclasses."""

    platform: str

    def read_budget(self, target: BudgetTarget) -> BudgetReading: ...

    def update_budget(
        self, target: BudgetTarget, amount: int, *, validate_only: bool, idempotency_key: str
    ) -> CallRecord:
        """Set the daily budget to `amount`. `validate_only` asks the platform to check the
        request without applying it. `idempotency_key` goes out as the `Idempotency-Key`
        header: the sandbox honours it; the real APIs ignore it, which is why the actuator
        reads back before retrying a write whose outcome is unknown."""
        ...

    def set_status(
        self, target: BudgetTarget, status: str, *, validate_only: bool, idempotency_key: str
    ) -> CallRecord:
        """Pause (PAUSED) or resume (ENABLED) what the budget funds."""
        ...
