"""A local server that speaks the subset of the Google Ads REST and Meta Marketing APIs adloop
uses, with state in SQLite, a mutation log, idempotency keys and seeded fault injection."""

from connectors.ad_platforms.sandbox.faults import FaultConfig
from connectors.ad_platforms.sandbox.process import (
    SandboxAdmin,
    SandboxError,
    SandboxServer,
    seed_entry,
)
from connectors.ad_platforms.sandbox.server import (
    ADMIN_TOKEN_HEADER,
    EXIT_INJECTED_CRASH,
    IDEMPOTENCY_HEADER,
    REPLAYED_HEADER,
    SandboxApp,
)

__all__ = [
    "ADMIN_TOKEN_HEADER",
    "EXIT_INJECTED_CRASH",
    "IDEMPOTENCY_HEADER",
    "REPLAYED_HEADER",
    "FaultConfig",
    "SandboxAdmin",
    "SandboxApp",
    "SandboxError",
    "SandboxServer",
    "seed_entry",
]
