"""API key text, parsing and the constant-work shape of authentication (no database: the lookup is faked)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from stratus.db.keys import LookupRow
from stratus.errors import InvalidInput
from stratus.gateway import keys


def test_new_keys_are_random_parseable_and_hash_to_32_bytes() -> None:
    drawn = [keys.new_key_text() for _ in range(50)]
    assert len({text for _, text in drawn}) == 50 and len({p for p, _ in drawn}) == 50
    for prefix, text in drawn:
        assert text.startswith(f"sk-stratus-{prefix}_")
        assert keys.parse_key(text) == (prefix, text.split("_", 1)[1])
        assert len(prefix) == 12 and set(prefix) <= set("abcdefghijklmnopqrstuvwxyz234567")
        assert len(keys.hash_key(text)) == 32


@pytest.mark.parametrize("text", [
    "", "sk-other-abcdefghijkl_" + "x" * 43, "sk-stratus-abcdefghijk_" + "x" * 43,   # prefix 11 chars
    "sk-stratus-ABCDEFGHIJKL_" + "x" * 43, "sk-stratus-abcdefghijkl-" + "x" * 43,   # case, separator
    "sk-stratus-abcdefghijkl_" + "x" * 42, "sk-stratus-abcdefghijkl_" + "x" * 300,  # secret too short / long
])
def test_malformed_keys_do_not_parse(text: str) -> None:
    assert keys.parse_key(text) is None


@pytest.mark.parametrize(("header", "token"), [
    (None, None), ("", None), ("Bearer", None), ("Basic abc", None), ("Bearer  tok ", "tok"), ("bearer tok", "tok"),
])
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert keys.bearer_token(header) == token


def test_scopes_are_checked_and_normalised() -> None:
    assert keys.check_scopes(["admin", "inference", "admin"]) == ["inference", "admin"]
    with pytest.raises(InvalidInput, match="unknown scope.*'write'") as err:
        keys.check_scopes(["inference", "write"])
    assert err.value.field == "scopes"
    with pytest.raises(InvalidInput, match="at least one scope"):
        keys.check_scopes([])


def test_principal_scopes() -> None:
    p = keys.Principal("t", "id", "abcdefghijkl", frozenset({"inference"}), None, None)
    assert p.has("inference") and not p.has("admin")


class FakeStore:
    """Holds one key; counts lookups the way the database function would see them."""

    def __init__(self, text: str, *, revoked: bool = False) -> None:
        self.prefix = keys.parse_key(text)[0]  # type: ignore[index]
        self.row = LookupRow("kid", "tenant-a", keys.hash_key(text), ["inference"],
                             datetime.now(UTC) if revoked else None, 5, None)
        self.lookups: list[str] = []

    def __call__(self, conn: object, prefix: str, presented: bytes) -> LookupRow | None:
        self.lookups.append(prefix)
        return self.row if prefix == self.prefix else None


@pytest.fixture
def compares(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys.hmac, "compare_digest", counting)
    return seen


def test_a_valid_key_authenticates(monkeypatch: pytest.MonkeyPatch, compares: list) -> None:
    _, text = keys.new_key_text()
    monkeypatch.setattr(keys, "_lookup", FakeStore(text))
    principal = keys.authenticate(object(), f"Bearer {text}")
    assert principal == keys.Principal("tenant-a", "kid", text[11:23], frozenset({"inference"}), 5, None)
    assert len(compares) == 1


def test_unknown_wrong_and_revoked_keys_do_the_same_work(monkeypatch: pytest.MonkeyPatch, compares: list) -> None:
    # Given one stored key and one revoked key
    _, good = keys.new_key_text()
    _, revoked = keys.new_key_text()
    _, unknown = keys.new_key_text()
    wrong_secret = good[:24] + ("A" if good[24] != "A" else "B") + good[25:]
    for presented, store in ((unknown, FakeStore(good)), (wrong_secret, FakeStore(good)),
                             (revoked, FakeStore(revoked, revoked=True))):
        monkeypatch.setattr(keys, "_lookup", store)
        before = len(compares)
        # When it is presented, Then: no principal, after exactly one lookup and one full-length comparison
        assert keys.authenticate(object(), f"Bearer {presented}") is None
        assert store.lookups == [keys.parse_key(presented)[0]]  # type: ignore[index]
        assert len(compares) == before + 1
        a, b = compares[-1]
        assert a == hashlib.sha256(presented.encode()).digest() and len(b) == 32

