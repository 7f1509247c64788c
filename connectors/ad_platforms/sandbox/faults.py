"""Seeded, deterministic fault injection for the sandbox: which failure (if any) a request gets.

Every API request draws the same number of values from one seeded RNG, so with a given seed
and the same sequence of requests the same requests fail, whatever the rates are."""

from __future__ import annotations

import dataclasses
import random
import threading
from dataclasses import dataclass, fields
from typing import Any

CRASH_MODES = ("drop", "exit")
APPLY_TO = ("all", "writes", "reads")
META_THROTTLE_CODES = (17, 613, 80004)

# Fault kinds, in the order they win when more than one is drawn for the same request.
THROTTLE = "throttle"
SERVER_ERROR = "server_error"
TIMEOUT = "timeout"
CRASH_AFTER_APPLY = "crash_after_apply"
SLOW = "slow"
KINDS = (THROTTLE, SERVER_ERROR, TIMEOUT, CRASH_AFTER_APPLY, SLOW)


@dataclass(frozen=True)
class FaultConfig:
    """Rates are probabilities per request in [0, 1]; all zero means a well-behaved server."""

    seed: int = 0
    throttle: float = 0.0  # 429 RESOURCE_EXHAUSTED / Meta 17, 613, 80004; nothing applied
    throttle_retry_after_s: float = 2.0  # Google retryDelay; Meta rounds it up to minutes
    meta_throttle_code: int = 0  # 0: drawn among 17, 613, 80004
    server_error: float = 0.0  # 500/503 before anything is applied
    timeout: float = 0.0  # sleep `timeout_sleep_s` (past the client's timeout) before answering
    timeout_applies: float = 0.0  # of the timed-out writes, the fraction applied anyway
    timeout_sleep_s: float = 15.0
    slow: float = 0.0  # answer normally after `slow_s`
    slow_s: float = 0.2
    crash_after_apply: float = 0.0  # commit the write, then die before answering
    crash_mode: str = "drop"  # drop: close the socket; exit: the whole process exits
    apply_to: str = "all"  # which requests faults hit: all | writes | reads
    max_faults: int | None = None  # stop injecting after this many faults (None: no limit)
    honour_idempotency_key: bool = True  # replay the stored answer to a repeated key

    def __post_init__(self) -> None:
        for name in ("throttle", "server_error", "timeout", "timeout_applies", "slow"):
            _check_rate(name, getattr(self, name))
        _check_rate("crash_after_apply", self.crash_after_apply)
        if self.crash_mode not in CRASH_MODES:
            raise ValueError(f"crash_mode must be one of {CRASH_MODES}, not {self.crash_mode!r}")
        if self.apply_to not in APPLY_TO:
            raise ValueError(f"apply_to must be one of {APPLY_TO}, not {self.apply_to!r}")
        if self.meta_throttle_code not in (0, *META_THROTTLE_CODES):
            raise ValueError(
                f"meta_throttle_code must be 0 or one of {META_THROTTLE_CODES}, "
                f"not {self.meta_throttle_code!r}"
            )
        for name in ("throttle_retry_after_s", "timeout_sleep_s", "slow_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.max_faults is not None and self.max_faults < 0:
            raise ValueError("max_faults must be >= 0 or None")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> FaultConfig:
        data = dict(data or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown fault settings {unknown}; known: {sorted(known)}")
        coerced: dict[str, Any] = {}
        for name, value in data.items():
            kind = known[name].type
            try:
                if value is None and "None" in str(kind):
                    coerced[name] = None
                elif "bool" in str(kind):
                    coerced[name] = _as_bool(value)
                elif "int" in str(kind):
                    coerced[name] = int(value)
                elif "float" in str(kind):
                    coerced[name] = float(value)
                else:
                    coerced[name] = str(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"fault setting {name}={value!r}: {exc}") from None
        return cls(**coerced)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} is a rate and must be within [0, 1], not {value!r}")


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass(frozen=True)
class Draw:
    """The fault chosen for one request (`kind` None: none), and the values it needs."""

    kind: str | None
    applies: bool = False  # timeout: apply the write anyway
    meta_throttle_code: int = 17


class FaultInjector:
    """Holds the current FaultConfig and its RNG; thread-safe."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        """Replace the configuration and restart the RNG from its seed."""
        with self._lock:
            self._config = config
            self._rng = random.Random(config.seed)
            self._injected = dict.fromkeys(KINDS, 0)
            self._requests = 0

    @property
    def config(self) -> FaultConfig:
        return self._config

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "config": self._config.to_dict(),
                "requests": self._requests,
                "injected": dict(self._injected),
            }

    def draw(self, *, is_write: bool) -> Draw:
        with self._lock:
            config = self._config
            self._requests += 1
            # Always the same number of draws per request, so one request's kind does not
            # shift the faults of the requests after it.
            values = [self._rng.random() for _ in range(len(KINDS) + 2)]
            if config.apply_to == "writes" and not is_write:
                return Draw(None)
            if config.apply_to == "reads" and is_write:
                return Draw(None)
            if config.max_faults is not None and sum(self._injected.values()) >= config.max_faults:
                return Draw(None)
            rates = {
                THROTTLE: config.throttle,
                SERVER_ERROR: config.server_error,
                TIMEOUT: config.timeout,
                CRASH_AFTER_APPLY: config.crash_after_apply if is_write else 0.0,
                SLOW: config.slow,
            }
            for value, kind in zip(values, KINDS, strict=False):
                if value < rates[kind]:
                    self._injected[kind] += 1
                    code = (
                        config.meta_throttle_code
                        or META_THROTTLE_CODES[int(values[-1] * len(META_THROTTLE_CODES))]
                    )
                    return Draw(
                        kind, applies=values[-2] < config.timeout_applies, meta_throttle_code=code
                    )
            return Draw(None)

    def refund(self, kind: str) -> None:
        """Un-count a fault that turned out not to happen (a crash drawn for a write that
        applied nothing)."""
        with self._lock:
            self._injected[kind] = max(0, self._injected[kind] - 1)
