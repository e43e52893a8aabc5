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
