"""Retries for ad-platform calls: throttling and transient failures are retried with capped
exponential backoff and seeded jitter; an unknown outcome or a refusal never is."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from connectors.ad_platforms.base import AdPlatformError, Throttled, TransientError


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` counts every call, the first included. The wait before retry n (n >= 1)
    is min(cap_s, base_s * 2**(n-1)), spread by +/- `jitter` (a fraction) from an RNG seeded
    with `seed`, and never shorter than a throttle's `retry_after_s`. A throttle whose hint is
    longer than `max_wait_s` is raised at once: waiting out an hour-long ban inside a run is
    the caller's decision, not the retry loop's."""

    max_attempts: int = 6
    base_s: float = 0.5
    cap_s: float = 30.0
    jitter: float = 0.1
    seed: int = 0
    max_wait_s: float = 900.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_s < 0 or self.cap_s < 0 or self.max_wait_s < 0:
            raise ValueError("base_s, cap_s and max_wait_s must be >= 0")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("jitter is a fraction in [0, 1)")

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        """The jittered backoff before retry number `retry` (1 for the first retry)."""
        base = min(self.cap_s, self.base_s * 2 ** (retry - 1))
        return max(0.0, base * (1.0 + self.jitter * rng.uniform(-1.0, 1.0)))


def call_with_retries[T](
    fn: Callable[[], T],
    policy: RetryPolicy | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, AdPlatformError, float], None] | None = None,
) -> T:
    """`fn()`, retried on `Throttled` and `TransientError` as `policy` says.

    `OutcomeUnknown` and `PermanentError` (and anything that is not an `AdPlatformError`) are
    re-raised at once: a write whose outcome is unknown must be read back before anything
    else, and a refusal will not change by asking again. When attempts run out, the last
    error is raised. `on_retry(retry_number, error, wait_s)` is called before each wait;
    tests pass `sleep` so that nothing really sleeps."""
    policy = policy or RetryPolicy()
    rng = random.Random(policy.seed)
    attempt = 1
    while True:
        try:
            return fn()
        except (Throttled, TransientError) as error:
            if attempt >= policy.max_attempts:
                raise
            wait_s = policy.backoff_s(attempt, rng)
            if isinstance(error, Throttled) and error.retry_after_s is not None:
                if error.retry_after_s > policy.max_wait_s:
                    raise
                wait_s = max(wait_s, error.retry_after_s)
            if on_retry is not None:
                on_retry(attempt, error, wait_s)
            sleep(wait_s)
            attempt += 1
