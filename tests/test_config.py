import re
import subprocess
import sys

import pytest

from climb_spark.config import ConfigError, load
from tests.conftest import ROOT

LOCAL = ROOT / "conf" / "local.yaml"


def test_profiles_compose_and_set_overrides_win():
    cfg = load([LOCAL, ROOT / "conf" / "gpu.yaml"],
               ["embed.batch_size=512", "spark.conf.spark.sql.shuffle.partitions=64"])
    assert cfg.embed.batch_size == 512
    assert cfg.embed.max_seq_length == 512  # from the gpu overlay
    assert cfg.spark.master is None  # the overlay's null wins over local[*]
    assert cfg.spark.conf["spark.plugins"] == "com.nvidia.spark.SQLPlugin"
    assert cfg.spark.conf["spark.rapids.memory.gpu.pool"] == "NONE"
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == "64"
    assert cfg.spark.conf["spark.ui.enabled"] == "false"  # the base profile's keys stay


@pytest.mark.parametrize("profile", ["local", "gpu", "databricks", "emr"])
def test_every_shipped_profile_is_valid(profile):
    load([LOCAL, ROOT / "conf" / f"{profile}.yaml"])


@pytest.mark.parametrize("override, message", [
    ("ingest.txt_field=body", "ingest.txt_field: unknown key"),
    ("bogus.key=1", "bogus: unknown key"),
    ("embed.batch_size=big", "embed.batch_size: expected an integer, got str 'big'"),
    ("embed.batch_size=true", "embed.batch_size: expected an integer"),
    ("embed.normalize=1", "embed.normalize: expected true or false"),
    ("ingest.text_unit=sentence", "ingest.text_unit: must be one of file, paragraph, line"),
    ("lakehouse.schema=climb; DROP TABLE x", "lakehouse.schema: 'climb; DROP TABLE x' is not a valid identifier"),
    ("spark.jar_poms=conf/jars/pom.xml", "spark.jar_poms: expected a list"),
    ("embed.batch_size.x=1", "embed.batch_size: is not a section"),
    ("compare.methods=[climb, doremi-v2]", "compare.methods[1]: must be one of climb, climb-paper, regmix, doremi, random, uniform, token-prop"),
    ("search.budget=8", "search.budget: expected a list"),
    # Numbers that would reach Spark, torch or a file name as a traceback, or pass silently.
    ("proxy.steps=0", "proxy.steps: must be at least 1, got 0"),
    ("cluster.k=0", "cluster.k: must be at least 1, got 0"),
    ("export.shards=0", "export.shards: must be at least 1, got 0"),
    ("embed.batch_size=0", "embed.batch_size: must be at least 1, got 0"),
    ("spark.driver_java_options=[-Xss4m, Xmx2g]",
     "spark.driver_java_options: 'Xmx2g' is not one JVM option (a word starting with -)"),
    ("embed.chunk_docs=0", "embed.chunk_docs: must be at least 1, got 0"),
    ("annotate.timeout_s=-1", "annotate.timeout_s: must be positive, got -1.0"),
    ("quality.holdout_fraction=1", "quality.holdout_fraction: must be in [0, 1), got 1.0"),
    ("prune.paper_threshold=6", "prune.paper_threshold: a rubric score in [0, 5], got 6.0"),
    ("quality.bucket=0", "quality.bucket: must be at least 1 when quality.word_ngrams > 1"),
    # Not a number, or not one a setting can hold (issue 30: each passed validation).
    ("search.kappa=.nan", "search.kappa: must be a finite number, got nan"),
    ("proxy.lr=.inf", "proxy.lr: must be a finite number, got inf"),
    ("proxy.weight_decay=-1", "proxy.weight_decay: must not be negative, got -1.0"),
    ("cluster.k=100000000000000000000", "cluster.k: must be at most 2,147,483,647 (Spark's 32-bit integer)"),
    ("search.seed=2147483648", "search.seed: must be at most 2,147,483,647 (Spark's 32-bit integer)"),
    ("search.min_distance=3", "search.min_distance: must be in [0, 2], got 3.0"),
    ("search.min_cv_spearman=2", "search.min_cv_spearman: a Spearman correlation in [-1, 1], got 2.0"),
    # Ids reach MLflow filter strings and file names.
    ("search.search_id=x' or tags.`climb.role` = 'search",
     "search.search_id: \"x' or tags.`climb.role` = 'search\" is not a valid id"),
    ("export.search_id=../../etc", "export.search_id: '../../etc' is not a valid id"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        load([LOCAL], [override])


def _numeric_keys() -> list[tuple[str, type, int | None, bool, float]]:
    """(dotted key, int or float, an integer's upper bound, whether a list, a value below its range)
    of every number setting."""
    import dataclasses
    import typing

    from climb_spark.config import DEFAULT_BOUNDS, INT32_MAX, Config

    out = []
    sections = typing.get_type_hints(Config)
    for section in dataclasses.fields(Config):
        hints = typing.get_type_hints(sections[section.name])
        for f in dataclasses.fields(sections[section.name]):
            tp = next(a for a in (typing.get_args(hints[f.name]) or [hints[f.name]]) if a is not type(None))
            is_list = typing.get_origin(tp) is list
            kind = typing.get_args(tp)[0] if is_list else tp
            if kind in (int, float):
                bounds = f.metadata.get("bounds", DEFAULT_BOUNDS)
                out.append((f"{section.name}.{f.name}", kind, int(bounds.hi or INT32_MAX) if kind is int else None,
                            is_list, (bounds.lo or 0) - 2))
    return out


@pytest.mark.parametrize("key, kind, hi, is_list, below", _numeric_keys(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_number_setting_is_checked_as_a_number(key, kind, hi, is_list, below):
    """NaN and infinities pass any check written as a comparison and then decide a choice (a NaN
    search.kappa returned the first mixture tried); integers past 2^31-1 failed inside a Spark job."""
    bad = [".nan", ".inf", "-.inf", str(below)] if kind is float else [str(hi + 1), "-1", "1.5"]
    for value in bad:
        with pytest.raises(ConfigError, match="^" + re.escape(f"{key}[0]" if is_list else key) + ": "):
            load([LOCAL], [f"{key}={f'[{value}]' if is_list else value}"])
    assert len(_numeric_keys()) > 80  # the walk found the settings


def test_missing_profile_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such profile file"):
        load([tmp_path / "nope.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("spark: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load([bad])


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "climb_spark", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_cli_config_errors_are_one_line_exit_2(tmp_path):
    done = _cli("ingest", "--conf", str(LOCAL), "--set", "ingest.text_fild=body")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "climb-spark: config error: ingest.text_fild: unknown key (known here: input, long_docs, max_doc_chars, "
        "reject_sample_chars, source_field, split_bytes, text_field, text_unit)"]


def test_cli_missing_input_fails_before_spark(tmp_path):
    done = _cli("ingest", "--conf", str(LOCAL), "--set", f"ingest.input={tmp_path}/absent",
                "--set", f"lakehouse.root={tmp_path}/lake")
    assert done.returncode == 2
    assert done.stderr.strip() == f"climb-spark: config error: ingest.input: no such path: {tmp_path}/absent"
    assert not (tmp_path / "lake").exists()  # nothing written


def test_cli_missing_jars_is_a_config_error(tmp_path):
    (tmp_path / "in").mkdir()
    done = _cli("ingest", "--conf", str(LOCAL), "--set", f"spark.jars_dir={tmp_path}/nojars",
                "--set", f"ingest.input={tmp_path}/in", "--set", f"lakehouse.root={tmp_path}/lake")
    assert done.returncode == 2
    assert "spark.jars_dir: no jars in" in done.stderr and "resolve-jars" in done.stderr


def test_cli_embed_without_quality_models_fails_before_spark(tmp_path):
    done = _cli("embed", "--conf", str(LOCAL), "--set", f"quality.model_dir={tmp_path}/none",
                "--set", f"lakehouse.root={tmp_path}/lake")
    assert done.returncode == 3  # a precondition, not a setting: the models are not trained yet
    assert done.stderr.strip() == (
        f"climb-spark: precondition: embed reads documents and quality models in {tmp_path}/none, which do not "
        "exist yet: run `climb-spark ingest` and the stages after it first")
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize("overrides, message", [
    (["search.budget=[]"], "search.budget: needs one or more positive batch sizes"),
    (["search.budget=[8, 0]"], "search.budget: needs one or more positive batch sizes"),
    (["search.folds=1"], "search.folds: must be at least 2, got 1"),
    (["search.min_cv_spearman=2"], "search.min_cv_spearman: a Spearman correlation in [-1, 1]"),
    (["search.final=best"], "search.final: must be one of evaluated, robust, argmax, top-mean"),
    (["proxy.kind=command"], "proxy.command: required with proxy.kind=command"),
    (["search.method=doremi", "proxy.kind=command", "proxy.command=[echo]"],
     "search.method: doremi trains the built-in proxy (proxy.kind=torch)"),
    (["target.kind=file"], "target.path: required with target.kind=file"),
    (["proxy.d_model=30", "proxy.n_heads=4"], "proxy.d_model: must be a multiple of proxy.n_heads"),
    (["target.holdout_fraction=1.5"], "target.holdout_fraction: must be in (0, 1), got 1.5"),
    (["mlflow.tracking_uri=http://127.0.0.1:9"], "mlflow.tracking_uri: cannot reach http://127.0.0.1:9 ("),
])
def test_cli_search_settings_fail_before_spark(tmp_path, overrides, message):
    sets = [a for o in overrides + [f"lakehouse.root={tmp_path}/lake"] for a in ("--set", o)]
    done = _cli("search", "--conf", str(LOCAL), *sets)
    assert done.returncode == 2
    assert done.stderr.strip().startswith(f"climb-spark: config error: {message}")
    assert not (tmp_path / "lake").exists()


def test_every_default_path_lives_under_the_lakehouse_root():
    moved = load([LOCAL], ["lakehouse.root=/data/lake"])
    assert moved.mlflow.tracking_uri == "sqlite:////data/lake/mlflow.db"
    assert (moved.mlflow.artifact_location, moved.quality.model_dir, moved.export.output, moved.corpus.output,
            moved.ingest.input) == ("/data/lake/mlartifacts", "/data/lake/models/quality", "/data/lake/export",
                                    "/data/lake/raw/sample_corpus", "/data/lake/raw/sample_corpus")
    assert moved.report.output == "/data/lake/report.html"
    # replace() re-derives from a new root; an explicit path stays where it was put.
    again = moved.replace({"lakehouse.root": "/other", "export.output": "/shards"})
    assert again.quality.model_dir == "/other/models/quality" and again.export.output == "/shards"
    assert again.replace({"lakehouse.root": "/third"}).export.output == "/shards"
    assert load([LOCAL], ["lakehouse.root=/data/lake", "quality.model_dir={root}/q"]).quality.model_dir == \
        "/data/lake/q"


def test_a_remote_root_needs_a_tracking_server_and_mlflow_artifacts_it_can_write():
    with pytest.raises(ConfigError, match="mlflow.tracking_uri: lakehouse.root s3://b/lake is not a local folder"):
        load([LOCAL], ["lakehouse.root=s3://b/lake"])
    cfg = load([LOCAL], ["lakehouse.root=s3://b/lake", "mlflow.tracking_uri=http://mlflow:5000"])
    assert cfg.export.output == "s3://b/lake/export" and cfg.mlflow.artifact_location == "s3://b/lake/mlartifacts"
    assert cfg.quality.model_dir == "s3://b/lake/models/quality"  # written and read through the files layer
    # MLflow writes its artifacts itself, and knows s3:// but not Hadoop's s3a://.
    with pytest.raises(ConfigError, match=r"mlflow.artifact_location: s3a://b/lake/mlartifacts: .* set it to null"):
        load([LOCAL], ["lakehouse.root=s3a://b/lake", "mlflow.tracking_uri=http://mlflow:5000"])
    s3 = load([LOCAL, ROOT / "conf" / "s3.yaml"])
    assert s3.mlflow.artifact_location is None and s3.ingest.input == "s3a://climb/lakehouse/raw/sample_corpus"
    with pytest.raises(ConfigError, match="s3.endpoint: 'localhost:9000' is not a store's URL"):
        load([LOCAL, ROOT / "conf" / "s3.yaml"], ["s3.endpoint=localhost:9000"])
