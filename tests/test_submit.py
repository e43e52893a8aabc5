"""The deployment specs, checked offline and without Spark: the Databricks bundle (databricks.yml)
against the pipeline's stages, the CLI, the profiles and Databricks' own typed job model
(databricks-bundles), and the spark-submit command `climb-spark submit-command` prints for EMR."""
import copy
import fnmatch
import importlib.metadata
import re
import shlex

import pytest
import yaml
from databricks.bundles.jobs import Job

from climb_spark import submit
from climb_spark.cli import _parser
from climb_spark.config import load
from climb_spark.pipeline import STAGES
from tests.conftest import ROOT

BUNDLE = yaml.safe_load((ROOT / "databricks.yml").read_text(encoding="utf-8"))
JOB = BUNDLE["resources"]["jobs"]["climb_pipeline"]
TASKS = JOB["tasks"]
CLUSTERS = {c["job_cluster_key"]: c["new_cluster"] for c in JOB["job_clusters"]}
DATABRICKS = ROOT / "conf" / "databricks.yaml"
GPU = ROOT / "conf" / "gpu.yaml"
EMR = ROOT / "conf" / "emr.yaml"
REF = re.compile(r"\$\{([^}]+)\}")


def resolve(value: str, **variables: str) -> str:
    """Substitute the bundle's ${...} references as `databricks bundle deploy` would: the bundle's
    variables (defaults unless given) and the workspace folder its files are synced to."""
    env = {f"var.{k}": v["default"] for k, v in BUNDLE["variables"].items()}
    env.update({f"var.{k}": v for k, v in variables.items()})
    env["workspace.file_path"] = str(ROOT)

    def sub(m: re.Match) -> str:
        assert m.group(1) in env, f"unknown reference ${{{m.group(1)}}} in {value!r}"
        return env[m.group(1)]

    return REF.sub(sub, value)


def task_argv(task: dict, **variables: str) -> list[str]:
    return [resolve(p, **variables) for p in task["python_wheel_task"]["parameters"]]


def test_bundle_builds_the_wheel_every_task_installs():
    assert BUNDLE["bundle"]["name"] == "climb-spark"
    (artifact,) = BUNDLE["artifacts"].values()
    assert artifact["type"] == "whl" and artifact["path"] == "."
    build = shlex.split(artifact["build"])
    assert build[:4] == ["python", "-m", "pip", "wheel"] and "--no-deps" in build
    out_dir = build[build.index("-w") + 1]
    for task in TASKS:
        (lib,) = task["libraries"]
        pattern = lib["whl"].removeprefix("./")
        assert fnmatch.fnmatch(f"{out_dir}/climb_spark-0.1.0-py3-none-any.whl", pattern), (task["task_key"], lib)


def test_tasks_are_the_stages_in_order_each_after_the_previous():
    assert [t["task_key"] for t in TASKS] == list(STAGES)
    assert "depends_on" not in TASKS[0]
    for prev, task in zip(TASKS, TASKS[1:]):
        assert task["depends_on"] == [{"task_key": prev["task_key"]}], task["task_key"]


def test_every_task_runs_its_stage_through_the_console_script():
    eps = {e.name: e.value for e in importlib.metadata.distribution("climb_spark").entry_points
           if e.group == "console_scripts"}
    for task in TASKS:
        wheel = task["python_wheel_task"]
        assert wheel["package_name"] == "climb_spark"
        assert eps[wheel["entry_point"]] == "climb_spark.cli:main"
        args = _parser().parse_args(task_argv(task))
        assert args.command == task["task_key"]
        assert args.conf == [str(DATABRICKS)]


def test_task_profiles_load_and_follow_the_catalog_and_schema_variables():
    for task in TASKS:
        args = _parser().parse_args(task_argv(task, catalog="dev_cat", schema="climb_dev"))
        cfg = load(args.conf, args.set)
        assert (cfg.lakehouse.catalog, cfg.lakehouse.schema) == ("dev_cat", "climb_dev")
        for key, path in {"lakehouse.root": cfg.lakehouse.root, "ingest.input": cfg.ingest.input,
                          "quality.model_dir": cfg.quality.model_dir, "export.output": cfg.export.output}.items():
            assert path.startswith("/Volumes/dev_cat/climb_dev/"), (task["task_key"], key, path)
        assert cfg.spark.master is None and cfg.spark.jars_dir is None and not cfg.spark.local_catalog


def test_at_the_default_variables_the_tasks_run_conf_databricks_yaml_as_it_is():
    """The bundle's defaults are the profile's names: its overrides change nothing."""
    profile = load([DATABRICKS])
    for task in TASKS:
        args = _parser().parse_args(task_argv(task))
        assert load(args.conf, args.set) == profile, task["task_key"]
    assert (BUNDLE["variables"]["catalog"]["default"], BUNDLE["variables"]["schema"]["default"]) == \
        (profile.lakehouse.catalog, profile.lakehouse.schema) == ("main", "climb")


def test_tasks_differ_only_in_their_stage():
    tails = {tuple(t["python_wheel_task"]["parameters"][1:]) for t in TASKS}
    assert len(tails) == 1, tails


def test_embed_runs_on_the_gpu_cluster_and_every_other_stage_on_the_cpu_one():
    assert {t["task_key"]: t["job_cluster_key"] for t in TASKS} == \
        {s: ("gpu" if s == "embed" else "cpu") for s in STAGES}
    gpu, cpu = resolve(CLUSTERS["gpu"]["spark_version"]), resolve(CLUSTERS["cpu"]["spark_version"])
    assert "-gpu-ml-" in gpu and "gpu" not in cpu, (gpu, cpu)
    # Spark 4 starts at Databricks Runtime 17.0.
    for version in (gpu, cpu):
        assert int(version.split(".")[0]) >= 17 and "scala2.13" in version, version


def test_gpu_cluster_carries_gpu_yaml_rapids_settings():
    conf = CLUSTERS["gpu"]["spark_conf"]
    gpu_profile = load([DATABRICKS, GPU])  # the overlay is valid over the Databricks profile too
    assert gpu_profile.spark.master is None and gpu_profile.spark.jars_dir is None
    wanted = gpu_profile.spark.conf
    assert conf["spark.plugins"] == "com.nvidia.spark.SQLPlugin"
    for key in ("spark.plugins", "spark.task.resource.gpu.amount", "spark.rapids.memory.gpu.pool",
                "spark.rapids.sql.concurrentGpuTasks", "spark.sql.execution.arrow.maxRecordsPerBatch"):
        assert conf.get(key) == wanted[key], key
    assert {k: v for k, v in conf.items() if k in wanted} == {k: wanted[k] for k in conf if k in wanted}
    # Databricks sets up executor GPUs itself; gpu.yaml's discovery script path does not exist there.
    assert not [k for k in conf if k.startswith("spark.executor.resource.")]
    assert all(isinstance(v, str) for v in conf.values()), conf
    (init,) = CLUSTERS["gpu"]["init_scripts"]
    assert resolve(init["volumes"]["destination"]).startswith("/Volumes/main/climb/")
    assert "spark.plugins" not in CLUSTERS["cpu"].get("spark_conf", {})


def test_init_script_in_the_docs_installs_the_pinned_rapids_jar():
    pinned = re.search(r"rapids-4-spark_2\.13</artifactId>\s*<version>([^<]+)<",
                       (ROOT / "conf" / "jars" / "gpu-pom.xml").read_text()).group(1)
    docs = (ROOT / "docs" / "platforms.md").read_text()
    assert f"V={pinned}\n" in docs and "/databricks/jars/rapids-4-spark_2.13-$V.jar" in docs


def test_job_spec_fits_databricks_job_model():
    assert Job.from_dict(copy.deepcopy(JOB)).as_dict() == JOB  # nothing unknown, dropped or renamed
    typo = copy.deepcopy(JOB)
    typo["tasks"][3]["python_wheel_task"]["entrypoint"] = typo["tasks"][3]["python_wheel_task"].pop("entry_point")
    with pytest.raises(ValueError, match="entrypoint"):
        Job.from_dict(typo)


def test_targets():
    dev, prod = BUNDLE["targets"]["dev"], BUNDLE["targets"]["prod"]
    assert dev["mode"] == "development" and dev["default"] is True
    assert prod["mode"] == "production" and prod["workspace"]["root_path"].startswith("/Workspace/")


def emr_argv(**kw) -> list[str]:
    cfg = load([EMR])
    return submit.command(cfg, submit.Submit("pipeline", ["conf/emr.yaml"], **kw))


def test_emr_cluster_mode_command():
    argv = emr_argv(master="yarn", deploy_mode="cluster", archive="s3://b/climb-env.tar.gz")
    assert argv[:5] == ["spark-submit", "--master", "yarn", "--deploy-mode", "cluster"]
    assert argv[argv.index("--archives") + 1] == "s3://b/climb-env.tar.gz#environment"
    assert "--jars" not in argv  # the profile has no jars_dir: Delta comes with the release
    assert argv[-3:] == ["jobs/pipeline.py", "--conf", "conf/emr.yaml"]
    script = len(argv) - 3
    confs = dict(argv[i + 1].split("=", 1) for i in range(script) if argv[i] == "--conf")
    assert confs["spark.pyspark.python"] == "./environment/bin/python"
    assert confs["spark.hadoop.hive.metastore.client.factory.class"] == \
        "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory"
    assert confs["spark.sql.catalogImplementation"] == "hive"
    assert confs["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert not [k for k in confs if "javax.jdo" in k or k == "spark.sql.warehouse.dir"]  # no local catalog
    # What a shell (`| bash`) or the EMR step's Args get back from the printed form.
    assert shlex.split(submit.render(argv).replace("\\\n", " ")) == argv


def test_local_catalog_needs_a_local_lakehouse_root(tmp_path):
    on_s3 = load([EMR], ["spark.local_catalog=true"])
    assert on_s3.lakehouse.root.startswith("s3://")
    with pytest.raises(ValueError, match="local_catalog"):
        submit.command(on_s3, submit.Submit("pipeline", ["conf/emr.yaml"], master="yarn"))
    local = load([EMR], ["spark.local_catalog=true", f"lakehouse.root={tmp_path / 'lake'}"])
    argv = submit.command(local, submit.Submit("pipeline", ["conf/emr.yaml"], master="yarn"))
    assert any("jdbc:derby" in a for a in argv)


def test_jobs_dir_may_be_an_s3_uri():
    argv = emr_argv(master="yarn", deploy_mode="cluster", jobs_dir="s3://b/climb/jobs")
    assert "s3://b/climb/jobs/pipeline.py" in argv
