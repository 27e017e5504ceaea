"""The audit trail: who changed what in a tenant's administration, recorded in the change's own transaction,
each row hash-chained to the previous one of its tenant (docs/audit.md).

A row's hash is sha256 over the canonical JSON (sorted keys, no spaces, UTF-8) of its recorded columns and
the previous row's hash; the first row of a chain follows GENESIS. Writers of one chain serialise on a
transaction-scoped advisory lock taken just before the insert, so the chain never forks and the lock is
held only from the insert to the commit. Secrets never reach a row: `scrub` drops key text and hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the gateway's routes import this module when the app is built
    import psycopg

GENESIS = "0" * 64
GLOBAL_CHAIN = "*"  # operator changes to state no tenant owns (global prompt labels, published versions)
# Never recorded, at any depth: key digests and secrets by field name, and any text that is an API key
# (a row must not help anyone forge or find a key).
SECRET_FIELDS = frozenset({"key_hash", "secret", "password", "token"})
_KEY_TEXT = "sk-stratus-"
_HASHED = ("chain", "seq", "at", "action", "target", "actor_key_id", "actor_tenant", "actor_scopes",
           "request_id", "source_ip", "before", "after")


@dataclass(frozen=True)
class Actor:
    """Who made a change: an API key (id, its tenant, its scopes) or an operator command (no key id)."""

    key_id: str | None
    tenant_id: str | None
    scopes: tuple[str, ...]
    request_id: str | None = None
    source_ip: str | None = None


def operator(conn: psycopg.Connection) -> Actor:
    """An operator command (the CLI): no key; who ran it, as `operator:<OS user>/<database login>`."""
    import getpass

    return Actor(key_id=None, tenant_id=f"operator:{getpass.getuser()}/{conn.info.user}", scopes=("operator",))


@dataclass
class Change:
    """What the caller fills in while it makes the change; `record=False` when nothing changed."""

    before: Any = None
    after: Any = None
    record: bool = True
    action: str | None = None  # set when the change turned out to be another action (a request, not a move)


@contextmanager
def change(conn: psycopg.Connection, chain: str, actor: Actor, action: str, target: str) -> Iterator[Change]:
    """Runs a change and its audit row in one transaction: bound to the tenant (`chain`), and joined by the
    library calls inside (stratus.db.connection.joined), or the owner's own for the global chain. A change
    that fails leaves no row; a row that cannot be written fails the change."""
    from stratus.db.connection import joined, tenant_transaction

    done = Change()
    if chain == GLOBAL_CHAIN:
        with conn.transaction():
            yield done
            if done.record:
                record(conn, chain, actor, done.action or action, target, before=done.before, after=done.after)
        return
    with tenant_transaction(chain, conn), joined(conn, chain):
        yield done
        if done.record:
            record(conn, chain, actor, done.action or action, target, before=done.before, after=done.after)


def scrub(value: Any) -> Any:
    """`value` as JSON-ready data without secrets: datetimes as ISO text, secret-named fields dropped."""
    if isinstance(value, dict):
        return {str(k): scrub(v) for k, v in value.items() if str(k) not in SECRET_FIELDS}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bytes):
        return None
    if hasattr(value, "__dataclass_fields__"):
        return scrub(dict(vars(value)))
    if isinstance(value, str) and value.startswith(_KEY_TEXT):
        return "[redacted]"
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # Decimal, UUID: their text


def canonical(row: dict[str, Any]) -> bytes:
    fields = {k: row[k] for k in _HASHED}
    fields["at"] = row["at"].astimezone(UTC).isoformat(timespec="microseconds")
    fields["actor_scopes"] = list(row["actor_scopes"])
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def row_hash(row: dict[str, Any], prev_hash: str) -> str:
    return hashlib.sha256(canonical(row) + prev_hash.encode()).hexdigest()


def record(conn: psycopg.Connection, chain: str, actor: Actor, action: str, target: str, *,
           before: Any = None, after: Any = None) -> dict[str, Any]:
    """Appends a row to `chain` inside the caller's open transaction (bound to that tenant, or the owner's
    for the global chain); a failure here fails the caller's change with it."""
    from psycopg.pq import TransactionStatus

    if conn.info.transaction_status != TransactionStatus.INTRANS:
        raise RuntimeError("audit.record must run inside the change's transaction")
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('stratus.audit:' || %s, 0))", [chain])
    last = conn.execute("SELECT seq, row_hash FROM audit_log WHERE chain = %s ORDER BY seq DESC LIMIT 1",
                        [chain]).fetchone()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    row: dict[str, Any] = {
        "chain": chain, "seq": seq, "at": datetime.now(UTC), "action": action, "target": target,
        "actor_key_id": actor.key_id, "actor_tenant": actor.tenant_id, "actor_scopes": list(actor.scopes),
        "request_id": actor.request_id, "source_ip": actor.source_ip,
        "before": scrub(before), "after": scrub(after)}
    row["prev_hash"], row["row_hash"] = prev, row_hash(row, prev)
    conn.execute(
        "INSERT INTO audit_log (chain, seq, at, action, target, actor_key_id, actor_tenant, actor_scopes,"
        " request_id, source_ip, before, after, prev_hash, row_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
        " %s, %s, %s, %s, %s, %s)",
        [chain, seq, row["at"], action, target, actor.key_id, actor.tenant_id, row["actor_scopes"],
         actor.request_id, actor.source_ip, _json(row["before"]), _json(row["after"]), prev, row["row_hash"]])
    return row


def _json(value: Any) -> Any:
    from psycopg.types.json import Jsonb

    return None if value is None else Jsonb(value)


@dataclass(frozen=True)
class Filters:
    action: str | None = None
    actor: str | None = None  # a key id
    since: datetime | None = None
    until: datetime | None = None
    after_seq: int = 0  # the cursor: rows after this one of the chain
    limit: int = 100


def list_rows(conn: psycopg.Connection, chain: str, filters: Filters) -> list[dict[str, Any]]:
    """The chain's rows matching `filters`, oldest first, at most `filters.limit`."""
    where, params = ["chain = %s", "seq > %s"], [chain, filters.after_seq]
    for clause, value in (("action = %s", filters.action), ("actor_key_id = %s", filters.actor),
                          ("at >= %s", filters.since), ("at < %s", filters.until)):
        if value is not None:
            where.append(clause)
            params.append(value)
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT * FROM audit_log WHERE {' AND '.join(where)} ORDER BY seq LIMIT %s",  # noqa: S608
                    [*params, filters.limit])
        return cur.fetchall()


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the API and the CLI show it (times as Unix seconds with microseconds)."""
    return {"object": "audit_event", "tenant_id": row["chain"], "seq": row["seq"],
            "at": row["at"].timestamp(), "action": row["action"], "target": row["target"],
            "actor": {"key_id": row["actor_key_id"], "tenant_id": row["actor_tenant"],
                      "scopes": list(row["actor_scopes"])},
            "request_id": row["request_id"], "source_ip": row["source_ip"],
            "before": row["before"], "after": row["after"], "prev_hash": row["prev_hash"], "hash": row["row_hash"]}


def chains(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT chain FROM audit_log ORDER BY chain")]


@dataclass(frozen=True)
class Verdict:
    chain: str
    rows: int
    head: str  # the last row's hash: keep it elsewhere to detect a truncated tail later
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(rows: Iterable[dict[str, Any]], chain: str) -> Verdict:
    """Walks one chain's rows in stored order (by id): each must follow the previous one (seq + 1, its
    prev_hash) and hash to its row_hash. An edited row fails its hash; a deleted one leaves a gap; a
    reordered one (seq or id swapped) breaks the sequence or the link."""
    problems: list[str] = []
    expected_seq, prev, count = 1, GENESIS, 0
    for row in rows:
        count += 1
        where = f"{chain} row id {row['id']} (seq {row['seq']})"
        if row["seq"] != expected_seq:
            problems.append(f"{where}: expected seq {expected_seq} (a row is missing or out of order)")
        if row["prev_hash"] != prev:
            problems.append(f"{where}: does not follow the previous row (deleted or reordered rows)")
        if row_hash(row, row["prev_hash"]) != row["row_hash"]:
            problems.append(f"{where}: its content does not match its hash (edited)")
        expected_seq, prev = row["seq"] + 1, row["row_hash"]
    return Verdict(chain, count, prev, tuple(problems))


def stored_rows(conn: psycopg.Connection, chain: str) -> Iterator[dict[str, Any]]:
    """A chain's rows in insertion order (id), as verify reads them."""
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM audit_log WHERE chain = %s ORDER BY id", [chain])
        yield from cur
