"""Cache keys: what makes two requests deserve the same answer.

An answer depends on the tenant, the prompt version (its content hash), the model alias, the generation
parameters, the conversation and the passages the prompt was built from. Everything here is a pure
function of those, so keys are stable across processes and releases.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from stratus.errors import InvalidInput
from stratus.llm.types import ChatRequest, ContextPassage, Message

_SPACE = re.compile(r"\s+")
_SEP = "\x1f"  # between hashed fields, so ("ab", "c") and ("a", "bc") never collide


def _sha256(*parts: str) -> str:
    return hashlib.sha256(_SEP.join(parts).encode("utf-8")).hexdigest()


def _canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def normalize_question(text: str) -> str:
    """NFKC, casefolded, whitespace collapsed: "Reset  my\tPassword " == "reset my password"."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


@dataclass(frozen=True)
class CacheScope:
    """Entries are only ever compared within one scope."""

    tenant_id: str
    prompt_hash: str  # content hash of the prompt version that rendered the request
    model_alias: str
    params_hash: str  # params_hash(request)
    # The tenant's embedding model when it is not the deployment's: the retrieved context and the question's
    # vector depend on it, so answers from before a switch are never served after it (nor after a rollback
    # the other way). Empty for the deployment's model, so that those keys stay what they were.
    embedding_model: str = ""

    def __post_init__(self) -> None:
        for name in ("tenant_id", "prompt_hash", "model_alias", "params_hash"):
            if not getattr(self, name):
                raise InvalidInput(f"cache scope needs a non-empty {name}", field=name)

    @property
    def key(self) -> str:
        extra = [f"embedding_model={self.embedding_model}"] if self.embedding_model else []
        return _sha256("scope/v1", self.tenant_id, self.prompt_hash, self.model_alias, self.params_hash, *extra)


# The request fields besides the conversation that change what a model answers. `user` and `context`
# are not here: `user` does not change the output, and the context has its own fingerprint.
_OUTPUT_PARAMS = ("temperature", "top_p", "max_tokens", "stop", "seed", "tools", "tool_choice", "response_format")
# Added later: keyed only when set, so that the keys of requests without them stay what they were.
_OUTPUT_PARAMS_WHEN_SET = ("parallel_tool_calls", "reasoning_effort", "service_tier", "passthrough")


def params_hash(request: ChatRequest) -> str:
    values = {k: getattr(request, k) for k in _OUTPUT_PARAMS}
    values.update({k: v for k in _OUTPUT_PARAMS_WHEN_SET if (v := getattr(request, k)) is not None})
    return _sha256("params/v1", _canonical_json(values))


def chunk_ref(chunk_id: int, document_version: int) -> str:
    """How a cited chunk is stored: chunk ids are never reused, and a new document version gets new ones."""
    return f"{chunk_id}@{document_version}"


def context_fingerprint(passages: Iterable[ContextPassage]) -> str:
    """Identity of the retrieved context, independent of its order. No passages (plain chat) is a
    fingerprint too, shared by every context-free request in the scope."""
    triples = sorted({(p.chunk_id, p.document_id, p.document_version) for p in passages})
    return _sha256("context/v1", _canonical_json(triples))


def exact_key(scope: CacheScope, question: str, fingerprint: str) -> str:
    return _sha256("exact/v1", scope.key, normalize_question(question), fingerprint)


def conversation_text(messages: list[Message]) -> str:
    """The question a cache entry is keyed on, for callers caching client conversations.

    A single user turn is its text. A longer conversation is its canonical serialisation, because earlier
    turns (and a client's own system message) change the answer; such conversations should be looked up
    exactly only (see `is_single_question`), since one embedding cannot stand for a whole dialogue.
    """
    if is_single_question(messages):
        return messages[0].text()
    turns = [m.model_dump(mode="json", exclude_none=True) for m in messages]
    return _canonical_json(turns)


def is_single_question(messages: list[Message]) -> bool:
    return len(messages) == 1 and messages[0].role == "user"


# Sentence embeddings barely move when a question flips its polarity or changes a number: on our
# labelled pairs "included" / "not included", "2023" / "2024" and "after" / "before" scored 0.97-0.99,
# above most true paraphrases (docs/cache.md). So a semantic hit also needs the same guard: the
# question's numbers and identifiers with digits, and which of a few closed word classes (negation,
# direction, extremes) it uses, each class folding its own synonyms. A paraphrase that words one of
# these differently just misses, which is the safe way to be wrong.
_GUARD_CLASSES: dict[str, re.Pattern[str]] = {
    name: re.compile(rf"\b(?:{pattern})\b")
    for name, pattern in {
        "not": r"not|no|never|none|nothing|cannot|without|\w+n't",
        "before": r"before|prior|earlier|until",
        "after": r"after|later|since",
        "max": r"max|maximum|most|highest|largest|biggest|longest|upper|over|above|more|exceed\w*",
        "min": r"min|minimum|least|lowest|smallest|shortest|lower|under|below|less|fewer",
        "enable": r"enabl\w*|activat\w*",
        "disable": r"disabl\w*|deactivat\w*",
        "include": r"includ\w*",
        "exclude": r"exclud\w*",
        "allow": r"allow\w*|permit\w*",
        "deny": r"den(?:y|ies|ied)|block\w*|forbid\w*|prohibit\w*",
    }.items()
}
_WITH_DIGIT = re.compile(r"[^\s,;:!?()\"']*\d[^\s,;:!?()\"']*")


def semantic_guard(question: str) -> str:
    """What two questions must share, besides a similar embedding, to share an answer."""
    text = normalize_question(question).replace("’", "'")
    numbers = sorted({t.rstrip(".") for t in _WITH_DIGIT.findall(text)})
    classes = [name for name, pattern in _GUARD_CLASSES.items() if pattern.search(text)]
    return _canonical_json([numbers, classes])
