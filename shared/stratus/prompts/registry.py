"""The registry's operations: publish the prompt files, resolve a label for a tenant, move labels.

Transactions: each function is one unit of work. On an idle connection it opens its own transaction
(bound to the tenant when one is given, as tenant_transaction does); inside the caller's transaction it
joins it (a savepoint), refusing a transaction bound to another tenant.

Connections: reading (resolve, list, diff) and tenant labels work on the application role under RLS.
Publishing versions (sync) and moving global labels need an administrative connection
(`connect(url, app_role=False)`, the role migrations use): the application role may not change what
every tenant is served, so a compromised request path cannot rewrite prompts. The CLI and
`ensure_prompts_synced` use such a connection.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from stratus.config import get_settings
from stratus.db import prompts as store
from stratus.db.connection import tenant_transaction
from stratus.errors import InvalidInput, NotFound
from stratus.prompts.files import canonical_yaml, load_directory, load_version, prompts_dir
from stratus.prompts.models import LABEL, LABEL_PATTERN, NAME, PromptVersion, VersionConflict, build_prompt

PRODUCTION = "production"

_synced: set[str] = set()
_sync_lock = threading.Lock()
_parsed: dict[tuple[str, int, str], PromptVersion] = {}  # published versions, parsed once per process


@dataclass(frozen=True)
class SyncReport:
    directory: Path
    published: list[str] = field(default_factory=list)  # "name vN" newly published
    unchanged: int = 0  # versions already published with the same content
    labelled: list[str] = field(default_factory=list)  # "name production -> vN" set by this sync

    def lines(self) -> list[str]:
        out = [f"{self.directory}: {len(self.published)} version(s) published, {self.unchanged} unchanged"]
        out += [f"  published {p}" for p in self.published]
        out += [f"  labelled  {lab}" for lab in self.labelled]
        return out


@dataclass(frozen=True)
class LabelChange:
    name: str
    label: str
    tenant_id: str | None
    previous: int | None  # the version the label pointed at before (None: it did not exist)
    current: int | None  # None: a tenant's label was removed and the global one applies again

    def describe(self) -> str:
        scope = f" for tenant {self.tenant_id}" if self.tenant_id else ""
        before = f"v{self.previous}" if self.previous is not None else "unset"
        after = f"v{self.current}" if self.current is not None else "unset (the global label applies)"
        return f"{self.name} {self.label}{scope}: {before} -> {after}"


@dataclass(frozen=True)
class PromptSummary:
    name: str
    versions: tuple[int, ...]
    labels: dict[str, int]  # global labels
    tenant_labels: dict[str, int]  # the tenant's own labels (when a tenant was given)


def _check_name(name: str) -> None:
    if not NAME.match(name):
        raise InvalidInput(f"prompt name {name!r} must match {NAME.pattern}", field="name")


def _check_label(label: str) -> None:
    if not LABEL.match(label):
        raise InvalidInput(f"label {label!r} must match {LABEL_PATTERN}", field="label")


@contextmanager
def _unit(conn: store.Connection, tenant_id: str | None, *, read_only: bool = False) -> Iterator[store.Connection]:
    """A transaction for the registry's work, or the caller's (checked to be bound to the same tenant).
    Reads join the caller's transaction without a savepoint: the generation path resolves a prompt per
    request, and every round trip shows in its latency."""
    if not store.in_transaction(conn):
        if tenant_id is None:
            with conn.transaction():
                yield conn
        else:
            with tenant_transaction(tenant_id, conn):
                yield conn
        return
    if tenant_id is not None:
        bound = store.bound_tenant(conn)
        if bound and bound != tenant_id:
            raise RuntimeError(f"the caller's transaction is bound to tenant {bound!r}, not {tenant_id!r}")
        if not bound:
            conn.execute("SELECT set_config('app.tenant_id', %s, true)", [tenant_id])
    with nullcontext() if read_only else conn.transaction():
        yield conn


def _from_store(stored: store.StoredVersion) -> PromptVersion:
    key = (stored.name, stored.version, stored.content_hash)
    prompt = _parsed.get(key)
    if prompt is None:
        prompt = build_prompt(stored.name, stored.version, stored.content,
                              source=f"published prompt {stored.name} v{stored.version}")
        if prompt.content_hash != stored.content_hash:  # the row was edited behind the registry's back
            raise VersionConflict(f"published prompt {stored.name} v{stored.version}: content does not match its"
                                  " recorded hash")
        if len(_parsed) >= 256:
            _parsed.clear()
        _parsed[key] = prompt
    return prompt


# --- publishing ----------------------------------------------------------------------------------------


def _plan(conn: store.Connection, prompts: list[PromptVersion], directory: Path
          ) -> tuple[list[PromptVersion], int, list[tuple[str, int]]]:
    names = sorted({p.name for p in prompts})
    published = store.published_hashes(conn, names)
    conflicts = []
    for p in prompts:
        old = published.get((p.name, p.version))
        if old is not None and old != p.content_hash:
            newest = max(v for (n, v) in [*published, *((q.name, q.version) for q in prompts)] if n == p.name)
            conflicts.append(
                f"{directory / p.name / f'{p.version}.yaml'}: {p.ref} is already published with different"
                f" content (sha256 {old[:12]}, the file has {p.content_hash[:12]}); published versions are"
                f" immutable: put the change in {p.name}/{newest + 1}.yaml")
    if conflicts:
        raise VersionConflict("refused to sync:\n  " + "\n  ".join(conflicts))
    new = [p for p in prompts if (p.name, p.version) not in published]
    unlabelled = []
    for name in names:
        if store.label_version(conn, name, PRODUCTION, None) is None:
            versions = [v for (n, v) in published if n == name] + [p.version for p in new if p.name == name]
            unlabelled.append((name, max(versions)))
    return new, len(prompts) - len(new), unlabelled


def sync_prompts(conn: store.Connection, directory: Path | None = None) -> SyncReport:
    """Publish the folder's new versions, all or nothing. A published version whose content changed is
    refused (VersionConflict naming the file). A prompt with no global `production` label gets one, at
    its highest version. Needs an administrative connection; safe when several processes race."""
    directory = directory or prompts_dir()
    prompts = load_directory(directory)
    with _unit(conn, None):
        new, unchanged, unlabelled = _plan(conn, prompts, directory)
        if not new and not unlabelled:
            return SyncReport(directory, unchanged=unchanged)  # the common cold start: nothing to write
        store.lock_registry(conn)
        new, unchanged, unlabelled = _plan(conn, prompts, directory)  # again, now that we hold the lock
        for p in new:
            store.insert_version(conn, p.name, p.version, p.canonical(), p.content_hash)
        for name, version in unlabelled:
            store.lock_label(conn, name, PRODUCTION, None)
            store.set_label(conn, name, PRODUCTION, version, None, "sync")
    return SyncReport(directory, published=[p.ref for p in new], unchanged=unchanged,
                      labelled=[f"{name} {PRODUCTION} -> v{version}" for name, version in unlabelled])


def ensure_prompts_synced(url: str | None = None) -> SyncReport | None:
    """Sync the packaged prompt files once per process (cold start), unless STRATUS_AUTO_SYNC_PROMPTS
    is off. Expects the schema in place (get_connection() migrates first). Concurrent cold starts are
    safe: they serialise on an advisory lock, and an up-to-date registry takes no lock at all."""
    settings = get_settings()
    if not settings.auto_sync_prompts:
        return None
    from stratus.db.connection import connect, database_url

    url = url or database_url(settings)
    if url in _synced:
        return None
    with _sync_lock:
        if url in _synced:
            return None
        conn = connect(url, app_role=False)
        try:
            report = sync_prompts(conn)
        finally:
            conn.close()
        _synced.add(url)
    return report


# --- resolving and labels ------------------------------------------------------------------------------


def resolve_prompt(conn: store.Connection, tenant_id: str, name: str, *, label: str = PRODUCTION,
                   version: int | None = None) -> PromptVersion:
    """The version a tenant is served: an explicit `version`, else what `label` points at (the
    tenant's own label wins over the global one). NotFound names the prompt and the label."""
    _check_name(name)
    _check_label(label)
    with _unit(conn, tenant_id, read_only=True):
        if version is not None:
            stored = store.get_version(conn, name, version)
            if stored is None:
                raise NotFound(f"prompt {name} v{version} is not published", field="version")
        else:
            stored, _ = store.resolve_label(conn, name, label, tenant_id)
    return _from_store(stored)


def current_version(conn: store.Connection, name: str, label: str, tenant_id: str | None = None) -> int | None:
    """The version `label` (global, or the tenant's own) points at now; None when it is unset."""
    _check_name(name)
    _check_label(label)
    with _unit(conn, tenant_id, read_only=True):
        return store.label_version(conn, name, label, tenant_id)


def promote(conn: store.Connection, name: str, version: int, label: str, tenant_id: str | None = None
            ) -> LabelChange:
    """Point `label` (global, or the tenant's own) at a published version."""
    _check_name(name)
    _check_label(label)
    with _unit(conn, tenant_id):
        if store.get_version(conn, name, version) is None:
            raise NotFound(f"prompt {name} v{version} is not published (run `stratus prompts sync`)",
                           field="version")
        store.lock_label(conn, name, label, tenant_id)
        previous = store.label_version(conn, name, label, tenant_id)
        if previous != version:
            store.set_label(conn, name, label, version, tenant_id, "promote")
    return LabelChange(name, label, tenant_id, previous, version)


def rollback(conn: store.Connection, name: str, label: str, tenant_id: str | None = None) -> LabelChange:
    """Move `label` back to the version it pointed at before its latest move. A tenant's label with no
    earlier version is removed, so the global label applies again."""
    _check_name(name)
    _check_label(label)
    scope = f" for tenant {tenant_id}" if tenant_id else ""
    with _unit(conn, tenant_id):
        store.lock_label(conn, name, label, tenant_id)
        live = store.live_history(conn, name, label, tenant_id, limit=2)
        if not live:
            raise NotFound(f"prompt {name} has no label {label!r}{scope}", field="label")
        earlier = live[1] if len(live) > 1 else None
        if earlier is None and tenant_id is None:
            raise NotFound(f"prompt {name} label {label!r} has no earlier version to roll back to", field="label")
        current = store.label_version(conn, name, label, tenant_id)
        store.roll_back_to(conn, name, label, tenant_id, live[0], earlier)
    return LabelChange(name, label, tenant_id, current, earlier.version if earlier else None)


def list_prompts(conn: store.Connection, tenant_id: str | None = None) -> list[PromptSummary]:
    """Every published prompt with its versions, global labels and (given a tenant) the tenant's labels."""
    with _unit(conn, tenant_id):
        versions = store.list_versions(conn)
        labels = store.list_labels(conn, tenant_id)
    by_name: dict[str, list[int]] = {}
    for name, version, _ in versions:
        by_name.setdefault(name, []).append(version)
    return [
        PromptSummary(
            name=name, versions=tuple(vs),
            labels={lab.label: lab.version for lab in labels if lab.name == name and lab.tenant_id is None},
            tenant_labels={lab.label: lab.version for lab in labels if lab.name == name and lab.tenant_id},
        )
        for name, vs in by_name.items()
    ]


def diff(conn_or_files: store.Connection | Path | str, name: str, v1: int, v2: int) -> str:
    """Unified diff of two versions' canonical YAML, from the published registry (a connection) or from
    a prompt folder (a path). Empty when their content is the same."""
    _check_name(name)
    if isinstance(conn_or_files, Path | str):
        a, b = (load_version(Path(conn_or_files), name, v) for v in (v1, v2))
    else:
        a, b = (resolve_prompt_version(conn_or_files, name, v) for v in (v1, v2))
    return "".join(difflib.unified_diff(
        canonical_yaml(a).splitlines(keepends=True), canonical_yaml(b).splitlines(keepends=True),
        fromfile=f"{name}/{v1}.yaml (sha256 {a.content_hash[:12]})",
        tofile=f"{name}/{v2}.yaml (sha256 {b.content_hash[:12]})",
    ))


def resolve_prompt_version(conn: store.Connection, name: str, version: int) -> PromptVersion:
    """A published version by number, for any tenant (versions are global)."""
    with _unit(conn, None):
        stored = store.get_version(conn, name, version)
    if stored is None:
        raise NotFound(f"prompt {name} v{version} is not published", field="version")
    return _from_store(stored)
