"""One contract for every vector store: DuckDB always, Weaviate when WEAVIATE_URL is set; plus
a labelled retrieval set embedded with the real local model, and Weaviate's offline parts."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from connectors.embeddings import LocalMiniLMEmbedder
from connectors.vector_store import (
    DuckDBVectorStore,
    Hit,
    VectorRecord,
    VectorStore,
    VectorStoreError,
)
from connectors.warehouse import connect

STORES = [
    "duckdb",
    pytest.param(
        "weaviate",
        marks=pytest.mark.skipif(
            not os.environ.get("WEAVIATE_URL"),
            reason="set WEAVIATE_URL (and WEAVIATE_API_KEY if it needs one) to run the contract "
            "against a Weaviate server",
        ),
    ),
]


@pytest.fixture(params=STORES)
def store(request, tmp_path) -> Iterator[VectorStore]:
    if request.param == "duckdb":
        yield DuckDBVectorStore(tmp_path / "warehouse.duckdb")
        return
    from connectors.vector_store.weaviate_store import WeaviateVectorStore

    with WeaviateVectorStore.from_env() as weaviate_store:
        yield weaviate_store


@pytest.fixture
def collection(store) -> Iterator[str]:
    # Unique per test: a Weaviate server outlives the test run and may be shared.
    name = f"contract_{uuid.uuid4().hex[:10]}"
    yield name
    store.delete_collection(name)


def unit(*values: float) -> list[float]:
    v = np.asarray(values, dtype=np.float64)
    return (v / np.linalg.norm(v)).tolist()


def rec(id_: str, vector: list[float], **metadata) -> VectorRecord:
    return VectorRecord(id=id_, vector=vector, text=f"text of {id_}", metadata=metadata)


def test_store_follows_the_protocol(store):
    assert isinstance(store, VectorStore)


def test_upsert_then_count(store, collection):
    assert store.count(collection) == 0
    n = store.upsert(collection, [rec("a", unit(1, 0, 0)), rec("b", unit(0, 1, 0))])
    assert n == 2
    assert store.count(collection) == 2


def test_reupsert_is_idempotent_and_replaces(store, collection):
    records = [rec("a", unit(1, 0, 0), channel="search"), rec("b", unit(0, 1, 0))]
    store.upsert(collection, records)
    store.upsert(collection, records)
    assert store.count(collection) == 2

    store.upsert(collection, [VectorRecord("a", unit(0, 0, 1), "new text", {"channel": "video"})])
    assert store.count(collection) == 2
    (top,) = store.query(collection, unit(0, 0, 1), k=1)
    assert (top.id, top.text, top.metadata["channel"]) == ("a", "new text", "video")
    assert top.score == pytest.approx(1.0, abs=1e-5)


def test_top_k_is_ordered_by_cosine(store, collection):
    store.upsert(
        collection,
        [
            rec("far", unit(-1, 0, 0)),
            rec("near", unit(1, 0.1, 0)),
            rec("mid", unit(1, 1, 0)),
            rec("orthogonal", unit(0, 0, 1)),
        ],
    )
    # Unnormalised on purpose: cosine must not care about length.
    hits = store.query(collection, [3.0, 0.0, 0.0], k=3)
    assert all(isinstance(h, Hit) for h in hits)
    assert [h.id for h in hits] == ["near", "mid", "orthogonal"]
    assert [h.score for h in hits] == pytest.approx([0.99504, 0.70711, 0.0], abs=1e-4)
    assert hits[0].text == "text of near"

    everything = store.query(collection, unit(1, 0, 0), k=50)
    assert [h.id for h in everything] == ["near", "mid", "orthogonal", "far"]
    assert everything[-1].score == pytest.approx(-1.0, abs=1e-5)


def test_equal_scores_are_ordered_by_id(store, collection):
    same = unit(0.3, 0.4, 0.5)
    store.upsert(collection, [rec(i, same) for i in ["d", "b", "c", "a"]])
    assert [h.id for h in store.query(collection, same, k=3)] == ["a", "b", "c"]


def test_metadata_filters_are_typed_equalities(store, collection):
    store.upsert(
        collection,
        [
            rec("search_1", unit(1, 0, 0), channel="search", week=2, live=True),
            rec("search_2", unit(1, 1, 0), channel="search", week=3, live=False),
            rec("social_1", unit(0, 1, 0), channel="social", week=2, live=True),
            rec("untagged", unit(0, 0, 1)),
        ],
    )

    def ids(**where) -> list[str]:
        return sorted(h.id for h in store.query(collection, unit(1, 1, 1), k=10, where=where))

    assert ids(channel="search") == ["search_1", "search_2"]
    assert ids(channel="search", live=True) == ["search_1"]
    assert ids(week=2) == ["search_1", "social_1"]
    assert ids(week=2.0) == ["search_1", "social_1"]  # numbers compare as numbers
    assert ids(live=False) == ["search_2"]
    assert ids(channel="video") == []
    assert ids(week="2") == []  # a string never equals a number
    assert ids(campaign="unknown_key") == []
    assert ids(channel=None) == ["untagged"]  # None matches a missing key
    hit = store.query(collection, unit(1, 0, 0), k=1, where={"channel": "search"})[0]
    assert hit.metadata["channel"] == "search"
    assert hit.metadata["week"] == 2
    assert hit.metadata["live"] is True


def test_dimension_mismatch_is_a_clear_error(store, collection):
    store.upsert(collection, [rec("a", unit(1, 0, 0))])
    with pytest.raises(VectorStoreError, match=r"4 dimensions.*3-dimensional"):
        store.upsert(collection, [rec("b", unit(1, 0, 0, 0))])
    with pytest.raises(VectorStoreError, match=r"2 dimensions.*3-dimensional"):
        store.query(collection, unit(1, 0), k=1)
    assert store.count(collection) == 1


def test_delete_collection(store, collection):
    store.upsert(collection, [rec("a", unit(1, 0, 0))])
    store.delete_collection(collection)
    assert store.count(collection) == 0
    assert store.query(collection, unit(1, 0, 0), k=1) == []
    store.delete_collection(collection)  # deleting what is gone is not an error
    store.upsert(collection, [rec("a", unit(1, 0, 0, 0))])  # a new dimension is fine now
    assert store.count(collection) == 1


@pytest.mark.parametrize(
    "name", ["Brand", "1st", "brand-passages", "a" * 64, "", "dé", "brand\n", "x; drop table y"]
)
def test_bad_collection_names_are_refused(store, name):
    with pytest.raises(VectorStoreError, match="lower snake case"):
        store.upsert(name, [rec("a", unit(1, 0))])


def test_bad_records_are_refused_before_anything_is_written(store, collection):
    with pytest.raises(VectorStoreError, match="all zeros"):
        store.upsert(collection, [rec("a", unit(1, 0)), rec("b", [0.0, 0.0])])
    with pytest.raises(VectorStoreError, match="reserved"):
        store.upsert(collection, [rec("a", unit(1, 0), text="clash")])
    with pytest.raises(VectorStoreError, match="lower snake case"):
        store.upsert(collection, [rec("a", unit(1, 0), _additional="x")])
    with pytest.raises(VectorStoreError, match="values must be str, int, float, bool or None"):
        store.upsert(collection, [rec("a", unit(1, 0), tags=["a", "b"])])
    with pytest.raises(VectorStoreError, match="mix vector sizes"):
        store.upsert(collection, [rec("a", unit(1, 0)), rec("b", unit(1, 0, 0))])
    with pytest.raises(VectorStoreError, match="k must be a positive integer"):
        store.query(collection, unit(1, 0), k=0)
    assert store.count(collection) == 0


# --- DuckDB specifics ----------------------------------------------------------------------


def test_duckdb_collection_is_a_plain_table(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    store = DuckDBVectorStore(path)
    store.upsert("brand_passages", [rec("a", unit(1, 0, 0), channel="search")])
    assert store.table("brand_passages") == "features.vectors__brand_passages"
    with connect(path, read_only=True) as conn:
        columns = conn.execute(
            "select column_name, data_type from duckdb_columns() "
            "where schema_name = 'features' and table_name = 'vectors__brand_passages' "
            "order by column_index"
        ).fetchall()
        channel = conn.execute(
            "select metadata->>'channel' from features.vectors__brand_passages where id = 'a'"
        ).fetchall()
    assert columns == [
        ("id", "VARCHAR"),
        ("text", "VARCHAR"),
        ("metadata", "JSON"),
        ("vector", "FLOAT[3]"),
    ]
    assert channel == [("search",)]


# --- retrieval on a small labelled brand set ------------------------------------------------

PASSAGES = {
    "weight": "The Northwind Tempo weighs 210 g per shoe, light enough for race day yet "
    "cushioned for long runs.",
    "upper": "The Tempo's upper is a recycled mesh woven from plastic bottles; it breathes well "
    "on hot days.",
    "sizes": "The Northwind Tempo comes in EU sizes 36 to 48, including half sizes.",
    "returns": "Returns are free within 30 days of delivery: send the shoes back for a full "
    "refund.",
    "shipping": "Every order ships within 2 days from our warehouse, with tracking by email.",
    "trail_road": "The Tempo is a trail and road shoe: a grippy outsole for dirt paths that "
    "stays smooth on pavement.",
    "tone": "Tone of voice: warm, direct and a little playful; we talk like a running buddy, "
    "never like a drill sergeant.",
    "claims": "Claims we may not make: no injury prevention or medical promises, no 'fastest "
    "shoe in the world', no comparisons with named competitors.",
    "email": "Email style: subject lines under 45 characters, one call to action per email, no "
    "capital-letter shouting and at most one emoji.",
    "price": "The Northwind Tempo costs $129 and is not discounted during its first season.",
}
BRIEFS = {
    "Write an ad that stresses how lightweight the shoe is": "weight",
    "Which sizes can customers order?": "sizes",
    "Reassure buyers that they can send the shoes back": "returns",
    "How quickly will my order be delivered?": "shipping",
    "Can I run on both trails and city streets in it?": "trail_road",
    "May the copy say the shoe prevents knee injuries?": "claims",
    "Draft a subject line for the launch newsletter": "email",
    "How much does the Tempo cost?": "price",
    "What voice should our ad copy be written in?": "tone",
}
# Measured with the int8 MiniLM: every brief above finds its passage in the top 3, eight of
# nine at rank 1 (the tone brief ranks the email-style passage first). One more slip at rank 1
# is tolerated; a brief falling out of the top 3 is not.
MIN_TOP1_RATE = 7 / 9
# A brief MiniLM gets wrong, kept so that a better model shows up: it does not tie
# "sustainable materials" to "recycled mesh woven from plastic bottles" and ranks that passage
# 5th of 10 (also with a "Materials:" heading). Asserted only not to get worse.
HARD_BRIEFS = {"Highlight the sustainable materials in the shoe": ("upper", 5)}


@pytest.fixture(scope="module")
def brand_vectors() -> tuple[np.ndarray, np.ndarray]:
    embedder = LocalMiniLMEmbedder()
    return embedder.embed(list(PASSAGES.values())), embedder.embed([*BRIEFS, *HARD_BRIEFS])


def test_briefs_retrieve_their_passage(store, collection, brand_vectors):
    passage_vectors, brief_vectors = brand_vectors
    store.upsert(
        collection,
        [
            VectorRecord(key, vector.tolist(), text, {"brand": "northwind", "kind": "passage"})
            for (key, text), vector in zip(PASSAGES.items(), passage_vectors, strict=True)
        ],
    )

    def rank(vector: np.ndarray, wanted: str, depth: int) -> int | None:
        hits = store.query(collection, vector.tolist(), k=depth, where={"brand": "northwind"})
        ids = [h.id for h in hits]
        return ids.index(wanted) + 1 if wanted in ids else None

    ranks = {
        brief: rank(vector, wanted, 3)
        for (brief, wanted), vector in zip(BRIEFS.items(), brief_vectors, strict=False)
    }
    assert None not in ranks.values(), ranks
    top1 = sum(r == 1 for r in ranks.values()) / len(ranks)
    assert top1 >= MIN_TOP1_RATE, ranks

    for (brief, (wanted, worst)), vector in zip(
        HARD_BRIEFS.items(), brief_vectors[len(BRIEFS) :], strict=True
    ):
        assert rank(vector, wanted, worst) is not None, brief


# --- Weaviate without a server -------------------------------------------------------------


def test_weaviate_collection_names_map_one_to_one():
    from connectors.vector_store.weaviate_store import weaviate_collection_name

    assert weaviate_collection_name("brand_passages") == "Brand_passages"
    assert weaviate_collection_name("b") == "B"
    names = ["brand_passages", "brandpassages", "brand_passages_2", "b_rand_passages"]
    assert len({weaviate_collection_name(n) for n in names}) == len(names)
    with pytest.raises(VectorStoreError, match="lower snake case"):
        weaviate_collection_name("Brand_passages")


def test_weaviate_object_ids_are_deterministic_uuid5():
    from connectors.vector_store.weaviate_store import object_uuid

    first = object_uuid("northwind/weight")
    assert first == object_uuid("northwind/weight")
    assert first != object_uuid("northwind/price")
    parsed = uuid.UUID(first)
    assert parsed.version == 5
    assert str(parsed) == first


def test_weaviate_filters_are_typed_and_combined_with_and():
    from connectors.vector_store.weaviate_store import build_filter

    assert build_filter({}) is None
    single = build_filter({"channel": "search"})
    assert (single.target, single.value, single.operator.value) == ("channel", "search", "Equal")

    combined = build_filter({"channel": "search", "week": 2, "live": True, "geo": None})
    assert combined.operator.value == "And"
    parts = {f.target: (f.value, f.operator.value) for f in combined.filters}
    assert parts == {
        "channel": ("search", "Equal"),
        "week": (2.0, "Equal"),
        "live": (True, "Equal"),
        "geo": (True, "IsNull"),
    }
    assert isinstance(parts["week"][0], float)  # numbers are stored as NUMBER
    assert isinstance(parts["live"][0], bool)
    with pytest.raises(VectorStoreError, match="reserved"):
        build_filter({"text": "x"})


def test_weaviate_connection_params_from_the_url():
    from connectors.vector_store.weaviate_store import connection_params

    assert connection_params("http://localhost:8080") == {
        "http_host": "localhost",
        "http_port": 8080,
        "http_secure": False,
        "grpc_host": "localhost",
        "grpc_port": 50051,
        "grpc_secure": False,
    }
    secure = connection_params("https://vectors.example.com", grpc_port=443)
    assert (secure["http_port"], secure["http_secure"], secure["grpc_port"]) == (443, True, 443)
    cloud = connection_params("https://abc.c0.europe-west3.gcp.weaviate.cloud")
    assert (cloud["grpc_host"], cloud["grpc_port"]) == (
        "grpc-abc.c0.europe-west3.gcp.weaviate.cloud",
        443,
    )
    with pytest.raises(VectorStoreError, match="WEAVIATE_URL"):
        connection_params("localhost:8080")


def test_weaviate_unreachable_server_names_the_url_and_the_variable():
    from connectors.vector_store.weaviate_store import WeaviateVectorStore

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    key = "weaviate-secret-do-not-print"
    store = WeaviateVectorStore(url, api_key=key)  # lazy: constructing connects to nothing
    assert key not in repr(store)
    with store, pytest.raises(VectorStoreError) as error:
        store.count("brand_passages")
    message = str(error.value)
    assert url in message
    assert "WEAVIATE_URL" in message
    assert key not in message
