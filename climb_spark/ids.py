"""Content-derived ids: the same inputs give the same id, so a re-run finds its own work."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from climb_spark.config import Config


def content_id(key: Any, length: int) -> str:
    """The first `length` hex digits of sha256 over `key` as canonical JSON."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:length]


_NOT_FIT = ("refit", "refit_drift", "refit_share")  # when to fit again, not how


def cluster_fit_id(cfg: Config, features_version: int) -> str:
    """A clustering's id: the cluster settings and the doc_features version it was fitted on."""
    settings = {k: v for k, v in dataclasses.asdict(cfg.cluster).items() if k not in _NOT_FIT}
    key = {"cluster": settings, "normalize": cfg.embed.normalize, "features": features_version}
    return content_id(key, 12)


def fitted_version(cfg: Config, fit_id: str, features_version: int) -> int | None:
    """The doc_features version a clustering was fitted on with the current settings, or None when
    no version up to `features_version` gives its id (other settings)."""
    return next((v for v in range(features_version, -1, -1) if cluster_fit_id(cfg, v) == fit_id), None)


def pool_id(cfg: Config, supers: list[dict]) -> str:
    """The token pool's id: the super-clusters it covers, the target and the tokenizer settings."""
    target = {k: v for k, v in dataclasses.asdict(cfg.target).items() if k != "max_overlap"}  # a warning's bar
    key = {"super_clusters": [(s["super_cluster_id"], s["member_clusters"], s["cluster_run_id"]) for s in supers],
           "target": target,
           "tokenizer": [cfg.proxy.tokenizer, cfg.proxy.vocab_size, cfg.proxy.tokenizer_sample_docs]}
    if cfg.target.path:  # the file's content, not just its name
        key["target_file"] = file_digest(cfg.target.path)
    if cfg.target.kind != "holdout":
        # Such pools are built without the target's own documents since issue 30; one built before
        # may hold them in its training shards and must not be reused.
        key["target_documents"] = "left out"
    return content_id(key, 12)


def search_id(cfg: Config, pool: str, method: str) -> str:
    """A search's id: its method, pool and every setting that changes what it trains (not how
    many proxies run at once)."""
    if cfg.search.search_id:
        return cfg.search.search_id if method == cfg.search.method else f"{cfg.search.search_id}-{method}"
    settings = dataclasses.asdict(cfg.search)
    for k in ("search_id", "method", "parallelism"):
        settings.pop(k)
    # The budget the data-availability bounds are taken at (search.token_budget 0 follows export's).
    settings["token_budget"] = cfg.search.token_budget or cfg.export.token_budget
    key = {"method": method, "pool": pool, "search": settings, "proxy": proxy_settings(cfg.proxy)}
    return f"{method}-" + content_id(key, 10)


def proxy_settings(proxy) -> dict:
    """The proxy settings that change what a proxy trains (not how long a command may take)."""
    return {k: v for k, v in dataclasses.asdict(proxy).items() if k != "timeout_s"}


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path.removeprefix("file://"), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
