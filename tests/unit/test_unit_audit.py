"""The tamper-evident audit log: RFC 8785 canonical JSON, the hash chain, the secrets guard,
the DuckDB store and `adloop audit verify`."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import struct
import threading
from datetime import UTC, datetime, timedelta

import pytest

from connectors.warehouse import connect
from connectors.warehouse.audit_log import AuditTableMissingError, DuckDBAuditStore
from models.audit import (
    GENESIS_HASH,
    REDACTED,
    AuditLog,
    MemoryAuditStore,
    SecretInPayloadError,
    append,
    assert_no_secrets,
    canonical_json,
    format_number,
    redact,
    verify,
)
from orchestration.cli import main as cli_main

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)

# --- RFC 8785 --------------------------------------------------------------------------------

# RFC 8785 appendix B: IEEE 754 bit patterns and their canonical text
RFC_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), RFC_NUMBERS)
def test_numbers_follow_rfc8785_appendix_b(bits, text):
    assert format_number(struct.unpack(">d", bytes.fromhex(bits))[0]) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (333333333.33333329, "333333333.3333333"),
        (1e30, "1e+30"),
        (4.50, "4.5"),
        (2e-3, "0.002"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (1e-27, "1e-27"),
        (1.0, "1"),
        (-0.0, "0"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (42, "42"),
        (-7, "-7"),
        (10**21, "1e+21"),
        (0.1, "0.1"),
        (1.5e-6, "0.0000015"),
    ],
)
def test_number_cases(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), 2**53 + 1])
def test_numbers_json_cannot_hold_are_refused(bad):
    with pytest.raises(ValueError, match=r"NaN|not a JSON number|cannot be held exactly"):
        canonical_json({"x": bad})


def test_rfc8785_section_3_2_2_example():
    obj = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    want = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(obj) == want.encode("utf-8")


def test_keys_sort_by_utf16_code_units_rfc8785_section_3_2_3():
    obj = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",  # a surrogate pair: sorts before U+FB33 in UTF-16
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonical_json(obj)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_strings_escape_only_what_json_requires():
    assert (
        canonical_json("\b\f\n\r\t\x00\x1f\x7f é/<")
        == '"\\b\\f\\n\\r\\t\\u0000\\u001f\x7f é/<"'.encode()
    )
    assert (
        canonical_json({"b": [1, {"d": None, "c": True}], "a": ""})
        == b'{"a":"","b":[1,{"c":true,"d":null}]}'
    )


@pytest.mark.parametrize("bad", [{1: "x"}, {"t": datetime(2026, 1, 1)}, {"s": {1, 2}}, {"b": b"x"}])
def test_non_json_values_are_refused(bad):
    with pytest.raises(TypeError):
        canonical_json(bad)


def test_canonical_form_is_independent_of_insertion_order_and_float_spelling():
    assert canonical_json({"a": 1.0, "b": [2.50]}) == canonical_json({"b": [2.5], "a": 1})


# --- the chain -------------------------------------------------------------------------------


def make_chain(n: int = 5) -> list:
    entries, prev = [], None
    kinds = ["proposal", "verdict", "approval", "gate", "request", "response", "readback"]
    for i in range(n):
        prev = append(
            prev,
            kinds[i % len(kinds)],
            f"decision-{i // 3}",
            "alice" if i % 2 else "budget_optimizer",
            {"step": i, "amount_usd": 1250.5 + i, "channels": ["search", "social"], "note": "é"},
            T0 + timedelta(seconds=i),
        )
        entries.append(prev)
    return entries


def test_append_links_entries_and_verify_accepts_an_intact_chain():
    chain = make_chain(7)
    assert chain[0].seq == 1 and chain[0].prev_hash == GENESIS_HASH
    assert all(
        b.prev_hash == a.entry_hash and b.seq == a.seq + 1 for a, b in itertools.pairwise(chain)
    )
    assert chain[0].recorded_at == "2026-01-05T09:30:00.000000Z"
    fields = {k: v for k, v in dataclasses.asdict(chain[0]).items() if k != "entry_hash"}
    assert chain[0].entry_hash == hashlib.sha256(canonical_json(fields)).hexdigest()
    result = verify(chain)
    assert result.ok and result.checked == 7 and result.first_broken_seq is None
    assert result.head_hash == chain[-1].entry_hash
    assert verify([]).ok and verify([]).head_hash == GENESIS_HASH


def test_append_refuses_unknown_kinds_naive_times_and_empty_actors():
    with pytest.raises(ValueError, match="unknown audit kind"):
        append(None, "propsal", "d-1", "alice", {}, T0)
    with pytest.raises(ValueError, match="timezone"):
        append(None, "proposal", "d-1", "alice", {}, datetime(2026, 1, 5))
    with pytest.raises(ValueError, match="actor"):
        append(None, "proposal", "d-1", "", {}, T0)


def test_entries_are_frozen_and_payload_is_a_copy():
    payload = {"x": [1]}
    entry = append(None, "proposal", "d-1", "alice", payload, T0)
    payload["x"].append(2)
    assert entry.payload == {"x": [1]} and verify([entry]).ok
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.kind = "approval"  # type: ignore[misc]


TAMPERS = {
    "payload": lambda e: {"payload": {**e.payload, "amount_usd": 1e9}},
    "kind": lambda e: {"kind": "approval" if e.kind != "approval" else "verdict"},
    "actor": lambda e: {"actor": "mallory"},
    "subject_id": lambda e: {"subject_id": "decision-99"},
    "recorded_at": lambda e: {"recorded_at": "2020-01-01T00:00:00.000000Z"},
    "prev_hash": lambda e: {"prev_hash": "f" * 64},
    "entry_hash": lambda e: {"entry_hash": "0" * 63 + "1"},
}


@pytest.mark.parametrize("field", list(TAMPERS))
@pytest.mark.parametrize("index", range(5))
def test_tampering_any_field_of_any_row_is_named(field, index):
    chain = make_chain(5)
    chain[index] = dataclasses.replace(chain[index], **TAMPERS[field](chain[index]))
    result = verify(chain)
    assert not result.ok
    assert result.first_broken_seq == index + 1
    assert result.checked == index
    assert result.reason


def test_a_recomputed_hash_moves_the_break_to_the_next_row():
    chain = make_chain(5)
    forged = dataclasses.replace(chain[2], payload={"amount_usd": 1e9}, entry_hash="")
    chain[2] = dataclasses.replace(forged, entry_hash=forged.compute_hash())
    result = verify(chain)
    assert result.first_broken_seq == 4 and "seq 3" in result.reason


def test_a_rewritten_tail_is_caught_only_against_a_published_head():
    chain = make_chain(5)
    head = verify(chain).head_hash
    truncated = chain[:4]
    assert verify(truncated).ok  # the chain alone cannot tell
    result = verify(truncated, expected_head=head)
    assert not result.ok and result.first_broken_seq == 5 and "head" in result.reason


@pytest.mark.parametrize("index", range(5))
def test_deleting_a_row_is_named(index):
    chain = make_chain(5)
    del chain[index]
    result = verify(chain, expected_head=make_chain(5)[-1].entry_hash)
    assert not result.ok
    assert result.first_broken_seq == (index + 2 if index < 4 else 5)


def test_deleting_a_row_reports_the_gap():
    chain = make_chain(5)
    del chain[1]
    result = verify(chain)
    assert result.first_broken_seq == 3 and "expected seq 2" in result.reason


def test_swapping_two_rows_is_named():
    chain = make_chain(5)
    chain[1], chain[3] = chain[3], chain[1]
    result = verify(chain)
    assert result.first_broken_seq == 4 and "expected seq 2, found 4" in result.reason
    # renumbering the swapped rows to hide it breaks their hashes instead
    chain = make_chain(5)
    a, b = chain[1], chain[3]
    chain[1], chain[3] = dataclasses.replace(b, seq=2), dataclasses.replace(a, seq=4)
    result = verify(chain)
    assert result.first_broken_seq == 2 and not result.ok


# --- secrets ---------------------------------------------------------------------------------


def _string_leaves(obj) -> list[str]:
    if isinstance(obj, dict):
        return [leaf for v in obj.values() for leaf in _string_leaves(v)]
    if isinstance(obj, list):
        return [leaf for v in obj for leaf in _string_leaves(v)]
    return [obj] if isinstance(obj, str) else []


@pytest.mark.parametrize(
    "payload",
    [
        {"api_key": "abc"},
        {"headers": {"Authorization": "xyz"}},
        {"headers": {"x-api-key": "abc"}},
        {"accessToken": "abc"},
        {"developer_token": "abc"},
        {"token": "abc"},
        {"client_secret": "abc"},
        {"password": "hunter2"},
        {"private_key": "abc"},
        {"hmac_key": "abc"},
        {"nested": [{"refresh_token": "abc"}]},
        {"note": "called with Bearer abcdefghijklmnop"},
        {"note": "key sk-proj-abcdefghijklmnopqrstuvwx"},
        {"pem": "-----BEGIN RSA PRIVATE KEY-----\nMII"},
        {"id": "AKIAABCDEFGHIJKLMNOP"},
        {"google": "ya29.a0AfH6SMBabcdefghijklmnopqrstuv"},
        {"jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig"},
    ],
)
def test_secrets_are_refused_and_never_echoed(payload):
    with pytest.raises(SecretInPayloadError) as info:
        append(None, "request", "a-1", "actuator", payload, T0)
    assert not any(leaf in str(info.value) for leaf in _string_leaves(payload))


@pytest.mark.parametrize(
    "payload",
    [
        {"idempotency_key": "act-1", "tokens_in": 120, "tokens_out": 30, "token_count": 150},
        {"prompt_tokens": 10, "key": "campaign_id", "keywords": ["running shoes"]},
        {"authorization": REDACTED, "api_key": None},
        {"note": "the bearer of this proposal is the optimizer"},
    ],
)
def test_ordinary_payloads_pass_the_guard(payload):
    assert_no_secrets(payload)


def test_redact_masks_secrets_so_a_request_can_be_logged():
    request = {
        "url": "https://ads.example/v1/campaigns",
        "headers": {
            "Authorization": "Bearer abcdefghijklmnop",
            "developer-token": "dt",
            "x-trace": "t1",
        },
        "body": {"budget": 100, "note": "sk-abcdefghijklmnopqrstuv"},
        "custom_field": "s3cr3t",
    }
    clean = redact(request, secret_keys=["custom_field"])
    assert clean["headers"] == {
        "Authorization": REDACTED,
        "developer-token": REDACTED,
        "x-trace": "t1",
    }
    assert clean["body"] == {"budget": 100, "note": REDACTED} and clean["custom_field"] == REDACTED
    assert request["headers"]["Authorization"].startswith("Bearer")  # the input is untouched
    entry = append(None, "request", "act-1", "actuator", clean, T0)
    assert b"abcdefghijklmnop" not in canonical_json(entry.to_row())


# --- the log over a store --------------------------------------------------------------------


def ticking_clock():
    times = iter(T0 + timedelta(milliseconds=i) for i in range(10_000))
    return lambda: next(times)


def test_memory_log_round_trip_and_threads_never_fork_the_chain():
    log = AuditLog(MemoryAuditStore(), clock=lambda: T0)
    threads = [
        threading.Thread(target=lambda i=i: log.append("gate", f"d-{i}", "gatekeeper", {"i": i}))
        for i in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.seq for e in log.entries()] == list(range(1, 17))
    assert log.verify().ok and [e.seq for e in log.tail(3)] == [14, 15, 16]


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    log = AuditLog(DuckDBAuditStore(path), clock=ticking_clock())
    steps = [
        (
            "proposal",
            {"channel": "search", "from_usd": 1000.0, "to_usd": 1150.0, "expected": [0.1, 0.25]},
        ),
        ("verdict", {"verdict": "needs_approval", "reasons": ["step above 10%"], "policy": "v3"}),
        ("approval", {"approver": "bob", "decision_hash": "ab" * 32}),
        ("gate", {"gate": "kill_switch", "passed": True}),
        (
            "request",
            {"method": "POST", "validate_only": False, "headers": {"Authorization": REDACTED}},
        ),
        ("response", {"status": 200, "resource": "customers/1/campaignBudgets/2", "€": "ü"}),
        ("readback", {"amount_micros": 1150000000, "matches": True}),
    ]
    written = [log.append(kind, "decision-1", "adloop", payload) for kind, payload in steps]
    return path, log, written


def test_duckdb_log_round_trip(warehouse):
    path, log, written = warehouse
    assert log.entries() == written  # byte-for-byte what was hashed comes back
    result = log.verify()
    assert result.ok and result.checked == 7 and result.head_hash == written[-1].entry_hash
    assert [e.seq for e in log.tail(2)] == [6, 7]
    assert [e.seq for e in log.entries(since_seq=5)] == [6, 7]
    assert not hasattr(log.store, "update") and not hasattr(log.store, "delete")
    with connect(path, read_only=True) as conn:  # the payload column is queryable JSON
        assert (
            conn.execute(
                "select payload->>'verdict' from audit.log where kind = 'verdict'"
            ).fetchone()[0]
            == "needs_approval"
        )


def test_duckdb_appends_from_threads_are_serialised(tmp_path):
    log = AuditLog(DuckDBAuditStore(tmp_path / "w.duckdb"))
    threads = [
        threading.Thread(target=lambda i=i: log.append("note", f"n-{i}", "t", {"i": i}))
        for i in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = log.entries()
    assert [e.seq for e in entries] == list(range(1, 7)) and log.verify().ok
    assert sorted(e.payload["i"] for e in entries) == list(range(6))


def test_duckdb_refuses_secrets_without_writing(warehouse):
    _path, log, _ = warehouse
    with pytest.raises(SecretInPayloadError):
        log.append("request", "decision-1", "adloop", {"api_key": "live-key"})
    assert len(log.entries()) == 7 and log.verify().ok


@pytest.mark.parametrize(
    ("sql", "seq", "reason"),
    [
        ("update audit.log set payload = '{\"status\":500}' where seq = 6", 6, "row altered"),
        ("update audit.log set actor = 'mallory' where seq = 3", 3, "row altered"),
        (
            "update audit.log set recorded_at = '2020-01-01T00:00:00.000000Z' where seq = 1",
            1,
            "altered",
        ),
        ("delete from audit.log where seq = 4", 5, "expected seq 4"),
        ("update audit.log set prev_hash = repeat('0', 64) where seq = 2", 2, "prev_hash"),
    ],
)
def test_raw_sql_tampering_is_caught_by_verify_and_the_cli(warehouse, capsys, sql, seq, reason):
    path, log, _ = warehouse
    with connect(path) as conn:
        conn.execute(sql)
    result = log.verify()
    assert not result.ok and result.first_broken_seq == seq and reason in result.reason
    capsys.readouterr()
    assert cli_main(["audit", "verify", "--warehouse", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"audit chain BROKEN at seq {seq}:" in out and reason in out


def test_cli_verify_and_tail_on_an_intact_chain(warehouse, capsys, monkeypatch):
    path, _, written = warehouse
    monkeypatch.setenv("ADLOOP_WAREHOUSE_PATH", str(path))
    capsys.readouterr()
    assert cli_main(["audit", "verify"]) == 0
    assert (
        f"audit chain intact: 7 entries (head {written[-1].entry_hash})" in capsys.readouterr().out
    )
    assert cli_main(["audit", "verify", "--expect-head", "f" * 64]) == 1
    assert "BROKEN at seq 8" in capsys.readouterr().out
    assert cli_main(["audit", "tail", "-n", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "response" in lines[0] and "readback" in lines[1]


def test_cli_says_when_there_is_no_audit_table(tmp_path, capsys):
    missing = tmp_path / "empty.duckdb"
    assert cli_main(["audit", "verify", "--warehouse", str(missing)]) == 2
    assert "nothing has been audited" in capsys.readouterr().err
    with pytest.raises(AuditTableMissingError):
        DuckDBAuditStore(missing).rows()
