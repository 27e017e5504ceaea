"""The prompt registry on PostgreSQL: publishing, immutability, labels per tenant under RLS, rollback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stratus.errors import Forbidden, NotFound
from stratus.prompts import registry
from stratus.prompts.models import VersionConflict
from stratus.prompts.registry import list_prompts, promote, resolve_prompt, rollback, sync_prompts

BODY = ("description: {desc}\nmodel: fast\nvariables: [q]\n"
        "messages:\n  - {{role: user, content: '{text} {{{{ q }}}}'}}\n")


def body(text: str, desc: str = "A test prompt.") -> str:
    return BODY.format(desc=desc, text=text)


@pytest.fixture
def name() -> str:
    """A prompt name no other test uses (versions are global and immutable)."""
    return f"p-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def admin(pg_url: str) -> Iterator[object]:
    """A connection that keeps the login role: what sync and global labels need."""
    from stratus.db.connection import connect

    conn = connect(pg_url, app_role=False)
    try:
        yield conn
    finally:
        conn.close()


def write(root: Path, name: str, version: int, text: str) -> Path:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / f"{version}.yaml").write_text(text)
    return root


def test_sync_publishes_labels_production_and_is_idempotent(admin, db, tenant_id, name, tmp_path) -> None:
    write(tmp_path, name, 1, body("one"))
    write(tmp_path, name, 2, body("two"))

    first = sync_prompts(admin, tmp_path)
    second = sync_prompts(admin, tmp_path)

    assert first.published == [f"{name} v1", f"{name} v2"]
    assert first.labelled == [f"{name} production -> v2"]  # the highest version, on first sync
    assert (second.published, second.unchanged, second.labelled) == ([], 2, [])
    served = resolve_prompt(db, tenant_id, name)  # the application role reads through RLS
    assert (served.version, served.render({"q": "?"})[0].content) == (2, "two ?")


def test_a_later_sync_does_not_move_an_existing_production_label(admin, db, tenant_id, name, tmp_path) -> None:
    sync_prompts(admin, write(tmp_path, name, 1, body("one")))

    report = sync_prompts(admin, write(tmp_path, name, 2, body("two")))

    assert report.published == [f"{name} v2"] and report.labelled == []
    assert resolve_prompt(db, tenant_id, name).version == 1
    assert resolve_prompt(db, tenant_id, name, version=2).version == 2


def test_changing_a_published_version_is_refused_and_nothing_is_published(admin, name, tmp_path) -> None:
    sync_prompts(admin, write(tmp_path, name, 1, body("one")))
    write(tmp_path, name, 1, body("one, edited"))
    write(tmp_path, name, 2, body("two"))

    with pytest.raises(VersionConflict) as caught:
        sync_prompts(admin, tmp_path)

    assert str(tmp_path / name / "1.yaml") in caught.value.message
    assert f"put the change in {name}/3.yaml" in caught.value.message
    assert [s.versions for s in list_prompts(admin) if s.name == name] == [(1,)]  # v2 was not published either


def test_reformatting_a_published_file_is_not_a_change(admin, name, tmp_path) -> None:
    sync_prompts(admin, write(tmp_path, name, 1, body("one")))
    reformatted = ("# reviewed\nmessages:\n- role: user\n  content: |\n    one {{ q }}\nvariables:\n- q\n"
                   "model: 'fast'\ndescription: >\n  A test prompt.\n")

    assert sync_prompts(admin, write(tmp_path, name, 1, reformatted)).unchanged == 1


def test_the_database_refuses_to_edit_a_published_version(admin, name, tmp_path) -> None:
    import psycopg

    sync_prompts(admin, write(tmp_path, name, 1, body("one")))

    with pytest.raises(psycopg.errors.RaiseException, match="immutable"):
        admin.execute("UPDATE prompt_versions SET content_hash = repeat('0', 64) WHERE name = %s", [name])
    admin.rollback()


def test_promote_and_rollback_walk_the_label_history(admin, db, tenant_id, name, tmp_path) -> None:
    for v in (1, 2, 3):
        write(tmp_path, name, v, body(f"v{v}"))
    sync_prompts(admin, tmp_path)  # production -> v3
    promote(admin, name, 1, "production")
    promote(admin, name, 2, "production")

    assert rollback(admin, name, "production").describe() == f"{name} production: v2 -> v1"
    assert resolve_prompt(db, tenant_id, name).version == 1
    assert rollback(admin, name, "production").current == 3  # further back: where sync put it
    with pytest.raises(NotFound, match="no earlier version"):
        rollback(admin, name, "production")
    assert resolve_prompt(db, tenant_id, name).version == 3


def test_promoting_to_the_current_version_changes_nothing(admin, name, tmp_path) -> None:
    sync_prompts(admin, write(tmp_path, name, 1, body("one")))
    promote(admin, name, 1, "staging")

    change = promote(admin, name, 1, "staging")

    assert (change.previous, change.current) == (1, 1)
    with pytest.raises(NotFound):  # staging has only ever been v1
        rollback(admin, name, "staging")


def test_a_tenant_label_wins_and_other_tenants_do_not_see_it(admin, db, tenant_id, new_tenant, name, tmp_path) -> None:
    write(tmp_path, name, 1, body("one"))
    sync_prompts(admin, write(tmp_path, name, 2, body("two")))  # production -> v2 globally
    neighbour = new_tenant()

    # When the tenant pins production to v1 (the application role may write its own tenant's labels)
    promote(db, name, 1, "production", tenant_id=tenant_id)

    # Then it is served v1, while another tenant still gets the global v2 and cannot see the pin
    assert resolve_prompt(db, tenant_id, name).version == 1
    assert resolve_prompt(db, neighbour, name).version == 2
    mine = next(s for s in list_prompts(db, tenant_id) if s.name == name)
    theirs = next(s for s in list_prompts(db, neighbour) if s.name == name)
    assert (mine.labels, mine.tenant_labels) == ({"production": 2}, {"production": 1})
    assert theirs.tenant_labels == {}
    from stratus.db.connection import tenant_transaction

    with tenant_transaction(neighbour, db):
        rows = db.execute("SELECT count(*) FROM prompt_labels WHERE tenant_id = %s", [tenant_id]).fetchone()
        history = db.execute("SELECT count(*) FROM prompt_label_history WHERE tenant_id = %s",
                             [tenant_id]).fetchone()
    assert rows == (0,) and history == (0,)  # RLS hides the row even from a query that asks for it

    # And rolling back the tenant's only pin removes it: the global label applies again
    change = rollback(db, name, "production", tenant_id=tenant_id)
    assert change.current is None
    assert resolve_prompt(db, tenant_id, name).version == 2


def test_a_tenant_label_resolves_even_without_a_global_one(admin, db, tenant_id, name, tmp_path) -> None:
    sync_prompts(admin, write(tmp_path, name, 1, body("one")))

    promote(db, name, 1, "canary", tenant_id=tenant_id)

    assert resolve_prompt(db, tenant_id, name, label="canary").version == 1
    with pytest.raises(NotFound, match=f"prompt '{name}' has no label 'canary'"):
        resolve_prompt(admin, "some-other-tenant", name, label="canary")


def test_the_application_role_cannot_publish_or_move_global_labels(db, admin, name, tmp_path) -> None:
    write(tmp_path, name, 1, body("one"))

    with pytest.raises(Forbidden):
        sync_prompts(db, tmp_path)
    sync_prompts(admin, tmp_path)
    with pytest.raises(Forbidden):
        promote(db, name, 1, "staging")


def test_unknown_prompts_labels_and_tenants_are_named(admin, db, tenant_id, name, tmp_path) -> None:
    sync_prompts(admin, write(tmp_path, name, 1, body("one")))

    with pytest.raises(NotFound, match="'missing-prompt' has no label 'production'"):
        resolve_prompt(db, tenant_id, "missing-prompt")
    with pytest.raises(NotFound, match=f"{name} v7 is not published"):
        promote(admin, name, 7, "production")
    with pytest.raises(NotFound, match="no such tenant"):
        promote(admin, name, 1, "production", tenant_id="no-such-tenant")


def test_resolve_joins_the_callers_tenant_transaction(admin, db, tenant_id, name, tmp_path) -> None:
    from stratus.db.connection import tenant_transaction

    sync_prompts(admin, write(tmp_path, name, 1, body("one")))

    with tenant_transaction(tenant_id, db):
        assert resolve_prompt(db, tenant_id, name).version == 1
        with pytest.raises(RuntimeError, match="bound to tenant"):
            resolve_prompt(db, "someone-else", name)


def test_concurrent_cold_starts_publish_once(pg_url, name, tmp_path) -> None:
    from stratus.db.connection import connect

    write(tmp_path, name, 1, body("one"))

    def cold_start(_: int) -> list[str]:
        conn = connect(pg_url, app_role=False)
        try:
            return sync_prompts(conn, tmp_path).published
        finally:
            conn.close()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(cold_start, range(4)))

    assert sorted(map(len, results)) == [0, 0, 0, 1]


def test_ensure_prompts_synced_runs_once_per_process(pg_url, monkeypatch) -> None:
    monkeypatch.setattr(registry, "_synced", set())

    first = registry.ensure_prompts_synced(pg_url)
    again = registry.ensure_prompts_synced(pg_url)

    assert first is not None and again is None
    from stratus.db.connection import connect

    conn = connect(pg_url)
    try:
        names = {s.name for s in list_prompts(conn)}
    finally:
        conn.close()
    assert {"rag-answer", "chat"} <= names
