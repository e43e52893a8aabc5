"""A compact fastText classifier that scores exactly as its full model, up to rounding.

A full supervised model is 1.6 GB for the four criteria, almost all of it hash buckets that no
training pair touched and that stay zero. fastText's own compaction (`.ftz`) prunes rows and then
skips a pruned n-gram when it averages a document's rows, where the full model averages it in as
the zero it is: 0.07-0.09 MAE on the 0-5 scale (BENCHMARKS.md). Here the rows that are not zero are
kept, each quantized to int8 with a float32 scale, and the full model's scoring is re-implemented
in numpy: its tokens, its FNV-1a word hashes and word n-gram buckets, the mean of the rows over
every id (a dropped zero row still counts), the softmax over the output matrix.

`CompactModel.predict` answers as fastText's does (labels and probabilities per line, most
probable first), so the code that scores and evaluates a fastText model takes either.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

EOS = "</s>"  # the end-of-line token fastText's predict appends
LABEL = "__label__"
_FNV_OFFSET, _FNV_PRIME = np.uint32(2166136261), np.uint32(16777619)
_NGRAM_PRIME = np.uint64(116049371)
_PADDED = 32  # tokens up to this many bytes are hashed column by column in numpy


def fnv1a(tokens: Sequence[str]) -> np.ndarray:
    """fastText's word hash, uint32 per token: FNV-1a over the UTF-8 bytes, each byte
    sign-extended first (fastText reads them as C++ `int8_t`)."""
    raw = [t.encode("utf-8") for t in tokens]
    lengths = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
    out = np.full(len(raw), _FNV_OFFSET, dtype=np.uint32)
    short = np.flatnonzero(lengths <= _PADDED)
    if len(short):
        buf = np.frombuffer(b"".join(raw[i].ljust(_PADDED, b"\0") for i in short), dtype=np.int8)
        signed = buf.reshape(len(short), _PADDED).astype(np.int32).view(np.uint32)
        h, n = out[short], lengths[short]
        with np.errstate(over="ignore"):
            for col in range(int(n.max(initial=0))):
                live = col < n
                h[live] = (h[live] ^ signed[live, col]) * _FNV_PRIME
        out[short] = h
    for i in np.flatnonzero(lengths > _PADDED):
        h = int(_FNV_OFFSET)
        for b in raw[i]:
            h = ((h ^ (b if b < 128 else b | 0xFFFFFF00)) * int(_FNV_PRIME)) & 0xFFFFFFFF
        out[i] = h
    return out


class Hashing:
    """fastText's ids for one dictionary, bucket count and n-gram length. The four criteria's
    models are trained on the same texts, so they share one (`share_hashing`): a batch is
    tokenized and hashed once for all four."""

    def __init__(self, words: Sequence[str], bucket: int, word_ngrams: int):
        self.words = list(words)
        self.vocab = {w: i for i, w in enumerate(self.words)}
        self.bucket, self.word_ngrams = int(bucket), int(word_ngrams)

    def key(self) -> tuple:
        return self.bucket, self.word_ngrams, tuple(self.words)

    def ids(self, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(line, id) of every row each line averages, as fastText's supervised getLine finds them."""
        tokens = [[t for t in line.replace("\0", " ").split() if not t.startswith(LABEL)] + [EOS] for line in lines]
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        distinct: dict[str, int] = {}
        at = np.fromiter((distinct.setdefault(t, len(distinct)) for ts in tokens for t in ts),
                         dtype=np.int64, count=int(lengths.sum()))
        word_id = np.fromiter((self.vocab.get(t, -1) for t in distinct), dtype=np.int64, count=len(distinct))[at]
        # A uint32 hash kept in an int32_t and read into a uint64_t: sign-extended.
        hashes = fnv1a(list(distinct)).view(np.int32).astype(np.int64).view(np.uint64)[at]
        line = np.repeat(np.arange(len(lines)), lengths)
        left = np.repeat(lengths, lengths) - (np.arange(len(at)) - np.repeat(np.cumsum(lengths) - lengths, lengths)) - 1
        known = word_id >= 0
        lines_out, ids_out = [line[known]], [word_id[known]]
        acc = hashes.copy()
        with np.errstate(over="ignore"):
            for k in range(1, self.word_ngrams):
                ok = np.flatnonzero(left >= k)
                acc = acc[: len(at) - k] * _NGRAM_PRIME + hashes[k:]
                lines_out.append(line[ok])
                ids_out.append(len(self.words) + (acc[ok] % np.uint64(self.bucket)).astype(np.int64))
        return np.concatenate(lines_out), np.concatenate(ids_out)

class CompactModel:
    def __init__(self, hashing: Hashing, row_ids: np.ndarray, codes: np.ndarray, scales: np.ndarray,
                 output: np.ndarray, labels: Sequence[str]):
        self.hashing, self.labels = hashing, list(labels)
        self.row_ids, self.codes, self.scales, self.output = row_ids, codes, scales, output

    @classmethod
    def from_fasttext(cls, model) -> "CompactModel":
        args = model.f.getArgs()
        if args.maxn > 0:
            raise ValueError("compact models re-implement word and word n-gram ids only, not character n-grams "
                             f"(this model has maxn {args.maxn})")
        matrix = model.get_input_matrix()
        row_ids = np.flatnonzero(np.any(matrix != 0, axis=1))
        rows = matrix[row_ids]
        scales = (np.abs(rows).max(axis=1) / 127).astype(np.float32)
        codes = np.round(rows / np.where(scales == 0, 1, scales)[:, None]).astype(np.int8)
        return cls(Hashing(model.get_words(), args.bucket, args.wordNgrams), row_ids.astype(np.int64), codes, scales,
                   model.get_output_matrix().astype(np.float32), model.get_labels())

    def save(self, path: Path) -> None:
        with open(path, "wb") as fh:  # a file object: numpy would add `.npz` to a bare name
            h = self.hashing
            np.savez_compressed(fh, words=np.array("\n".join(h.words)), labels=np.array("\n".join(self.labels)),
                                row_ids=self.row_ids, codes=self.codes, scales=self.scales, output=self.output,
                                shape=np.array([h.bucket, h.word_ngrams]))

    @classmethod
    def load(cls, path: Path) -> "CompactModel":
        with np.load(path, allow_pickle=False) as z:
            bucket, word_ngrams = (int(v) for v in z["shape"])
            return cls(Hashing(str(z["words"]).split("\n"), bucket, word_ngrams), z["row_ids"], z["codes"],
                       z["scales"], z["output"], str(z["labels"]).split("\n"))

    def probabilities(self, lines: Sequence[str], ids: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """P(label) per line (columns in `labels` order); `ids`: `self.hashing.ids(lines)`, when
        the caller has them already."""
        line, ids = self.hashing.ids(lines) if ids is None else ids
        at = np.searchsorted(self.row_ids, ids)
        at[at == len(self.row_ids)] = 0
        kept = self.row_ids[at] == ids
        rows = self.codes[at[kept]].astype(np.float32) * self.scales[at[kept], None]
        hidden = np.zeros((len(lines), self.codes.shape[1]), dtype=np.float32)
        order = np.argsort(line[kept], kind="stable")
        owners, starts = np.unique(line[kept][order], return_index=True)
        if len(owners):
            hidden[owners] = np.add.reduceat(rows[order], starts, axis=0)
        hidden /= np.maximum(np.bincount(line, minlength=len(lines)), 1)[:, None]
        logits = hidden @ self.output.T
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, lines: Sequence[str], k: int = 1) -> tuple[list[list[str]], list[np.ndarray]]:
        p = self.probabilities(lines)
        order = np.argsort(-p, axis=1, kind="stable")[:, : (p.shape[1] if k < 0 else k)]
        return ([[self.labels[j] for j in row] for row in order],
                [p[i, row] for i, row in enumerate(order)])


def share_hashing(models: Sequence[CompactModel]) -> None:
    """Give models with the same dictionary, bucket count and n-gram length one Hashing."""
    shared: dict[tuple, Hashing] = {}
    for model in models:
        model.hashing = shared.setdefault(model.hashing.key(), model.hashing)
