"""Migrations and Row Level Security on the real database."""

from __future__ import annotations

import threading

import psycopg
import pytest

from stratus.db import documents
from stratus.db.connection import tenant_transaction
from stratus.db.migrate import migrate


def test_migrations_are_recorded_and_idempotent(pg_url: str) -> None:
    assert migrate(pg_url) == []
    with psycopg.connect(pg_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions and versions[0] == "0001_foundation"


def test_concurrent_cold_starts_apply_each_migration_once(pg_url: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(pg_url))
        except BaseException as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r == [] for r in results)


def test_application_role_is_subject_to_rls(db: psycopg.Connection) -> None:
    user, bypass, superuser = db.execute(
        "SELECT current_user, rolbypassrls, rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert (user, bypass, superuser) == ("stratus_app", False, False)


def test_a_tenant_never_sees_another_tenants_rows(db: psycopg.Connection, tenant_id: str) -> None:
    with tenant_transaction(tenant_id, db):
        documents.lock_document(db, tenant_id, "secret.md")
    with tenant_transaction("someone-else", db):
        assert documents.list_documents(db, tenant_id) == []
        assert db.execute("SELECT count(*) FROM documents").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM tenants WHERE id = %s", [tenant_id]).fetchone() == (0,)
    # No tenant bound: nothing at all.
    db.rollback()
    assert db.execute("SELECT count(*) FROM documents").fetchone() == (0,)
    db.rollback()


def test_writing_into_another_tenant_is_refused(db: psycopg.Connection, tenant_id: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with tenant_transaction("intruder", db):
            db.execute(
                "INSERT INTO documents (tenant_id, source_key, status) VALUES (%s, 'x.md', 'pending')",
                [tenant_id],
            )


def test_search_view_is_bound_to_the_tenant_like_the_policy(db: psycopg.Connection, tenant_id: str) -> None:
    import numpy as np

    from stratus.db.records import ChunkDraft, SourceObject

    with tenant_transaction(tenant_id, db):
        doc = documents.lock_document(db, tenant_id, "view.md")
        documents.replace_version(
            db, doc, SourceObject(tenant_id, "view.md"), title="View", content_hash="h",
            chunks=[ChunkDraft(0, "confidential merger plans", 3)],
            embeddings=np.ones((1, 384), dtype=np.float32) / np.sqrt(384), embedding_model="all-MiniLM-L6-v2-int8",
        )
        assert db.execute("SELECT count(*) FROM chunk_search").fetchone() == (1,)
    with tenant_transaction("someone-else", db):
        assert db.execute("SELECT count(*) FROM chunk_search").fetchone() == (0,)
        assert db.execute(
            "SELECT count(*) FROM chunk_search WHERE lexemes @@ 'merger'::tsquery").fetchone() == (0,)
    db.rollback()
    assert db.execute("SELECT count(*) FROM chunk_search").fetchone() == (0,)
    db.rollback()


def test_every_table_with_a_tenant_id_has_row_level_security(pg_url: str) -> None:
    """A new tenant-owned table that forgets its policy would be readable across tenants by the app role."""
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.relrowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') "
            "AND a.attname = 'tenant_id' AND NOT a.attisdropped").fetchall()
    tables = dict(rows)
    assert {"documents", "traces", "eval_samples", "eval_drift"} <= set(tables)
    assert sorted(name for name, secured in tables.items() if not secured) == []
