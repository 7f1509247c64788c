"""The ad-platform edge: the `AdPlatform` interface and its errors (`base`), clients for the
Google Ads REST API and the Meta Marketing API, retries with backoff, and a local sandbox that
speaks both (`connectors.ad_platforms.sandbox`).

The clients are imported on first use: the sandbox's child process imports this package and
must start without loading an HTTP client library."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connectors.ad_platforms.base import (
    ENABLED,
    GOOGLE_ADS,
    META,
    PAUSED,
    PLATFORMS,
    AdPlatform,
    AdPlatformError,
    BudgetReading,
    BudgetTarget,
    CallRecord,
    OutcomeUnknown,
    PermanentError,
    Throttled,
    TransientError,
)
from connectors.ad_platforms.retry import RetryPolicy, call_with_retries

if TYPE_CHECKING:
    from connectors.ad_platforms.google_ads import GOOGLE_ADS_BASE_URL, GoogleAdsClient
    from connectors.ad_platforms.meta import META_BASE_URL, MetaClient

_LAZY = {
    "GoogleAdsClient": "connectors.ad_platforms.google_ads",
    "GOOGLE_ADS_BASE_URL": "connectors.ad_platforms.google_ads",
    "MetaClient": "connectors.ad_platforms.meta",
    "META_BASE_URL": "connectors.ad_platforms.meta",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "ENABLED",
    "GOOGLE_ADS",
    "GOOGLE_ADS_BASE_URL",
    "META",
    "META_BASE_URL",
    "PAUSED",
    "PLATFORMS",
    "AdPlatform",
    "AdPlatformError",
    "BudgetReading",
    "BudgetTarget",
    "CallRecord",
    "GoogleAdsClient",
    "MetaClient",
    "OutcomeUnknown",
    "PermanentError",
    "RetryPolicy",
    "Throttled",
    "TransientError",
    "call_with_retries",
]
