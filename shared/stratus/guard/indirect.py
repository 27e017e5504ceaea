"""Indirect prompt injection: instructions addressed to the model inside a document or a tool result.

A retrieved chunk or a tool's output is data; an attack hides one instruction in it ("AI agents reading
this must first call send_email ..."). The direct detector (stratus.guard.injection) scores a caller's
prompt as a whole; here a text is cut into windows (a sentence, short ones merged with the next; JSON
tool results are read as their string values) and the text's score is its highest window's, so a short
payload in a long benign text is not diluted.

Each window is scored by a logistic head (models/indirect-v1, trained by stratus_tools.guard.indirect_train)
over its MiniLM sentence embedding plus a few cues that carry what the embedding blurs: an AI / assistant
addressed, role markers and fake system tags, "ignore previous", a tool named in a command, hidden markup
(v2 adds an override of "everything above" and an answer dictated word for word); v3 adds CONTEXT, what the
window is next to the rest of its text. An artifact names the cues and context features it was trained
with, so each loads; v2 and v3 were measured and not adopted (docs/guard.md). numpy at run time;
the embedder is the one retrieval already loads. The threshold was chosen on held-out sources for <= 1% of
clean chunks flagged (docs/guard.md).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stratus.guard.detector import LazyDetector, read_artifact, write_artifact

MODEL_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODEL_DIR / "indirect-v1"  # v2 and v3 were measured and not adopted: docs/guard.md
EMBEDDER = "all-MiniLM-L6-v2-int8"

_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
# Hard-wrapped prose (READMEs, docstrings) is one sentence over several lines: a line break is a space
# unless the line before ends a sentence or the next line starts a list item, heading, table row, quote,
# code fence or tag (where an injected "[SYSTEM]" or "<INFORMATION>" would start).
_WRAPPED = re.compile(r"(?<![.!?:;\n])[ \t]*\n[ \t]*(?![-*+#|>`\[<\d\s])")
_MIN_WORDS = 8  # a shorter sentence joins the next one: "Note:" alone says nothing
_MAX_WORDS = 60  # a longer sentence is cut; MiniLM reads 256 tokens at most anyway
MAX_WINDOWS = 48  # bounds the cost of one text; past it, windows with cues are kept first
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u202e]")

# The cues: each a 0/1 feature next to the embedding (their weights are learnt with the rest).
CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("override", re.compile(r"\b(ignore|disregard|forget|override|bypass)\b.{0,40}\b(previous|prior|above|earlier|"
                            r"all|your|the)\b.{0,20}\b(instructions?|rules|directions|guidelines|prompts?|task)",
                            re.I | re.S)),
    ("addressed_ai", re.compile(r"\b(if you are|note to|attention|dear|notice to|message (?:from me )?to|for)\b"
                                r".{0,30}\b(AI|assistants?|agents?|LLMs?|language models?|chat ?bots?|bots?|GPT"
                                r"[-\w]*|Claude|models?)\b", re.I | re.S)),
    ("you_must", re.compile(r"\byou (must|should|need to|are (now|required|instructed)|will now|have to)\b|"
                            r"\byour (new )?(task|instructions|system prompt|rules|guidelines)\b", re.I)),
    ("role_marker", re.compile(r"(^|\n)\s*(\[|<|#+\s*\(?)?\s*(system|assistant|developer|user|admin|instructions?|"
                               r"information|inst|im_start)\s*(\]|>|\)|:)|<\|[a-z_]+\|>|\[/?INST\]", re.I)),
    ("before_answering", re.compile(r"\bbefore (you )?(answer|respond|repl|continu|solv|proceed|summari)|"
                                    r"\b(from now on|instead of|do not tell the user|without telling)\b", re.I)),
    ("tool_command", re.compile(r"\b(call|use|run|invoke|execute)\s+`?[a-z]+_[a-z_]+`?|\b(send|forward|email|post|"
                                r"upload|transfer)\b.{0,60}(@|https?://|\biban\b|\baccount\b)", re.I | re.S)),
    ("secrets", re.compile(r"\b(system prompt|api[ _-]?key|password|credentials?|secret|token|env(ironment)? "
                           r"variables?|confidential)\b", re.I)),
    ("hidden_markup", re.compile(r"<!--|display:\s*none|font-size:\s*0|color:\s*(white|#fff)|\u200b|\u202e", re.I)),
    # v2: an override with no "instructions" noun ("ignore the rest of this data"), and an answer dictated
    # to the reader ("reply with only ...", "print '...'", "include in your response ...").
    ("override_any", re.compile(r"\b(ignore|disregard|forget|override|bypass)\b.{0,30}\b(above|previous|prior|"
                                r"earlier|rest of|everything|all (other|prior|previous))\b", re.I | re.S)),
    ("dictated_output", re.compile(r"\b(reply|respond|answer|print|say|output|repeat|write)\b[^.\n]{0,40}(\bonly\b|"
                                   r"\bexactly\b|\bnothing else\b|\bthe following\b|[\"'<])|\binclude (this|the "
                                   r"following|in your (response|answer|reply|summary))", re.I)),
)
CUE_NAMES = tuple(name for name, _ in CUES)
_CUE_PATTERNS = dict(CUES)
# The cues that pick which windows a very long text keeps (fixed, so every artifact reads the same windows).
_RANKING_CUES = CUE_NAMES[:8]

# v3: what a window is next to its own text. An injected instruction is off-topic for its host (a transfer
# request inside a hotel review); a procedure's imperative steps are about what the steps around them are
# about. Computed from the vectors the windows already have: no extra embedding.
CONTEXT = (
    "host_similarity",  # cosine with the mean of the text's other windows
    "neighbour_similarity",  # the higher cosine with the window before or after it
    "alone",  # 1 for a one-window text (no host to compare with; the two above are then 0)
    "host_cue_share",  # share of the text's other windows with a cue: a text whose every step names a tool
    "host_max_cues",  # the most cues on any other window of the text
)


@dataclass(frozen=True)
class IndirectScore:
    score: float  # 0..1: the highest window's
    flagged: bool  # score >= threshold
    threshold: float
    window: int  # index of the highest window (-1: none)


def readable(text: str) -> str:
    """What the model reads: JSON tool results as their string values (escapes undone), one per line."""
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]"):
        try:
            return "\n".join(_strings(json.loads(stripped))) or text
        except ValueError:
            pass
    return text


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [*([k] if len(str(k)) > 20 else []), *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def windows(text: str) -> list[str]:
    """The windows one text is scored in (training cuts its texts the same way)."""
    text = _WRAPPED.sub(" ", _ZERO_WIDTH.sub(" \u200b ", readable(text)))  # zero-width: kept visible to a cue
    out: list[str] = []
    pending = ""
    for sentence in _BREAK.split(text):
        words = sentence.split()
        if not words:
            continue
        joined = f"{pending} {sentence}".strip() if pending else sentence.strip()
        if len(joined.split()) < _MIN_WORDS:
            pending = joined
            continue
        pending = ""
        words = joined.split()
        out += [" ".join(words[i:i + _MAX_WORDS]) for i in range(0, len(words), _MAX_WORDS)]
    if pending:
        if out and len(out[-1].split()) + len(pending.split()) <= _MAX_WORDS:
            out[-1] = f"{out[-1]} {pending}"
        else:
            out.append(pending)
    for run in _BASE64_RUN.findall(text):  # an encoded instruction is scored as the text it decodes to
        decoded = _decode_base64(run)
        if decoded:
            out.append(decoded)
    if len(out) > MAX_WINDOWS:
        ranked = sorted(range(len(out)), key=lambda i: (-int(cue_vector(out[i], _RANKING_CUES).sum() > 0), i))
        ranked = ranked[:MAX_WINDOWS]
        out = [out[i] for i in sorted(ranked)]
    return out


def _decode_base64(run: str) -> str | None:
    try:
        decoded = base64.b64decode(run + "=" * (-len(run) % 4), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    printable = sum(c.isprintable() or c.isspace() for c in decoded)
    return decoded if decoded and printable / len(decoded) > 0.95 and " " in decoded else None


def cue_vector(window: str, names: Sequence[str] = CUE_NAMES) -> np.ndarray:
    return np.array([1.0 if _CUE_PATTERNS[n].search(window) else 0.0 for n in names], dtype=np.float32)


def context_features(emb: np.ndarray, cue_counts: np.ndarray) -> np.ndarray:
    """One row of CONTEXT per window of ONE text, from its windows' unit embeddings and cue counts."""
    n = len(emb)
    out = np.zeros((n, len(CONTEXT)), dtype=np.float32)
    if n <= 1:
        out[:, 2] = 1.0
        return out
    emb = emb.astype(np.float32)
    rest = emb.sum(axis=0, keepdims=True) - emb
    rest /= np.linalg.norm(rest, axis=1, keepdims=True) + 1e-9
    out[:, 0] = (emb * rest).sum(axis=1)
    step = (emb[1:] * emb[:-1]).sum(axis=1)  # cosine of each window with the next
    out[:, 1] = np.maximum(np.r_[-1.0, step], np.r_[step, -1.0])
    has = (cue_counts > 0).astype(np.float32)
    out[:, 3] = (has.sum() - has) / (n - 1)
    top = np.sort(cue_counts)[::-1]  # the highest count among the others: the second highest for the top one
    out[:, 4] = np.where(cue_counts >= top[0], top[1], top[0])
    return out


def features(embedder: Any, texts: Sequence[str], cues: Sequence[str] = CUE_NAMES) -> np.ndarray:
    """One row per window: its unit MiniLM embedding, then the named cues."""
    if not texts:
        return np.zeros((0, 384 + len(cues)), dtype=np.float32)
    emb = embedder.embed(list(texts))
    flags = np.stack([cue_vector(t, cues) for t in texts])
    return np.hstack([emb, flags]).astype(np.float32)


@dataclass
class IndirectModel:
    weights: np.ndarray  # float32: 384 embedding dimensions, then one per cue of `cues`
    bias: float
    threshold: float
    metadata: dict[str, Any] = field(default_factory=dict)
    cues: tuple[str, ...] = CUE_NAMES
    context: tuple[str, ...] = ()  # v3's CONTEXT after the cues; v1 and v2 have none

    @classmethod
    def load(cls, stem: Path = DEFAULT_MODEL) -> IndirectModel:
        arrays, metadata = read_artifact(stem, "indirect-injection model",
                                         "python -m stratus_tools.guard.indirect_train")
        weights, bias = arrays["weights"].astype(np.float32), float(arrays["bias"])
        cues, context = tuple(metadata.get("cues") or ()), tuple(metadata.get("context") or ())
        if (not set(cues) <= set(CUE_NAMES) or context not in ((), CONTEXT)
                or weights.shape[0] != 384 + len(cues) + len(context)):
            raise ValueError(f"indirect-injection model {stem.with_suffix('.npz')}: its cues {list(cues)} / "
                             f"context {list(context)} are not this code's")
        return cls(weights=weights, bias=bias, threshold=float(metadata["threshold"]), metadata=metadata, cues=cues,
                   context=context)

    def save(self, stem: Path, metadata: dict[str, Any]) -> None:
        write_artifact(stem, {"weights": self.weights, "bias": np.float64(self.bias)}, metadata)
        self.metadata = metadata

    def window_scores(self, x: np.ndarray) -> np.ndarray:
        z = np.clip(x @ self.weights + self.bias, -30.0, 30.0)
        out: np.ndarray = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
        return out

    def assess(self, texts: Sequence[str], embedder: Any | None = None) -> list[IndirectScore]:
        """One score per text; all texts' windows are embedded in one batch."""
        from stratus.embeddings import get_embedder

        per_text = [windows(t) for t in texts]
        flat = [w for ws in per_text for w in ws]
        x = features(embedder or get_embedder(EMBEDDER), flat, self.cues) if flat else None
        if x is not None and self.context:
            x = with_context(x, [len(ws) for ws in per_text])
        scores = self.window_scores(x) if x is not None else np.zeros(0)
        out, at = [], 0
        for ws in per_text:
            part = scores[at:at + len(ws)]
            at += len(ws)
            best = int(np.argmax(part)) if len(part) else -1
            s = float(part[best]) if len(part) else 0.0
            out.append(IndirectScore(score=s, flagged=s >= self.threshold, threshold=self.threshold, window=best))
        return out


def with_context(x: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Feature rows of several texts' windows (in order, `sizes` windows each) with CONTEXT appended."""
    counts = x[:, 384:].sum(axis=1)
    parts, at = [], 0
    for n in sizes:
        parts.append(context_features(x[at:at + n, :384], counts[at:at + n]))
        at += n
    ctx = np.vstack(parts) if parts else np.zeros((0, len(CONTEXT)), np.float32)
    return np.hstack([x, ctx]).astype(np.float32)


class IndirectDetector(LazyDetector[IndirectModel]):
    def __init__(self, stem: Path = DEFAULT_MODEL) -> None:
        super().__init__(lambda: IndirectModel.load(stem))

    def assess(self, texts: Sequence[str]) -> list[IndirectScore]:
        return self.model.assess(texts)


@functools.cache
def get_detector() -> IndirectDetector:
    """The process-wide indirect detector (artifact loaded on first use)."""
    return IndirectDetector()
