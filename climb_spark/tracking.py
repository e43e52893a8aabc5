"""MLflow set-up from the config: tracking store, experiment and its artifact location."""
from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import sys
import time
from pathlib import Path

from climb_spark.config import SAFE_ID, MlflowConfig, is_local_path
from climb_spark.errors import ConfigError


def check_reachable(cfg: MlflowConfig, timeout_s: float = 10.0) -> None:
    """Fail before Spark starts when a remote tracking server does not answer."""
    import urllib.error
    import urllib.request

    uri = cfg.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return  # it answered; authentication and paths are MLflow's to report
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(f"mlflow.tracking_uri: cannot reach {uri} ({reason})") from None


def experiment(cfg: MlflowConfig) -> str:
    """Point MLflow at the configured store and return the experiment id (created if missing)."""
    import mlflow

    uri = cfg.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        follow_copied_store(cfg)
    # On a server MLflow prints two lines with links each time a run ends, one per proxy; the
    # search's own line per proxy is the progress (the report lists the runs). Set it to false to
    # have them back.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # A new SQLite store's set-up ("Creating initial MLflow database tables...", then alembic's
    # migration steps) is MLflow's business, not a line of the run; its warnings still show.
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(cfg.experiment)
    if found is not None and found.lifecycle_stage == "deleted":
        # Deleted in the UI: every later run would fail ("must be in the 'active' state"); a
        # restore brings it back with its runs, which the searches resume from.
        mlflow.tracking.MlflowClient().restore_experiment(found.experiment_id)
        print(f"climb-spark: MLflow experiment {cfg.experiment!r} (id {found.experiment_id}) was deleted; restored "
              "it with its runs", file=sys.stderr, flush=True)
    if found is not None:
        return found.experiment_id
    location = cfg.artifact_location
    if location and is_local_path(location):
        location = Path(location.removeprefix("file://")).resolve().as_uri()
    others = [e.name for e in mlflow.search_experiments(view_type=mlflow.entities.ViewType.ALL) if e.name != "Default"]
    created = mlflow.create_experiment(cfg.experiment, artifact_location=location)
    if others:  # a store with experiments of its own, not this one: renamed in the UI, or a new name set
        print(f"climb-spark: MLflow experiment {cfg.experiment!r} is not in {uri} (it holds {', '.join(others[:5])}); "
              f"created it (id {created}): searches start new runs in it, finished proxies are still reused",
              file=sys.stderr, flush=True)
    return created


def follow_copied_store(cfg: MlflowConfig) -> None:
    """A local SQLite store copied or moved with its lakehouse still names the old place's artifact
    folder (each experiment's artifact location and each run's artifact URI are absolute), so the
    copy's runs would write their models and figures into the original's folder. Where the config
    keeps the artifacts beside the store and an experiment's location is that same place beside
    another folder, the experiment and its runs are pointed at the store's own folder, with a line."""
    import sqlite3
    from urllib.parse import unquote, urlparse

    location = cfg.artifact_location
    store = Path(cfg.tracking_uri.removeprefix("sqlite:///"))
    if not location or not is_local_path(location) or not store.is_file():
        return
    here = Path(location.removeprefix("file://")).resolve()
    try:
        rel = here.relative_to(store.resolve().parent)
    except ValueError:
        return  # artifacts kept elsewhere than beside the store: nothing moved with it
    with sqlite3.connect(store) as con:
        for exp_id, name, old in con.execute("SELECT experiment_id, name, artifact_location FROM experiments").fetchall():
            parsed = urlparse(old or "")
            if parsed.scheme not in ("", "file"):
                continue
            former = Path(unquote(parsed.path))
            if former == here or not rel.parts or former.parts[-len(rel.parts):] != rel.parts:
                continue
            runs = con.execute("SELECT run_uuid, artifact_uri FROM runs WHERE experiment_id = ?", (exp_id,)).fetchall()
            new = here.as_uri()
            con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (new, exp_id))
            for run, uri in runs:
                if uri and uri.startswith(old):
                    con.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", (new + uri[len(old):], run))
            print(f"climb-spark: MLflow store {store} was copied or moved from beside {former}: experiment {name!r} "
                  f"and its {len(runs)} runs now keep their artifacts in {here}", file=sys.stderr, flush=True)


def reader(cfg: MlflowConfig):
    """An MlflowClient on the configured store for reading, or None where a local SQLite store does
    not exist yet (opening it would create it): nothing has been tracked there."""
    from mlflow.tracking import MlflowClient

    uri = cfg.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    if uri.startswith("sqlite:///"):
        follow_copied_store(cfg)
    return MlflowClient(uri)


def run_url(cfg: MlflowConfig, experiment_id: str, run_id: str) -> str | None:
    """The run's page in the tracking server's UI, where the store is a server."""
    uri = cfg.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return None
    return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def log_text(cfg: MlflowConfig, run_id: str, text: str, path: str) -> None:
    """Attach a text artifact (the run report) to an existing run."""
    from mlflow.tracking import MlflowClient

    MlflowClient(cfg.tracking_uri).log_text(run_id, text, path)


def context_tags(tags: dict[str, str]) -> dict[str, str]:
    """`tags` plus what MLflow's fluent API adds to a run by itself (user, source name and type),
    the git commit of the code when it runs from a checkout, and the package version: runs made
    with the client API would otherwise carry none of it."""
    from mlflow.tracking.context.registry import resolve_tags

    from climb_spark import __version__

    out = resolve_tags({**tags, "climb.version": __version__})
    if "mlflow.source.git.commit" not in out and _git_commit():
        out["mlflow.source.git.commit"] = _git_commit()
    return out


@functools.cache
def _git_commit() -> str | None:
    """The checkout's commit, asked once per process (every proxy run is tagged with it)."""
    import subprocess

    try:
        commit = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None  # an installed wheel has no checkout to name
    return commit.stdout.strip() if commit.returncode == 0 else None


def dataset_inputs(tables: dict[str, int], context: str) -> list:
    """MLflow dataset inputs for Delta tables read at these versions (name -> version)."""
    return [delta_dataset(quoted, version, context) for quoted, version in tables.items()]


def delta_dataset(quoted: str, version: int, context: str, part: str = ""):
    """One Delta table at a version as an MLflow dataset entry; `part` names the rows of it meant
    (an export's, in `training_mix`)."""
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    name = quoted.replace("`", "")  # as SQL users write it: catalog.schema.table
    source = DeltaDatasetSource(delta_table_name=name, delta_table_version=version)
    # MLflow keeps one dataset per (name, digest) in an experiment and hands the first one
    # logged to every later run: the digest names the table, not only its version, or two
    # lakehouses' `documents` at the same version would share one source.
    digest = f"v{version}-{hashlib.sha256((name + part).encode()).hexdigest()[:8]}"
    short = name.rsplit(".", 1)[-1]
    return DatasetInput(MetaDataset(source, name=f"{short}[{part}]" if part else short, digest=digest)
                        ._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])


class SearchRun:
    """The MLflow side of one search (or comparison, `role`): a parent run found again by its id
    (so a resumed search continues it) and one child run per proxy, found again by the proxy's key."""

    def __init__(self, cfg: MlflowConfig, search_id: str, run_name: str, params: dict[str, object],
                 role: str = "search", inputs: dict[str, int] | None = None):
        from mlflow.tracking import MlflowClient

        self.experiment_id = experiment(cfg)
        self.client = MlflowClient()
        self.search_id = search_id
        self._steps: dict[str, set[int]] = {}
        found = self.client.search_runs([self.experiment_id], f"tags.`climb.search_id` = {_literal(search_id)} "
                                        f"and tags.`climb.role` = {_literal(role)}", max_results=1)
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(self.experiment_id, run_name=run_name,
                                         tags=context_tags({"climb.search_id": search_id, "climb.role": role}))
            self.run_id = run.info.run_id
            self.client.log_batch(self.run_id, params=_params(params))
            if inputs:
                self.client.log_inputs(self.run_id, datasets=dataset_inputs(inputs, role))
        children = self.client.search_runs([self.experiment_id], f"tags.`mlflow.parentRunId` = {_literal(self.run_id)}",
                                           max_results=50000)
        self.children = {r.data.tags["climb.proxy_key"]: r.info.run_id for r in children
                         if "climb.proxy_key" in r.data.tags}

    def proxy_run(self, spec, key: str, result: dict, role: str = "search") -> str:
        from mlflow.entities import Metric, Param

        run_id = self.children.get(key)
        if run_id is None:
            # Backdated by the training time, so the UI's duration column is the proxy's.
            started = int((time.time() - float(result["seconds"])) * 1000)
            run_id = self.client.create_run(
                self.experiment_id, start_time=started, run_name=proxy_run_name(spec, role),
                tags=context_tags({"mlflow.parentRunId": self.run_id, "climb.search_id": self.search_id,
                                   "climb.proxy_key": key, "climb.role": "proxy",
                                   "mlflow.note.content": _proxy_description(spec, role, result)})).info.run_id
            params = {"method": spec.method, "iteration": spec.iteration, "index": spec.index, "seed": spec.seed,
                      "tokens_trained": result.get("tokens_trained", 0)}
            params.update({f"w_{i:02d}": round(float(w), 6) for i, w in enumerate(spec.weights)})
            self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
            self.children[key] = run_id
        now = int(time.time() * 1000)
        metrics = [Metric("score", float(result["score"]), now, 0), Metric("seconds", float(result["seconds"]), now, 0)]
        if result.get("target_loss") is not None and math.isfinite(result["target_loss"]):
            metrics.append(Metric("target_loss", float(result["target_loss"]), now, 0))
        metrics += [Metric("train_loss", float(v), now, i) for i, v in enumerate(result.get("loss_curve") or [])]
        self.client.log_batch(run_id, metrics=metrics)
        self.client.set_terminated(run_id)
        return run_id

    def proxy_failed(self, spec, key: str, reason: str, role: str = "search") -> str:
        """A proxy that gave no usable score: a FAILED child run with the reason, tagged so it is
        never taken for the proxy's result (a later run of the same proxy gets a run of its own)."""
        from mlflow.entities import Param

        run_id = self.client.create_run(
            self.experiment_id, run_name=f"{proxy_run_name(spec, role)} FAILED",
            tags=context_tags({"mlflow.parentRunId": self.run_id, "climb.search_id": self.search_id,
                               "climb.failed_proxy_key": key, "climb.role": "proxy",
                               "climb.error": reason[:5000]})).info.run_id
        params = {"method": spec.method, "iteration": spec.iteration, "index": spec.index, "seed": spec.seed,
                  **{f"w_{i:02d}": round(float(w), 6) for i, w in enumerate(spec.weights)}}
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        self.client.set_terminated(run_id, status="FAILED")
        return run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log each (metric, step) once: a resumed search replays its iterations."""
        from mlflow.entities import Metric

        for key in metrics:
            if key not in self._steps:
                self._steps[key] = {m.step for m in self.client.get_metric_history(self.run_id, key)}
        new = {k: v for k, v in metrics.items() if step not in self._steps[k]}
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in new.items()])
        for key in new:
            self._steps[key].add(step)

    def log_params(self, params: dict[str, object]) -> None:
        """Params are immutable in MLflow: a resumed search whose final mixture changed (a
        non-deterministic command proxy) keeps the first values and tags the new ones."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.log_batch(self.run_id, params=_params(params))
        except MlflowException:
            self.set_tags({f"latest.{k}": v for k, v in params.items()})

    def set_tags(self, tags: dict[str, object]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def log_figure(self, figure, path: str) -> None:
        import matplotlib.pyplot as plt

        self.client.log_figure(self.run_id, figure, path)
        plt.close(figure)

    def log_dict(self, data: dict, path: str) -> None:
        self.client.log_dict(self.run_id, data, path)

    def log_predictor(self, fit, weights, name: str) -> None:
        """The whole predictor as one pyfunc model `name`, with its signature (`w_NN` columns in,
        the predicted score out; `weights`: mixtures it was fitted on, a few kept as the example)."""
        import mlflow

        from climb_spark.stages.search import pyfunc

        with mlflow.start_run(run_id=self.run_id):
            pyfunc.log(fit, weights, name)

    def describe(self, text: str) -> None:
        """The run's description in MLflow's UI (markdown)."""
        self.set_tags({"mlflow.note.content": text})

    def finish(self) -> None:
        self.client.set_terminated(self.run_id)

    def fail(self, reason: str) -> None:
        """The run stops as FAILED with the reason as a tag, so the UI never shows it running."""
        self.client.set_tag(self.run_id, "climb.error", reason[:5000])
        self.client.set_terminated(self.run_id, status="FAILED")


def proxy_run_name(spec, role: str = "search") -> str:
    """What the runs list shows of a proxy: its method, where it was in the search (or, for
    compare's retrains, the scale and seed) and its mixture (super-cluster:weight above 0.5%)."""
    shares = [f"{i}:{w:.2f}" for i, w in enumerate(spec.weights) if w >= 0.005]
    mixture = " ".join(shares[:8]) + (f" +{len(shares) - 8}" if len(shares) > 8 else "")
    if role.startswith("compare-"):
        return f"{spec.method} {role.removeprefix('compare-')} seed {spec.seed} [{mixture}]"
    return f"{spec.method} it{spec.iteration}.{spec.index} [{mixture}]"


def _proxy_description(spec, role: str, result: dict) -> str:
    where = (f"a retrain of the `{spec.method}` search's final mixture at the {role.removeprefix('compare-')} scale "
             f"(compare `{spec.search_id}`), seed {spec.seed}" if role.startswith("compare-") else
             f"proxy {spec.index} of iteration {spec.iteration} of the `{spec.method}` search `{spec.search_id}`, "
             f"seed {spec.seed}")
    weights = ", ".join(f"{i}: {w:.4f}" for i, w in enumerate(spec.weights))
    return (f"Proxy model: {where}. Mixture (super-cluster: weight): {weights}. Score {float(result['score']):.4f} "
            "(higher is better: the negative mean loss per target token, or accuracy).")


def _params(params: dict[str, object]):
    from mlflow.entities import Param

    return [Param(k, str(v)[:6000]) for k, v in params.items()]


def _literal(value: str) -> str:
    """A value quoted for an MLflow filter string. MLflow has no bound parameters, so only ids of
    the safe shape are let through: one with a quote could widen the filter to another run."""
    if not SAFE_ID.match(value):
        raise ConfigError(f"not a safe id for an MLflow filter: {value!r}")
    return f"'{value}'"
