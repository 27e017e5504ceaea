"""The re-embedding's queue messages and the cache scope's model: what they accept and what they key."""

from __future__ import annotations

import json

import pytest

from stratus.cache import CacheScope
from stratus.cache.keys import _sha256
from stratus.errors import InvalidInput
from stratus.reindex import queue


def test_a_reindex_message_round_trips_and_other_messages_are_not_one() -> None:
    assert queue.parse(queue.message("acme")) == "acme"
    assert queue.parse({"stratus": "reindex", "tenant_id": "acme"}) == "acme"
    s3_notification = json.dumps({"Records": [{"eventSource": "aws:s3"}]})
    for other in (s3_notification, "not json", "[1, 2]", json.dumps({"stratus": "other"})):
        assert queue.parse(other) is None


@pytest.mark.parametrize("body", [{"stratus": "reindex"}, {"stratus": "reindex", "tenant_id": "Bad Id"},
                                  {"stratus": "reindex", "tenant_id": 7}])
def test_a_malformed_reindex_message_fails_naming_the_tenant(body: dict[str, object]) -> None:
    with pytest.raises(InvalidInput) as err:
        queue.parse(json.dumps(body))
    assert err.value.field == "tenant_id"


def test_the_scope_key_includes_a_tenant_model_and_keeps_the_default_keys() -> None:
    default = CacheScope("acme", "p1", "fast", "h1")
    assert default.key == _sha256("scope/v1", "acme", "p1", "fast", "h1")  # entries from before stay valid
    moved = CacheScope("acme", "p1", "fast", "h1", embedding_model="amazon.titan-embed-text-v2:0")
    other = CacheScope("acme", "p1", "fast", "h1", embedding_model="text-embedding-3-small")
    assert len({default.key, moved.key, other.key}) == 3
