"""glibc's heap, handed back: the one process-level memory control the stages use."""
from __future__ import annotations

import functools


@functools.cache
def _malloc_trim():
    import ctypes

    return getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc only


def release_free_heap() -> None:
    """Give every free page of the heap back to the system (glibc's malloc_trim; a no-op
    elsewhere). Two uses:
    - an embed worker, once per batch of documents: the activations torch frees stay in the heap,
      which the next batches fragment, so RSS climbed batch after batch (BENCHMARKS.md, worker
      memory). It costs nothing measurable there, unlike a fixed mmap threshold, which maps and
      zeroes every activation anew;
    - before a fastText training: it leaves most of its input matrix as malloc returns it, and a
      freed heap block's old bytes made training diverge to NaN or differ run to run. Pages given
      back read as zeros when reused, as a fresh mapping does."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
