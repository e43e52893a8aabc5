"""Token pools: each super-cluster's documents tokenized once into parquet shards the proxy tasks
read, plus the target set, described by the `token_pools` table.

A pool is named by a hash of the super-clusters it covers, the tokenizer settings and the target
settings; when `token_pools` already lists that id, nothing is rebuilt. Shards live under
`{lakehouse.root}/token_pools/{pool_id}/` (shared storage on a cluster) and are written by Spark,
so no file passes through the driver's disk.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from climb_spark.config import Config, S3Config
from climb_spark.curated import (TargetOverlap, kept_documents, read_target, super_clusters, target_documents,
                                  target_filter, target_overlap, without_target_documents)
from climb_spark.errors import ConfigError, InputError
from climb_spark.ids import content_id, pool_id
from climb_spark.lakehouse import files
from climb_spark.lakehouse.delta import merge_insert_only
from climb_spark.lakehouse.tables import TOKEN_POOLS, Lakehouse
from climb_spark.lakehouse.tasks import worker_cached

EOS_NAMES = ("<|endoftext|>", "</s>", "<eos>", "[SEP]")
TARGET = -1


@dataclass(frozen=True)
class Pool:
    pool_id: str
    root: str
    vocab_size: int
    super_cluster_ids: tuple[int, ...]
    prior: tuple[float, ...]
    cluster_run_id: str
    target_kind: str
    # A file or choices target's documents found in the corpus (left out of the training pools).
    overlap: TargetOverlap | None = None
    # A digest of every token the pool holds (content.json): a rebuilt pool whose tokens differ
    # (documents added under the same clustering) names its proxies differently.
    content: str = ""
    # Each super-cluster's tokens as the tables count them (export's unit), for data availability.
    n_tokens: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        """What a proxy result depends on: the pool's id and its content."""
        return f"{self.pool_id}/{self.content}" if self.content else self.pool_id
    # The object store the pool's files are on, when they are (proxy tasks read them through it).
    s3: S3Config = S3Config()

    def train_path(self, super_cluster_id: int) -> str:
        return f"{self.root}/tokens/split=train/super_cluster_id={super_cluster_id}"

    @property
    def target_path(self) -> str:
        return f"{self.root}/choices" if self.target_kind == "choices" else \
            f"{self.root}/tokens/split=target/super_cluster_id={TARGET}"


def ensure(spark: SparkSession, cfg: Config, log=print) -> Pool:
    """The pool for the current super-clusters and settings, built if `token_pools` lacks it."""
    lake = Lakehouse(cfg.lakehouse)
    supers = super_clusters(spark, cfg)
    pid = pool_id(cfg, supers)
    root = f"{cfg.lakehouse.root.rstrip('/')}/token_pools/{pid}"
    table = lake.ensure(spark, TOKEN_POOLS)
    rows = spark.table(table).where(F.col("pool_id") == pid).collect()
    if not rows:
        rows = _build(spark, cfg, pid, root, supers, table, log)
    ids = tuple(int(s["super_cluster_id"]) for s in supers)
    return Pool(pid, root, int(rows[0]["vocab_size"]), ids, tuple(float(s["token_share"]) for s in supers),
                supers[0]["cluster_run_id"], cfg.target.kind, target_overlap(spark, cfg), content_digest(spark, root, cfg.s3),
                tuple(int(s["n_tokens"]) for s in supers), s3=cfg.s3)


def _build(spark: SparkSession, cfg: Config, pid: str, root: str, supers: list[dict], table: str, log) -> list:
    # A holdout target is a slice of these documents; a file or choices target's own documents, where
    # the corpus holds them too, are left out of every training pool.
    docs = (without_target_documents(kept_documents(spark, cfg), target_documents(spark, cfg))
            .withColumn("is_target", target_filter(cfg)))
    tokenizer = load_or_train_tokenizer(spark, cfg, docs.where(~F.col("is_target")))
    spec = tokenizer.to_str()
    eos = eos_id(tokenizer)
    parts = (docs.select(F.when(F.col("is_target"), "target").otherwise("train").alias("split"),
                         F.when(F.col("is_target"), TARGET).otherwise(F.col("super_cluster_id")).alias("super_cluster_id"),
                         "doc_id", "text")
             .repartition(max(8, len(supers)))
             .mapInPandas(lambda it: tokenize_batches(it, spec, eos),
                          "split string, super_cluster_id int, doc_id string, tokens array<int>"))
    if cfg.target.kind == "file":
        parts = parts.unionByName(_file_target(spark, cfg, tokenizer, eos))
    # Documents in a fixed order inside each shard, so a proxy reads the same tokens every time.
    (parts.repartition("split", "super_cluster_id").sortWithinPartitions("doc_id")
     .write.mode("overwrite").partitionBy("split", "super_cluster_id").parquet(f"{root}/tokens"))
    if cfg.target.kind == "choices":
        _choices_target(spark, cfg, tokenizer).coalesce(1).write.mode("overwrite").parquet(f"{root}/choices")
    counts = {(r["split"], r["super_cluster_id"]): (r["n_docs"], r["n_tokens"])
              for r in _summarize(spark, root, cfg.s3)[0]}
    if cfg.target.kind != "choices" and ("target", TARGET) not in counts:
        raise ConfigError(f"target: no documents match {_describe_target(cfg)}; widen target.source / "
                          "target.super_cluster or raise target.holdout_fraction")
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    records = [{"pool_id": pid, "split": "train", "super_cluster_id": int(s["super_cluster_id"]),
                "n_docs": int(counts.get(("train", s["super_cluster_id"]), (0, 0))[0]),
                "n_tokens": int(counts.get(("train", s["super_cluster_id"]), (0, 0))[1] or 0),
                "token_share": float(s["token_share"]), "vocab_size": tokenizer.get_vocab_size(),
                "path": f"{root}/tokens/split=train/super_cluster_id={s['super_cluster_id']}", "created_at": now}
               for s in supers]
    empty = [r["super_cluster_id"] for r in records if r["n_tokens"] == 0]
    if empty:
        why = ("the target was held out; lower target.holdout_fraction" if cfg.target.kind == "holdout" else
               "the target's own documents were left out (the target file holds all of theirs)")
        raise InputError(f"super-clusters {empty} have no training documents left after {why}")
    if cfg.target.kind != "choices":
        n_docs, n_tokens = counts[("target", TARGET)]
        records.append({"pool_id": pid, "split": "target", "super_cluster_id": TARGET, "n_docs": int(n_docs),
                        "n_tokens": int(n_tokens), "token_share": None,
                        "vocab_size": tokenizer.get_vocab_size(),
                        "path": f"{root}/tokens/split=target/super_cluster_id={TARGET}", "created_at": now})
    merge_insert_only(spark, table, spark.createDataFrame(records, TOKEN_POOLS.schema), TOKEN_POOLS.key)
    log(f"token pools {pid}: {len(supers)} super-clusters, "
        f"{sum(r['n_tokens'] for r in records if r['split'] == 'train'):,} training tokens of the proxies' BPE "
        f"tokenizer (vocab {tokenizer.get_vocab_size():,}; the tables and the export count words and punctuation), "
        f"target {_describe_target(cfg)}")
    return records


def content_digest(spark: SparkSession, root: str, s3: S3Config) -> str:
    """The digest of every token a pool holds, from `{root}/content.json` (written as it was built;
    a pool built before there was one gets it on first use)."""
    from pyarrow import fs as pafs

    filesystem, where = files.filesystem(f"{root}/content.json", s3)
    if filesystem.get_file_info(where).type != pafs.FileType.File:
        return _summarize(spark, root, s3)[1]
    with filesystem.open_input_stream(where) as f:
        return json.loads(f.read().decode("utf-8"))["digest"]


def _summarize(spark: SparkSession, root: str, s3: S3Config) -> tuple[list, str]:
    """Each split and super-cluster's documents and tokens, with their ids and tokens hashed
    (order-free: XOR of one hash per document), and the digest of it all, written to
    `{root}/content.json`."""
    from pyarrow import fs as pafs

    rows = (spark.read.parquet(f"{root}/tokens").groupBy("split", "super_cluster_id")
            .agg(F.count("*").alias("n_docs"), F.sum(F.size("tokens")).alias("n_tokens"),
                 F.bit_xor(F.xxhash64("doc_id", "tokens")).alias("hash"))
            .orderBy("split", "super_cluster_id").collect())
    summary = [[r["split"], r["super_cluster_id"], r["n_docs"], r["n_tokens"], r["hash"]] for r in rows]
    filesystem, where = files.filesystem(f"{root}/choices", s3)
    if filesystem.get_file_info(where).type == pafs.FileType.Directory:
        choices = spark.read.parquet(f"{root}/choices")
        summary.append(["choices", choices.count(), choices.agg(F.bit_xor(F.xxhash64(*choices.columns))).first()[0]])
    digest = content_id(summary, 16)
    files.write_text(f"{root}/content.json", json.dumps({"digest": digest, "parts": summary}), s3)
    return rows, digest


def _describe_target(cfg: Config) -> str:
    t = cfg.target
    if t.kind != "holdout":
        return f"{t.kind} {t.path}"
    filters = [f"{k}={v}" for k, v in (("source", t.source), ("super_cluster", t.super_cluster)) if v is not None]
    return f"{t.holdout_fraction:.0%} hash slice" + (" with " + ", ".join(filters) if filters else "")


def load_or_train_tokenizer(spark: SparkSession, cfg: Config, docs: DataFrame):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if cfg.proxy.tokenizer:
        return Tokenizer.from_file(cfg.proxy.tokenizer)
    texts = [r["text"] for r in docs.orderBy(F.xxhash64("doc_id")).limit(cfg.proxy.tokenizer_sample_docs)
             .select("text").collect()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.proxy.vocab_size, special_tokens=[EOS_NAMES[0]],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def eos_id(tokenizer) -> int:
    for name in EOS_NAMES:
        found = tokenizer.token_to_id(name)
        if found is not None:
            return found
    return 0


def tokenize(texts: list[str], tokenizer, eos: int) -> list[np.ndarray]:
    """Token ids of each text followed by EOS, so documents stay separated in a pool."""
    return [np.append(np.asarray(e.ids, dtype=np.int32), np.int32(eos))
            for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


def tokenize_batches(batches: Iterator[pd.DataFrame], spec: str, eos: int) -> Iterator[pd.DataFrame]:
    from tokenizers import Tokenizer

    tokenizer = worker_cached("tokenizer", hashlib.sha256(spec.encode()).hexdigest(), lambda: Tokenizer.from_str(spec))
    for batch in batches:
        yield pd.DataFrame({"split": batch["split"], "super_cluster_id": batch["super_cluster_id"],
                            "doc_id": batch["doc_id"], "tokens": tokenize(batch["text"].tolist(), tokenizer, eos)})


def _file_target(spark: SparkSession, cfg: Config, tokenizer, eos: int) -> DataFrame:
    texts = []
    for i, rec in enumerate(read_target(spark, cfg.target.path)):
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str) or not rec["text"].strip():
            raise ConfigError(f"target.path: record {i + 1} of {cfg.target.path} has no \"text\" string")
        texts.append(rec["text"])
    rows = [("target", TARGET, f"target-{i}", t.tolist()) for i, t in enumerate(tokenize(texts, tokenizer, eos))]
    return spark.createDataFrame(rows, "split string, super_cluster_id int, doc_id string, tokens array<int>")


def _choices_target(spark: SparkSession, cfg: Config, tokenizer) -> DataFrame:
    rows = []
    for i, rec in enumerate(read_target(spark, cfg.target.path)):
        ok = (isinstance(rec, dict) and isinstance(rec.get("context"), str) and isinstance(rec.get("choices"), list)
              and len(rec["choices"]) >= 2 and all(isinstance(c, str) and c for c in rec["choices"])
              and isinstance(rec.get("label"), int) and 0 <= rec["label"] < len(rec["choices"]))
        if not ok:
            raise ConfigError(f"target.path: item {i + 1} of {cfg.target.path} needs context (string), "
                              "choices (>= 2 strings) and label (an index into choices)")
        context = tokenizer.encode(rec["context"], add_special_tokens=False).ids
        choices = [tokenizer.encode(" " + c, add_special_tokens=False).ids for c in rec["choices"]]
        rows.append((i, context, choices, rec["label"]))
    return spark.createDataFrame(rows, "item int, context array<int>, choices array<array<int>>, label int")


def read_tokens(path: str, limit: int, s3: S3Config) -> np.ndarray:
    """The first `limit` tokens of a pool's shards (all of them if limit is 0), cached per worker."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    def load() -> np.ndarray:
        chunks, total = [], 0
        filesystem, where = files.filesystem(path, s3)
        for batch in ds.dataset(where, format="parquet", filesystem=filesystem).to_batches(columns=["tokens"]):
            flat = pc.list_flatten(batch.column(0)).to_numpy(zero_copy_only=False).astype(np.int32)
            chunks.append(flat)
            total += len(flat)
            if limit and total >= limit:
                break
        return np.concatenate(chunks)[: limit or None] if chunks else np.zeros(0, np.int32)

    return worker_cached("pool-tokens", (path, limit), load)


def read_choices(path: str, s3: S3Config) -> list[tuple[np.ndarray, list[np.ndarray], int]]:
    import pyarrow.dataset as ds

    filesystem, where = files.filesystem(path, s3)
    table = ds.dataset(where, format="parquet", filesystem=filesystem).to_table().to_pylist()
    return [(np.asarray(r["context"], np.int32), [np.asarray(c, np.int32) for c in r["choices"]], r["label"])
            for r in sorted(table, key=lambda r: r["item"])]
