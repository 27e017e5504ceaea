"""The audit row hash and scrubbing, without a database: a row's hash covers every recorded column and
the previous hash, and secrets never survive scrubbing."""

from __future__ import annotations

from datetime import UTC, datetime

from stratus import audit


def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "chain": "acme", "seq": 1, "at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "action": "key.create",
        "target": "acme", "actor_key_id": "k1", "actor_tenant": "ops", "actor_scopes": ["admin"],
        "request_id": "r1", "source_ip": "10.0.0.1", "before": None, "after": {"id": "k2"}}
    return {**row, **changes}


def test_the_hash_covers_every_column_and_the_previous_hash() -> None:
    base = audit.row_hash(_row(), audit.GENESIS)
    assert base == audit.row_hash(_row(), audit.GENESIS)  # deterministic
    for column, value in (("seq", 2), ("at", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)), ("action", "key.revoke"),
                          ("actor_key_id", "k9"), ("actor_scopes", ["admin", "inference"]), ("source_ip", None),
                          ("after", {"id": "k3"}), ("before", {})):
        assert audit.row_hash(_row(**{column: value}), audit.GENESIS) != base, column
    assert audit.row_hash(_row(), "f" * 64) != base


def test_verify_walks_the_chain() -> None:
    first = {**_row(), "id": 1, "prev_hash": audit.GENESIS}
    first["row_hash"] = audit.row_hash(first, audit.GENESIS)
    second = {**_row(seq=2, action="key.revoke"), "id": 2, "prev_hash": first["row_hash"]}
    second["row_hash"] = audit.row_hash(second, str(first["row_hash"]))
    assert audit.verify([first, second], "acme").ok
    assert not audit.verify([second], "acme").ok  # the first one deleted
    assert not audit.verify([second, first], "acme").ok  # reordered
    assert not audit.verify([first, {**second, "target": "x"}], "acme").ok  # edited


def test_scrub_drops_secrets_at_any_depth() -> None:
    text = "sk-stratus-abcdefghijkl_" + "x" * 43
    scrubbed = audit.scrub({"id": "k1", "key_hash": b"\x00" * 32, "nested": [{"secret": "s", "note": text}],
                            "key": "docs/a.txt", "at": datetime(2026, 1, 1, tzinfo=UTC)})
    assert scrubbed == {"id": "k1", "nested": [{"note": "[redacted]"}], "key": "docs/a.txt",
                        "at": "2026-01-01T00:00:00+00:00"}
