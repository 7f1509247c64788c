"""dbt-duckdb plugin: hands the PII hashing key to each dbt connection as HMAC pads.

The key comes from $ADLOOP_PII_HASH_KEY and is set as DuckDB session variables, so the
`pii_hash` macro computes HMAC-SHA256 natively without the key ever appearing in compiled
SQL, dbt's logs or the manifest (dbt refuses DBT_ENV_SECRET_* variables in models).
"""

from __future__ import annotations

import os

from dbt.adapters.duckdb.plugins import BasePlugin

PII_KEY_ENV = "ADLOOP_PII_HASH_KEY"
_BLOCK = 64  # SHA-256 block size in bytes


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """(inner, outer) pads of RFC 2104 for SHA-256."""
    import hashlib

    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def set_pads(conn) -> None:
    key = os.environ.get(PII_KEY_ENV)
    if not key:
        # Models that do not hash still build; `pii_hash` itself fails with a clear error.
        return
    inner, outer = hmac_pads(key.encode())
    conn.execute("set variable adloop_pii_ipad = ?", [inner])
    conn.execute("set variable adloop_pii_opad = ?", [outer])


class Plugin(BasePlugin):
    # DuckDB variables belong to a session and each dbt-duckdb cursor is its own session.
    def configure_connection(self, conn) -> None:
        set_pads(conn)

    def configure_cursor(self, cursor):
        set_pads(cursor)
        return cursor
