"""A Weaviate (v4 client) vector store with the same contract as the DuckDB one, for
collections that outgrow a warehouse table or are shared between machines."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.data import DataObject
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.exceptions import WeaviateBaseError
from weaviate.util import generate_uuid5

from connectors.vector_store.base import (
    Hit,
    Scalar,
    VectorRecord,
    VectorStoreError,
    check_collection,
    check_k,
    check_metadata,
    check_records,
    check_vector,
    dimension_mismatch,
)

URL_ENV = "WEAVIATE_URL"
API_KEY_ENV = "WEAVIATE_API_KEY"
DEFAULT_GRPC_PORT = 50051
ID_PROPERTY = "record_id"
TEXT_PROPERTY = "text"
VECTOR_NAME = "default"  # named explicitly, so inserts and queries never rely on server defaults
# Weaviate cuts at `limit` before we break ties by id; asking for a few more keeps equal
# scores at the boundary ordered the way the DuckDB store orders them.
_TIE_SLACK = 8
_CLOUD_SUFFIXES = (".weaviate.cloud", ".weaviate.network")


def weaviate_collection_name(collection: str) -> str:
    """Weaviate requires a capital first letter: `brand_passages` -> `Brand_passages`. Ours are
    lower case throughout, so the mapping is one to one."""
    check_collection(collection)
    return collection[0].upper() + collection[1:]


def object_uuid(record_id: str) -> str:
    """The Weaviate object id of a record: a uuid5 of its id, so re-upserts replace in place."""
    return str(generate_uuid5(record_id))


def metadata_type(value: Scalar) -> DataType | None:
    """The property type for a metadata value. All numbers are NUMBER (float), so 2 and 2.0
    land in one property and compare equal; None has no type and is stored as absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return DataType.BOOL
    if isinstance(value, int | float):
        return DataType.NUMBER
    return DataType.TEXT


def build_filter(where: Mapping[str, Scalar]) -> Any:
    """Equality on every key of `where`, combined with AND; None when there is nothing to filter.
    None matches a missing property (the collection indexes null state)."""
    parts = []
    for key, value in check_metadata(where, "where").items():
        prop = Filter.by_property(key)
        if value is None:
            parts.append(prop.is_none(True))
        elif isinstance(value, bool):
            parts.append(prop.equal(value))
        elif isinstance(value, int | float):
            parts.append(prop.equal(float(value)))
        else:
            parts.append(prop.equal(value))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Filter.all_of(parts)


def connection_params(url: str, grpc_port: int | None = None) -> dict[str, Any]:
    """`connect_to_custom` arguments for an http(s) URL. gRPC goes to the same host on 50051,
    except on Weaviate Cloud, where it is `grpc-<host>` on 443."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise VectorStoreError(
            f"Weaviate URL {url!r} must look like http://host:8080 or https://host (set {URL_ENV})"
        )
    secure = parts.scheme == "https"
    host = parts.hostname
    grpc_host, grpc_secure = host, secure
    if grpc_port is None and host.endswith(_CLOUD_SUFFIXES):
        grpc_host, grpc_port, grpc_secure = f"grpc-{host}", 443, True
    return {
        "http_host": host,
        "http_port": parts.port or (443 if secure else 80),
        "http_secure": secure,
        "grpc_host": grpc_host,
        "grpc_port": grpc_port or DEFAULT_GRPC_PORT,
        "grpc_secure": grpc_secure,
    }


class WeaviateVectorStore:
    """Collections as Weaviate collections with self-provided vectors and cosine HNSW.

    Objects carry `record_id`, `text` and one property per metadata key (text keys are
    tokenised as whole fields, so equality is exact). The connection opens on first use; use
    the store as a context manager or call `close()`.
    """

    def __init__(self, url: str, api_key: str | None = None, grpc_port: int | None = None) -> None:
        self.url = url.rstrip("/")
        self._params = connection_params(self.url, grpc_port)
        self._api_key = api_key or None
        self._client: weaviate.WeaviateClient | None = None
        self._dims: dict[str, int] = {}

    @classmethod
    def from_env(cls) -> WeaviateVectorStore:
        url = os.environ.get(URL_ENV)
        if not url:
            raise VectorStoreError(f"set {URL_ENV} (e.g. http://localhost:8080) to use Weaviate")
        return cls(url, api_key=os.environ.get(API_KEY_ENV))

    def __repr__(self) -> str:
        auth = "api key" if self._api_key else "no auth"
        return f"WeaviateVectorStore({self.url!r}, grpc_port={self._params['grpc_port']}, {auth})"

    def __enter__(self) -> WeaviateVectorStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()

    def _connect(self) -> weaviate.WeaviateClient:
        if self._client is None:
            try:
                self._client = weaviate.connect_to_custom(
                    **self._params,
                    auth_credentials=Auth.api_key(self._api_key) if self._api_key else None,
                    additional_config=AdditionalConfig(
                        timeout=Timeout(init=10, query=60, insert=120)
                    ),
                )
            except WeaviateBaseError as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise VectorStoreError(
                    f"could not connect to Weaviate at {self.url} (gRPC "
                    f"{self._params['grpc_host']}:{self._params['grpc_port']}): {reason}. Start "
                    f"Weaviate there, or point {URL_ENV} at a running one"
                ) from None
        return self._client

    def _collection(self, collection: str, create: bool = False):
        name = weaviate_collection_name(collection)
        client = self._connect()
        try:
            if not client.collections.exists(name):
                if not create:
                    return None
                client.collections.create(
                    name,
                    properties=[
                        Property(
                            name=ID_PROPERTY,
                            data_type=DataType.TEXT,
                            tokenization=Tokenization.FIELD,
                        ),
                        Property(name=TEXT_PROPERTY, data_type=DataType.TEXT),
                    ],
                    vector_config=Configure.Vectors.self_provided(
                        name=VECTOR_NAME,
                        vector_index_config=Configure.VectorIndex.hnsw(
                            distance_metric=VectorDistances.COSINE
                        ),
                    ),
                    inverted_index_config=Configure.inverted_index(index_null_state=True),
                )
        except WeaviateBaseError as exc:
            raise VectorStoreError(f"Weaviate at {self.url}, collection {name}: {exc}") from None
        return client.collections.get(name)

    def _dimensions(self, collection: str, handle) -> int | None:
        if collection not in self._dims:
            objects = handle.query.fetch_objects(limit=1, include_vector=True).objects
            if not objects:
                return None
            vector = objects[0].vector
            first = vector[VECTOR_NAME] if isinstance(vector, Mapping) else vector
            self._dims[collection] = len(first)
        return self._dims[collection]

    def _property_types(self, handle) -> dict[str, DataType]:
        return {p.name: p.data_type for p in handle.config.get().properties}

    def upsert(self, collection: str, records: Sequence[VectorRecord]) -> int:
        checked = check_records(collection, records)
        if checked is None:
            return 0
        latest = {r.id: r for r in checked.records}
        vectors, d, metadata = checked.vectors, checked.dimensions, checked.metadata

        handle = self._collection(collection, create=True)
        try:
            existing = self._dimensions(collection, handle)
            if existing is not None and existing != d:
                raise dimension_mismatch(collection, existing, d, "the upserted vector")
            self._add_properties(handle, metadata)
            objects = [
                DataObject(
                    properties={
                        ID_PROPERTY: record.id,
                        TEXT_PROPERTY: str(record.text),
                        **{
                            k: float(v) if metadata_type(v) is DataType.NUMBER else v
                            for k, v in meta.items()
                            if v is not None
                        },
                    },
                    uuid=object_uuid(record.id),
                    vector={VECTOR_NAME: vector.tolist()},
                )
                for record, meta, vector in zip(latest.values(), metadata, vectors, strict=True)
            ]
            # Weaviate's batch endpoint replaces an object whose uuid exists: an upsert.
            result = handle.data.insert_many(objects)
        except WeaviateBaseError as exc:
            raise VectorStoreError(f"Weaviate at {self.url}: upsert failed: {exc}") from None
        if result.has_errors:
            first = next(iter(result.errors.values()))
            raise VectorStoreError(
                f"Weaviate at {self.url} rejected {len(result.errors)} of {len(objects)} "
                f"records for {collection!r}; first: {first.message}"
            )
        self._dims[collection] = d
        return len(latest)

    def _add_properties(self, handle, metadata: list[dict[str, Scalar]]) -> None:
        known = self._property_types(handle)
        wanted: dict[str, DataType] = {}
        for meta in metadata:
            for key, value in meta.items():
                kind = metadata_type(value)
                if kind is None:
                    continue
                have = known.get(key, wanted.get(key))
                if have is not None and have != kind:
                    raise VectorStoreError(
                        f"metadata key {key!r} holds {have.value} in this collection, got "
                        f"{type(value).__name__} {value!r}: keep one type per key"
                    )
                if key not in known:
                    wanted[key] = kind
        for key, kind in wanted.items():
            handle.config.add_property(
                Property(
                    name=key,
                    data_type=kind,
                    tokenization=Tokenization.FIELD if kind is DataType.TEXT else None,
                )
            )

    def query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int = 5,
        where: Mapping[str, Scalar] | None = None,
    ) -> list[Hit]:
        check_k(k)
        query = check_vector(vector, "the query vector")
        filters = check_metadata(where or {}, "where")
        handle = self._collection(collection)
        if handle is None:
            return []
        try:
            d = self._dimensions(collection, handle)
            if d is None:
                return []
            if query.size != d:
                raise dimension_mismatch(collection, d, query.size, "the query vector")
            if filters:
                types = self._property_types(handle)
                for key, value in list(filters.items()):
                    kind = metadata_type(value)
                    if key not in types or (kind is not None and types[key] != kind):
                        # Never stored with this type: like the DuckDB store, nothing equals it
                        # (and everything lacks it, for None).
                        if kind is not None:
                            return []
                        del filters[key]
            response = handle.query.near_vector(
                near_vector=query.tolist(),
                limit=k + _TIE_SLACK,
                target_vector=VECTOR_NAME,
                filters=build_filter(filters),
                return_metadata=MetadataQuery(distance=True),
            )
        except WeaviateBaseError as exc:
            raise VectorStoreError(f"Weaviate at {self.url}: query failed: {exc}") from None
        hits = []
        for obj in response.objects:
            props = dict(obj.properties)
            record_id = str(props.pop(ID_PROPERTY))
            text = str(props.pop(TEXT_PROPERTY, "") or "")
            meta = {key: value for key, value in props.items() if value is not None}
            hits.append(Hit(record_id, text, 1.0 - float(obj.metadata.distance), meta))
        hits.sort(key=lambda hit: (-hit.score, hit.id))
        return hits[:k]

    def count(self, collection: str) -> int:
        handle = self._collection(collection)
        if handle is None:
            return 0
        try:
            return int(handle.aggregate.over_all(total_count=True).total_count or 0)
        except WeaviateBaseError as exc:
            raise VectorStoreError(f"Weaviate at {self.url}: count failed: {exc}") from None

    def delete_collection(self, collection: str) -> None:
        name = weaviate_collection_name(collection)
        try:
            self._connect().collections.delete(name)
        except WeaviateBaseError as exc:
            raise VectorStoreError(f"Weaviate at {self.url}: delete failed: {exc}") from None
        self._dims.pop(collection, None)
