"""What climb-spark records in MLflow, against a real (SQLite) tracking store."""
import json

from mlflow.tracking import MlflowClient

from climb_spark.tracking import dataset_inputs


def test_two_lakehouses_tables_at_the_same_version_keep_their_own_sources(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("inputs", artifact_location=str(tmp_path / "artifacts"))
    logged = {}
    for schema in ("dev", "prod"):
        run = client.create_run(experiment).info.run_id
        client.log_inputs(run, datasets=dataset_inputs({f"`spark_catalog`.`{schema}`.`documents`": 3}, "search"))
        logged[schema] = client.get_run(run).inputs.dataset_inputs
    # Before the digest named the table, prod's run showed dev's table: MLflow reuses a dataset by
    # (name, digest) within an experiment.
    assert {schema: [json.loads(i.dataset.source) for i in inputs] for schema, inputs in logged.items()} == {
        schema: [{"delta_table_name": f"spark_catalog.{schema}.documents", "delta_table_version": 3}]
        for schema in ("dev", "prod")}
    assert all(i.dataset.name == "documents" and i.dataset.digest.startswith("v3-")
               for inputs in logged.values() for i in inputs)


def test_a_new_store_is_set_up_without_mlflows_info_lines(tmp_path, capfd):
    """Issue 28: a fresh lakehouse's first run printed MLflow's "Creating initial MLflow database
    tables..." and "Updating database tables" among the stage lines."""
    from climb_spark.config import MlflowConfig
    from climb_spark.tracking import experiment

    cfg = MlflowConfig(tracking_uri=f"sqlite:///{tmp_path}/new/mlflow.db", experiment="climb-spark",
                       artifact_location=str(tmp_path / "artifacts"))
    created = experiment(cfg)
    assert MlflowClient(cfg.tracking_uri).get_experiment(created).name == "climb-spark"
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_an_experiment_deleted_in_the_ui_is_restored_with_its_runs_and_a_search_resumes_in_it(tmp_path, capfd):
    """Issue 29: with the configured experiment deleted (as the UI deletes it), a search ended in a
    40-line `MlflowException: The experiment 1 must be in the 'active' state`."""
    from climb_spark.config import MlflowConfig
    from climb_spark.tracking import SearchRun, experiment

    cfg = MlflowConfig(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="climb-spark",
                       artifact_location=str(tmp_path / "artifacts"))
    first = SearchRun(cfg, "climb-abc", "search-climb", {"method": "climb"})
    first.finish()
    client = MlflowClient(cfg.tracking_uri)
    client.delete_experiment(first.experiment_id)
    assert client.get_experiment(first.experiment_id).lifecycle_stage == "deleted"

    again = SearchRun(cfg, "climb-abc", "search-climb", {"method": "climb"})
    assert again.experiment_id == first.experiment_id and again.run_id == first.run_id  # resumed, not a new run
    assert client.get_experiment(first.experiment_id).lifecycle_stage == "active"
    assert capfd.readouterr().err.splitlines() == [
        f"climb-spark: MLflow experiment 'climb-spark' (id {first.experiment_id}) was deleted; restored it with its runs"]
    assert experiment(cfg) == first.experiment_id and capfd.readouterr().err == ""  # said once

    # Renamed in the UI: a new experiment under the configured name, with a line saying so.
    client.rename_experiment(first.experiment_id, "climb-spark-old")
    created = experiment(cfg)
    assert created != first.experiment_id and capfd.readouterr().err.splitlines() == [
        f"climb-spark: MLflow experiment 'climb-spark' is not in {cfg.tracking_uri} (it holds climb-spark-old); "
        f"created it (id {created}): searches start new runs in it, finished proxies are still reused"]


def test_a_store_copied_with_its_lakehouse_keeps_the_copys_artifacts_in_the_copy(tmp_path):
    """Issue 30: a copied lakehouse wrote into the original. Its MLflow store names the original's
    artifact folder too (absolute), so the copy's runs would put their models and figures there."""
    import subprocess
    import sys
    import textwrap

    from climb_spark.config import MlflowConfig
    from climb_spark.tracking import SearchRun
    from tests.conftest import ROOT

    def config(root):
        return MlflowConfig(tracking_uri=f"sqlite:///{root}/mlflow.db", experiment="climb-spark",
                            artifact_location=str(root / "mlartifacts"))

    orig, copy = tmp_path / "orig lake", tmp_path / "copy"
    first = SearchRun(config(orig), "climb-abc", "search-climb", {"method": "climb"})
    first.log_dict({"weights": [1.0]}, "final_mixture.json")
    first.finish()
    before = sorted(p.relative_to(orig) for p in (orig / "mlartifacts").rglob("*"))
    subprocess.run(["cp", "-a", str(orig), str(copy)], check=True)

    # The next job on the copy is a process of its own (MLflow caches a run's artifact place).
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from climb_spark.config import MlflowConfig
        from climb_spark.tracking import SearchRun
        cfg = MlflowConfig(tracking_uri="sqlite:///{copy}/mlflow.db", experiment="climb-spark",
                           artifact_location="{copy}/mlartifacts")
        again = SearchRun(cfg, "climb-abc", "search-climb", {{"method": "climb"}})
        again.log_dict({{"weights": [0.5, 0.5]}}, "later.json")
        again.finish()
    """)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.relative_to(orig) for p in (orig / "mlartifacts").rglob("*")) == before
    assert (copy / "mlartifacts" / first.run_id / "artifacts" / "later.json").is_file()
    said = [ln for ln in done.stderr.splitlines() if ln.startswith("climb-spark:")]
    assert said == [f"climb-spark: MLflow store {copy}/mlflow.db was copied or moved from beside {orig}/mlartifacts: "
                    f"experiment 'climb-spark' and its 1 runs now keep their artifacts in {copy}/mlartifacts"]
    client = MlflowClient(config(copy).tracking_uri)
    assert client.get_run(first.run_id).info.artifact_uri.startswith((copy / "mlartifacts").as_uri())
