"""The default vector store: one plain DuckDB table per collection in the warehouse, searched
exactly with `array_cosine_similarity`, so analysts can query it with SQL as well."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence

import duckdb
import numpy as np
import pyarrow as pa

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
from connectors.warehouse import connect

_SCHEMA_PATTERN = check_collection  # a schema name follows the same rules as a collection
_ARRAY_TYPE = re.compile(r"^FLOAT\[(\d+)\]$")
_NUMERIC_JSON_TYPES = ("BIGINT", "UBIGINT", "DOUBLE", "HUGEINT")


class DuckDBVectorStore:
    """Collections as tables `{schema}.vectors__{collection}`:
    `id varchar primary key, text varchar, metadata json, vector float[D]`.

    D is fixed by the first upsert. Each call opens and closes its own connection (DuckDB has
    a single writer). Filters in `where` are equalities on metadata keys, typed as JSON: a
    string matches only a string, a number any equal number (2 matches 2.0), a bool only a
    bool, and None a null or missing key.
    """

    def __init__(self, warehouse_path: str | os.PathLike, schema: str = "features") -> None:
        self.warehouse_path = warehouse_path
        self.schema = _SCHEMA_PATTERN(schema)

    def __repr__(self) -> str:
        return f"DuckDBVectorStore({str(self.warehouse_path)!r}, schema={self.schema!r})"

    def table(self, collection: str) -> str:
        """The qualified table holding `collection`, for SQL outside this class."""
        return f"{self.schema}.vectors__{check_collection(collection)}"

    def _dimensions(self, conn: duckdb.DuckDBPyConnection, collection: str) -> int | None:
        """D of the collection's `vector float[D]` column, or None when it does not exist."""
        # fetchall, not fetchone: DuckDB 2 refuses further work while a result is unfinished.
        rows = conn.execute(
            """
            select data_type from duckdb_columns()
            where schema_name = ? and table_name = ? and column_name = 'vector'
            """,
            [self.schema, f"vectors__{collection}"],
        ).fetchall()
        if not rows:
            return None
        match = _ARRAY_TYPE.match(rows[0][0])
        if match is None:
            raise VectorStoreError(
                f"{self.table(collection)}.vector is {rows[0][0]}, not FLOAT[D]: the table was not "
                "made by this store; drop it or pick another collection name"
            )
        return int(match.group(1))

    def upsert(self, collection: str, records: Sequence[VectorRecord]) -> int:
        """Insert or replace `records` by id, all or none; returns how many distinct ids."""
        table = self.table(collection)
        checked = check_records(collection, records)
        if checked is None:
            return 0
        latest = {r.id: r for r in checked.records}
        vectors, d = checked.vectors, checked.dimensions
        metadata = [json.dumps(m, sort_keys=True) for m in checked.metadata]
        frame = pa.table(
            {
                "id": pa.array(list(latest), pa.string()),
                "text": pa.array([str(r.text) for r in latest.values()], pa.string()),
                "metadata": pa.array(metadata, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate(vectors)), d),
            }
        )
        with connect(self.warehouse_path) as conn:
            conn.execute("begin")
            try:
                existing = self._dimensions(conn, collection)
                if existing is None:
                    conn.execute(f"create schema if not exists {self.schema}")
                    conn.execute(
                        f"create table {table} (id varchar primary key, text varchar not null, "
                        f"metadata json not null, vector float[{d}] not null)"
                    )
                elif existing != d:
                    raise dimension_mismatch(collection, existing, d, "the upserted vector")
                conn.register("_adloop_vector_records", frame)
                conn.execute(
                    f"""
                    insert into {table}
                    select id, text, metadata::json, vector::float[{d}]
                    from _adloop_vector_records
                    on conflict (id) do update set
                        text = excluded.text, metadata = excluded.metadata, vector = excluded.vector
                    """
                )
                conn.unregister("_adloop_vector_records")
                conn.execute("commit")
            except BaseException:
                conn.execute("rollback")
                raise
        return len(latest)

    def query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int = 5,
        where: Mapping[str, Scalar] | None = None,
    ) -> list[Hit]:
        """The `k` records closest by cosine similarity, best first, ties by id; fewer when the
        collection (or the filtered part of it) is smaller, none when it does not exist."""
        table = self.table(collection)
        check_k(k)
        query = check_vector(vector, "the query vector")
        filters = check_metadata(where or {}, "where")
        with connect(self.warehouse_path) as conn:
            d = self._dimensions(conn, collection)
            if d is None:
                return []
            if query.size != d:
                raise dimension_mismatch(collection, d, query.size, "the query vector")
            clauses, params = _where_sql(filters)
            rows = conn.execute(
                f"""
                select id, text, metadata,
                       array_cosine_similarity(vector, ?::float[{d}]) as score
                from {table}
                {"where " + " and ".join(f"({c})" for c in clauses) if clauses else ""}
                order by score desc, id
                limit ?
                """,
                [query.tolist(), *params, k],
            ).fetchall()
        return [
            Hit(id=id_, text=text, score=float(score), metadata=json.loads(metadata))
            for id_, text, metadata, score in rows
        ]

    def count(self, collection: str) -> int:
        table = self.table(collection)
        with connect(self.warehouse_path) as conn:
            if self._dimensions(conn, collection) is None:
                return 0
            return int(conn.execute(f"select count(*) from {table}").fetchall()[0][0])

    def delete_collection(self, collection: str) -> None:
        table = self.table(collection)
        with connect(self.warehouse_path) as conn:
            conn.execute(f"drop table if exists {table}")


def _where_sql(filters: Mapping[str, Scalar]) -> tuple[list[str], list[object]]:
    """SQL conditions and parameters for equality on metadata keys, typed as JSON values."""
    clauses: list[str] = []
    params: list[object] = []
    for key, value in filters.items():
        path = f"$.{key}"  # keys are checked snake case, so the path needs no quoting
        if value is None:
            clauses.append("coalesce(json_type(metadata, ?), 'NULL') = 'NULL'")
            params.append(path)
        elif isinstance(value, bool):
            clauses.append(
                "json_type(metadata, ?) = 'BOOLEAN' and json_extract_string(metadata, ?) = ?"
            )
            params += [path, path, "true" if value else "false"]
        elif isinstance(value, int | float):
            types = ", ".join(f"'{t}'" for t in _NUMERIC_JSON_TYPES)
            clauses.append(
                f"json_type(metadata, ?) in ({types}) "
                "and try_cast(json_extract_string(metadata, ?) as double) = ?"
            )
            params += [path, path, float(value)]
        else:
            clauses.append(
                "json_type(metadata, ?) = 'VARCHAR' and json_extract_string(metadata, ?) = ?"
            )
            params += [path, path, value]
    return clauses, params
