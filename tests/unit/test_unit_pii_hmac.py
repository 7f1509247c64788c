"""HMAC-SHA256 in DuckDB from the pads the dbt plugin sets, against Python's hmac."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import duckdb
import pytest

from connectors.warehouse.dbt_pii_plugin import PII_KEY_ENV, Plugin, hmac_pads

HMAC_SQL = (
    "sha256(getvariable('adloop_pii_opad') || "
    "unhex(sha256(getvariable('adloop_pii_ipad') || encode(?))))"
)

KEYS = [
    pytest.param(b"k", id="1-byte"),
    pytest.param(b"a-long-random-secret-0123456789", id="short"),
    pytest.param(bytes(range(64)), id="exactly-64"),
    pytest.param(b"x" * 65, id="65-bytes-hashed"),
    pytest.param(bytes(range(256)) * 2, id="512-bytes-hashed"),
]
MESSAGES = ["runner1@example.com", "203.0.1.1", "", "ÜNÏcödé@exämple.com", "a" * 200]


REPO = Path(__file__).resolve().parents[2]


def _set_pads(conn: duckdb.DuckDBPyConnection, key: bytes) -> None:
    inner, outer = hmac_pads(key)
    conn.execute("set variable adloop_pii_ipad = ?", [inner])
    conn.execute("set variable adloop_pii_opad = ?", [outer])


def test_pads_follow_rfc_2104():
    inner, outer = hmac_pads(b"key")
    assert len(inner) == len(outer) == 64
    assert inner[:3] == bytes(b ^ 0x36 for b in b"key")
    assert outer[:3] == bytes(b ^ 0x5C for b in b"key")
    assert inner[3:] == b"\x36" * 61
    assert outer[3:] == b"\x5c" * 61


def test_long_key_is_hashed_first():
    key = b"y" * 100
    inner, _ = hmac_pads(key)
    digest = hashlib.sha256(key).digest()
    assert inner[:32] == bytes(b ^ 0x36 for b in digest)
    assert inner[32:] == b"\x36" * 32


@pytest.mark.parametrize("key", KEYS)
def test_duckdb_hmac_equals_python_hmac(key):
    conn = duckdb.connect()
    _set_pads(conn, key)
    for msg in MESSAGES:
        got = conn.execute(f"select {HMAC_SQL}", [msg]).fetchone()[0]
        assert got == hmac.new(key, msg.encode(), hashlib.sha256).hexdigest(), msg


def test_different_keys_give_different_hashes():
    conn = duckdb.connect()
    out = []
    for key in (b"key-one", b"key-two"):
        _set_pads(conn, key)
        out.append(conn.execute(f"select {HMAC_SQL}", ["runner1@example.com"]).fetchone()[0])
    assert out[0] != out[1]


def test_plugin_sets_pads_from_environment(monkeypatch):
    key = "plugin-secret-" + "z" * 70  # longer than a block once encoded
    monkeypatch.setenv(PII_KEY_ENV, key)
    conn = duckdb.connect()
    Plugin.configure_connection(object.__new__(Plugin), conn)
    got = conn.execute(f"select {HMAC_SQL}", ["runner7@example.com"]).fetchone()[0]
    assert got == hmac.new(key.encode(), b"runner7@example.com", hashlib.sha256).hexdigest()


def test_plugin_without_key_sets_no_pads_so_hashing_fails_loudly(monkeypatch):
    """Models that do not hash still build without the key; `pii_hash` raises instead of
    writing unkeyed hashes (its guard is `getvariable('adloop_pii_ipad') is null`)."""
    monkeypatch.delenv(PII_KEY_ENV, raising=False)
    conn = duckdb.connect()
    Plugin.configure_connection(object.__new__(Plugin), conn)
    assert conn.execute("select getvariable('adloop_pii_ipad') is null").fetchone()[0] is True
    macro = (REPO / "dbt_project" / "macros" / "pii_hash.sql").read_text()
    assert "getvariable('adloop_pii_ipad') is null" in macro and "error(" in macro
