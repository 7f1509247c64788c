"""The tamper-evident audit log: RFC 8785 canonical JSON and a SHA-256 hash chain."""

from models.audit.canonical import canonical_json, format_number
from models.audit.chain import (
    GENESIS_HASH,
    KINDS,
    REDACTED,
    AuditEntry,
    AuditLog,
    AuditStore,
    MemoryAuditStore,
    SecretInPayloadError,
    VerifyResult,
    append,
    assert_no_secrets,
    redact,
    verify,
)

__all__ = [
    "GENESIS_HASH",
    "KINDS",
    "REDACTED",
    "AuditEntry",
    "AuditLog",
    "AuditStore",
    "MemoryAuditStore",
    "SecretInPayloadError",
    "VerifyResult",
    "append",
    "assert_no_secrets",
    "canonical_json",
    "format_number",
    "redact",
    "verify",
]
