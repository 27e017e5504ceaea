"""A sentence encoder shipped as an ONNX transformer: tokenize, run with onnxruntime, mean-pool, L2-normalise.

Each offline model is a small subclass naming its files (they ship inside registry packages: no hub
download). onnxruntime and tokenizers are imported on first use so they do not tax a handler's cold start.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from stratus.embeddings import runs_alongside

if TYPE_CHECKING:
    from onnxruntime import InferenceSession
    from tokenizers import Tokenizer


def package_dir(name: str) -> Path:
    """The folder of an installed package that carries model files."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed; it carries the embedding model files")
    return Path(next(iter(spec.submodule_search_locations)))


def existing(*paths: Path) -> tuple[Path, ...]:
    for p in paths:
        if not p.is_file():
            raise RuntimeError(f"embedding model file missing: {p}")
    return paths


class OnnxSentenceEncoder:
    model_name: str
    dimensions: int
    max_seq: ClassVar[int]  # tokens the model reads, [CLS] and [SEP] included
    hidden_output: ClassVar[str | None] = None  # the (batch, seq, dims) output; None: the first one
    batch_tokens: ClassVar[int] = 1024  # tokens (padding included) per inference run; docs/retrieval.md

    def __init__(self, threads: int | None = None) -> None:
        self.max_tokens = self.max_seq - 2  # room for [CLS] and [SEP]
        self._threads = threads or int(os.environ.get("OMP_NUM_THREADS", 0)) or (os.cpu_count() or 1)
        self._lock = threading.Lock()
        self._session: InferenceSession | None = None
        # One thread, for an embedding that runs beside other work of the request (runs_alongside): a
        # single query on every core fights that work for the CPU. Loaded on first such use.
        self._single: InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._raw_tokenizer: Tokenizer | None = None

    def files(self) -> tuple[Path, Path]:
        """(model.onnx, tokenizer.json)"""
        raise NotImplementedError

    def _load(self, single: bool = False) -> InferenceSession:
        """The session (`single`: the one-thread session), loading it and the tokenizer on first use."""
        with self._lock:
            session = self._single if single else self._session
            if session is not None:
                return session
            from tokenizers import Tokenizer

            session = self._new_session(1 if single else self._threads)
            if self._tokenizer is None:
                tokenizer = Tokenizer.from_file(str(self.files()[1]))
                tokenizer.enable_truncation(self.max_seq)
                tokenizer.no_padding()  # the file asks for 128-token padding; runs are padded to their longest
                self._input_names = {i.name for i in session.get_inputs()}
                self._output_names = [self.hidden_output] if self.hidden_output else None
                self._tokenizer = tokenizer
            if single:
                self._single = session
            else:
                self._session = session
            return session

    def _new_session(self, threads: int) -> InferenceSession:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(self.files()[0]), opts, providers=["CPUExecutionProvider"])

    def embed(self, texts: list[str], *, kind: str = "document") -> np.ndarray:
        # Symmetric models: questions and passages are embedded alike, so `kind` changes nothing.
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        session = self._load(single=runs_alongside())
        assert self._tokenizer is not None
        # unpadded: padding is per run below; one text skips the batch encoder's thread pool
        encodings = self._tokenizer.encode_batch(texts) if len(texts) > 1 else [self._tokenizer.encode(texts[0])]
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for run in self._runs([len(e.ids) for e in encodings]):
            out[run] = self._run(session, [encodings[i].ids for i in run])
        return out

    def _runs(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped into runs of similar length within a token budget, for any caller (ingestion
        sorts its batches; the gateway and the eval sampler do not): less padding, and the (batch, heads,
        seq, seq) attention tensors of a run stay a few MB. A text's vector does not depend on its
        neighbours, so the grouping changes no vector (tests/unit/test_embedding_models.py)."""
        runs: list[list[int]] = []
        for i in sorted(range(len(lengths)), key=lengths.__getitem__):
            if runs and (len(runs[-1]) + 1) * lengths[i] <= self.batch_tokens:
                runs[-1].append(i)
            else:
                runs.append([i])
        return runs

    def _run(self, session: InferenceSession, token_ids: list[list[int]]) -> np.ndarray:
        width = max(len(t) for t in token_ids)
        ids = np.zeros((len(token_ids), width), dtype=np.int64)  # [PAD] is id 0
        mask = np.zeros_like(ids)
        for row, t in enumerate(token_ids):
            ids[row, : len(t)] = t
            mask[row, : len(t)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden: np.ndarray = session.run(self._output_names, feeds)[0]  # (batch, seq, dims)
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: np.ndarray = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)  # numpy types this Any
        return unit

    def count_tokens(self, text: str) -> int:
        return len(self.token_offsets(text))

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        raw = self._load_raw_tokenizer()
        enc = raw.encode(text, add_special_tokens=False)
        return [(start, end) for start, end in enc.offsets]

    def _load_raw_tokenizer(self) -> Tokenizer:
        if self._raw_tokenizer is None:
            with self._lock:
                if self._raw_tokenizer is None:
                    from tokenizers import Tokenizer

                    raw = Tokenizer.from_file(str(self.files()[1]))
                    raw.no_truncation()
                    raw.no_padding()
                    self._raw_tokenizer = raw
        return self._raw_tokenizer
