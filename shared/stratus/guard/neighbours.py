"""A second opinion for the direct-injection detector: how the texts nearest to a message were labelled.

A linear head draws one boundary through the embedding space; attacks come in families (templates,
personas, payload styles) that sit in pockets of their own, and benign chat has pockets that lie near
attack families ("Who are you?"). The bank holds the detector's own training texts as MiniLM vectors with
their labels; a message's neighbour score is the weighted share of attacks among its `k` nearest, each
neighbour weighing exp(cosine / temperature) times its row weight (each (source, label) group of the
training data weighs the same, and attacks and benign texts half each, as in the head's fit). The
detector mixes it with the head's probability (`alpha`). Built by
`python -m stratus_tools.guard.train_neighbours`; docs/guard.md ("injection-v7").

Stored compactly for the functions' layers: PCA coordinates (int8, one scale) with the basis and mean.
Similarities are computed in the PCA space (a query is projected once; each bank row's norm is computed
once, on first use), exactly as against the rebuilt vectors but reading a third of the memory per query:
the product is memory-bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stratus.guard import blas

CHUNK = 32  # query rows per similarity block: the (rows x bank) scores and their partial sort stay ~10 MB


@dataclass
class NeighbourBank:
    basis: np.ndarray  # (dims, 384) float32: the PCA directions
    mean: np.ndarray  # (384,) float32
    codes: np.ndarray  # (rows, dims) int8
    scale: float  # codes * scale are the PCA coordinates
    labels: np.ndarray  # (rows,) int8: 1 attack, 0 benign
    weights: np.ndarray  # (rows,) float32: each (source, label) group weighs the same
    k: int
    temperature: float
    # (coordinates as float32, 1 / the rebuilt vector's norm), computed on first use
    _prepared: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @classmethod
    def build(cls, vectors: np.ndarray, labels: np.ndarray, weights: np.ndarray, dims: int, k: int,
              temperature: float) -> NeighbourBank:
        """Compress unit vectors to `dims` PCA coordinates in int8."""
        mean = vectors.mean(axis=0)
        _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
        basis = vt[:dims].astype(np.float32)
        coords = (vectors - mean) @ basis.T
        scale = float(np.abs(coords).max() / 127.0)
        codes = np.clip(np.round(coords / scale), -127, 127).astype(np.int8)
        return cls(basis, mean.astype(np.float32), codes, scale, labels.astype(np.int8),
                   weights.astype(np.float32), k, temperature)

    @classmethod
    def load(cls, path: Path, k: int, temperature: float) -> NeighbourBank:
        """The bank, prepared for scoring (0.1-0.2 s here, once, outside the BLAS lock scoring takes)."""
        if not path.is_file():
            raise FileNotFoundError(f"neighbour bank missing: {path} (python -m stratus_tools.guard.train_neighbours)")
        with np.load(path) as a:
            bank = cls(a["basis"], a["mean"], a["codes"], float(a["scale"]), a["labels"], a["weights"], k,
                       temperature)
        bank._prepare()
        return bank

    def save(self, path: Path) -> None:
        np.savez_compressed(path, basis=self.basis, mean=self.mean, codes=self.codes,
                            scale=np.float64(self.scale), labels=self.labels, weights=self.weights)

    @property
    def vectors(self) -> np.ndarray:
        """The bank's rows rebuilt as unit vectors in the embedding space (what the similarities equal)."""
        coords, inv_norms = self._prepare()
        rebuilt: np.ndarray = (coords @ self.basis + self.mean) * inv_norms[:, None]
        return rebuilt

    def _prepare(self) -> tuple[np.ndarray, np.ndarray]:
        if self._prepared is None:
            coords = self.codes.astype(np.float32) * np.float32(self.scale)
            norms = np.linalg.norm(coords @ self.basis + self.mean, axis=1)
            self._prepared = (coords, (1.0 / np.clip(norms, 1e-12, None)).astype(np.float32))
        return self._prepared

    def with_params(self, k: int, temperature: float) -> NeighbourBank:
        """The same rows read with another k / temperature (the training grid), sharing what was prepared."""
        return NeighbourBank(self.basis, self.mean, self.codes, self.scale, self.labels, self.weights, k,
                             temperature, self._prepare())

    def similarities(self, embeddings: np.ndarray) -> np.ndarray:
        """Cosine of each row of `embeddings` (unit vectors) with each rebuilt bank row: q.(c B + m) / |c B + m|,
        as (q B^T).c + q.m, so the product reads the small coordinates, not 384 floats a row."""
        coords, inv_norms = self._prepare()
        q = embeddings.astype(np.float32)
        sim: np.ndarray = ((q @ self.basis.T) @ coords.T + (q @ self.mean)[:, None]) * inv_norms
        return sim

    def attack_share(self, embeddings: np.ndarray) -> np.ndarray:
        """Per row of `embeddings` (unit vectors): the weighted share of attacks among its k nearest rows."""
        k = min(self.k, len(self.labels))
        out = np.zeros(len(embeddings))
        for start in range(0, len(embeddings), CHUNK):
            with blas.one_thread():  # a small product: a second BLAS thread only fights the embedder for the CPU
                sim = self.similarities(embeddings[start : start + CHUNK])
            idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            near = np.take_along_axis(sim, idx, axis=1)
            # subtract each row's best before exp: the same ratios, no overflow at a small temperature
            w = self.weights[idx] * np.exp((near - near.max(axis=1, keepdims=True)) / self.temperature)
            out[start : start + CHUNK] = (w * self.labels[idx]).sum(axis=1) / np.clip(w.sum(axis=1), 1e-30, None)
        return out
