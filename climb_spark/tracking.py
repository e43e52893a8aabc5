"""MLflow set-up from the config: tracking store, experiment and its artifact location."""
from __future__ import annotations

from pathlib import Path

from .config import MlflowConfig, is_local_path


def experiment(cfg: MlflowConfig) -> str:
    """Point MLflow at the configured store and return the experiment id (created if missing)."""
    import mlflow

    uri = cfg.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(cfg.experiment)
    if found is not None:
        return found.experiment_id
    location = cfg.artifact_location
    if location and is_local_path(location):
        location = Path(location.removeprefix("file://")).resolve().as_uri()
    return mlflow.create_experiment(cfg.experiment, artifact_location=location)
