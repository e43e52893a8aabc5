"""Content-derived ids: the same inputs give the same id, so a re-run finds its own work."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def content_id(key: Any, length: int) -> str:
    """The first `length` hex digits of sha256 over `key` as canonical JSON."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:length]
