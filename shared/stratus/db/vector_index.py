"""One partial HNSW index per embedding model and dimension over the untyped `chunks.embedding` column.

Vectors of every model share the column (untyped `vector`, migration 0001); each model gets a partial
index on its own rows, on an expression that gives them a fixed dimension, which HNSW needs. A dense
query must be written on the same expression (`vector_expression`) for the planner to use the index.

pgvector indexes `vector` up to 2,000 dimensions with HNSW; above that (text-embedding-3-large's 3,072)
the index is on `halfvec` (half precision, up to 4,000): half the memory, with a ranking error far below
the approximate search's own. The stored vectors stay full precision; re-sorting candidates by their exact
distance (stratus.db.chunks.dense_search) uses the same expression, so index and sort agree.

The offline MiniLM model's index was made by migrations 0001/0013 and keeps its name; every other
index is made by `ensure_model_index`, with the build parameters 0013 chose (m 16, ef_construction 128).
"""

from __future__ import annotations

import hashlib
import re

import psycopg
from psycopg import sql

VECTOR_HNSW_MAX_DIMS = 2000  # pgvector's HNSW limit for `vector`
HALFVEC_HNSW_MAX_DIMS = 4000  # and for `halfvec`
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 128
# Indexes made by migrations: model -> (name, dimensions).
MIGRATED = {"all-MiniLM-L6-v2-int8": ("chunks_embedding_minilm", 384)}
_DIMS_SUFFIX = re.compile(r"/(\d+)$")


def model_dimensions(model: str) -> int | None:
    """The dimension a model id names (`…/512`), or a migrated model's; None if neither says."""
    if model in MIGRATED:
        return MIGRATED[model][1]
    m = _DIMS_SUFFIX.search(model)
    return int(m.group(1)) if m else None


def vector_type(dimensions: int) -> str:
    if not 1 <= dimensions <= HALFVEC_HNSW_MAX_DIMS:
        raise ValueError(f"no HNSW index for {dimensions} dimensions (pgvector indexes at most "
                         f"{HALFVEC_HNSW_MAX_DIMS}, as halfvec)")
    return "vector" if dimensions <= VECTOR_HNSW_MAX_DIMS else "halfvec"


def vector_expression(column: str, dimensions: int) -> sql.Composed:
    """`(column::vector(N))` or `(column::halfvec(N))`: the indexed expression, for queries to match."""
    return sql.SQL("({col}::{t}({d}))").format(col=sql.SQL(column), t=sql.SQL(vector_type(dimensions)),
                                                d=sql.SQL(str(int(dimensions))))


def index_name(model: str, dimensions: int) -> str:
    """A stable name within PostgreSQL's 63 characters: readable prefix, dimension, and a hash of the id."""
    if model in MIGRATED:
        return MIGRATED[model][0]
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower().rsplit("/", 1)[0]).strip("_")[:32]
    digest = hashlib.sha256(f"{model}\x00{dimensions}".encode()).hexdigest()[:8]
    return f"chunks_emb_{slug}_{dimensions}_{digest}"


def ensure_model_index(conn: psycopg.Connection, model_name: str, dimensions: int) -> str:
    """Build the model's partial HNSW index if it is missing (or left invalid by a failed build), without
    blocking writes (CREATE INDEX CONCURRENTLY). Needs the table owner's connection in autocommit mode
    (CONCURRENTLY cannot run in a transaction): run it from a migration-privileged job before a model's
    vectors are searched, e.g. when a tenant's reindex starts. Returns the index's name."""
    if not conn.autocommit:
        raise ValueError("ensure_model_index needs an autocommit connection (CREATE INDEX CONCURRENTLY)")
    name = index_name(model_name, dimensions)
    if model_name in MIGRATED and MIGRATED[model_name][1] != dimensions:
        raise ValueError(f"{model_name} is indexed at {MIGRATED[model_name][1]} dimensions, not {dimensions}")
    row = conn.execute("SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid"
                       " WHERE c.relname = %s AND c.relkind = 'i'", [name]).fetchone()
    if row is not None and not row[0]:  # a concurrent build that failed leaves an invalid index behind
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))
    ops = sql.SQL(f"{vector_type(dimensions)}_cosine_ops")
    conn.execute(sql.SQL(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON chunks USING hnsw ({expr} {ops})"
        " WITH (m = {m}, ef_construction = {ef}) WHERE embedding_model = {model}"
    ).format(name=sql.Identifier(name), expr=vector_expression("embedding", dimensions), ops=ops,
             m=sql.Literal(HNSW_M), ef=sql.Literal(HNSW_EF_CONSTRUCTION), model=sql.Literal(model_name)))
    return name
