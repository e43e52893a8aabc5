"""A real S3-compatible object store on loopback for the object-store tests: SeaweedFS's `weed
server -s3`, the binary `.ci/seaweedfs` builds once from its Go module source (install.sh runs
it), with one identity whose keys the tests hand to every process through the environment, so
wrong keys are refused as on AWS. Also the MLflow tracking server whose artifacts go to it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.standalone_cluster import free_port, stop, wait_for_http

ROOT = Path(__file__).resolve().parents[1]
VERSION = "v0.0.0-20261109003541-7506e5f91cd6"  # .ci/seaweedfs's default
WEED = ROOT / ".cache" / "seaweedfs" / VERSION / "weed"
KEY, SECRET = "climbtest", "climbtest-secret-key"


def weed_binary() -> Path:
    """The cached binary; a machine without it is set up wrong, and says how to fix it."""
    if not os.access(WEED, os.X_OK):
        raise RuntimeError(f"SeaweedFS is not built ({WEED} is missing): run .ci/seaweedfs (./install.sh does, "
                           "where Go is installed); the object-store tests need a real S3 server")
    return WEED


class SeaweedFS:
    """`weed server` (master, volume, filer, S3 gateway in one process) on free loopback ports, its
    data in `root`; stop() and start() again keep the data, as a restarted store does."""

    def __init__(self, root: Path):
        self.root = root
        self.ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        # Each gRPC port is chosen too (weed's default is port + 10000, which may be taken).
        self.grpc = {name: free_port() for name in self.ports}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.proc: subprocess.Popen | None = None
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "s3.json").write_text(json.dumps({"identities": [{
            "name": "climb", "credentials": [{"accessKey": KEY, "secretKey": SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))

    def start(self, timeout: float = 120.0) -> "SeaweedFS":
        p, g = self.ports, self.grpc
        args = [str(weed_binary()), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.root / 'data'}",
                "-master.telemetry=false", "-s3", f"-s3.config={self.root / 's3.json'}",
                f"-master.port={p['master']}", f"-master.port.grpc={g['master']}",
                f"-volume.port={p['volume']}", f"-volume.port.grpc={g['volume']}",
                f"-filer.port={p['filer']}", f"-filer.port.grpc={g['filer']}",
                f"-s3.port={p['s3']}", f"-s3.port.grpc={g['s3']}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-metricsPort={free_port()}", "-master.volumeSizeLimitMB=256", "-volume.max=0",
                f"-filer.localSocket={self.root / 'filer.sock'}", f"-s3.localSocket={self.root / 's3.sock'}"]
        log = open(self.root / "weed.log", "a")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                     start_new_session=True)
        try:
            wait_for_http(f"{self.endpoint}/healthz", self.proc, timeout)
            self._wait_writable(timeout)
        except BaseException:
            self.stop(hard=True)  # not left running behind a failed start
            raise
        return self

    def _wait_writable(self, timeout: float) -> None:
        """The gateway answers before the volume server has registered: a first write can fail."""
        fs = self.filesystem()
        deadline = time.monotonic() + timeout
        while True:
            try:
                fs.create_dir("climb-probe")
                with fs.open_output_stream("climb-probe/ready") as f:
                    f.write(b"ok")
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.5)

    def stop(self, hard: bool = False) -> None:
        if self.proc is not None:
            if hard:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
            stop(self.proc)
            self.proc = None

    def env(self, key: str = KEY, secret: str = SECRET) -> dict[str, str]:
        """What a process needs to reach the store, as on a real cluster: keys in the environment."""
        return {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def filesystem(self):
        from pyarrow import fs

        return fs.S3FileSystem(access_key=KEY, secret_key=SECRET, endpoint_override=f"127.0.0.1:{self.ports['s3']}",
                               scheme="http", region="us-east-1", allow_bucket_creation=True,
                               allow_bucket_deletion=True)

    def settings(self) -> dict[str, str]:
        """The `s3.*` settings that point climb-spark at this store."""
        return {"s3.endpoint": self.endpoint, "s3.region": "us-east-1", "s3.path_style": "true"}


class MlflowServer:
    """`mlflow server`: runs in SQLite on local disk, artifacts proxied to the object store."""

    def __init__(self, root: Path, store: SeaweedFS, destination: str):
        self.root, self.store, self.destination = root, store, destination
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> "MlflowServer":
        env = {**self.store.env(), "MLFLOW_S3_ENDPOINT_URL": self.store.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
        args = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
                "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination", self.destination, "--workers", "1"]
        log = open(self.root / "mlflow-server.log", "a")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root,
                                     start_new_session=True)
        try:
            wait_for_http(f"{self.uri}/health", self.proc, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


def objects(fs, prefix: str) -> dict[str, int]:
    """Every object under `bucket/prefix` with its size."""
    from pyarrow import fs as pafs

    listing = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return {i.path: i.size for i in listing if i.type == pafs.FileType.File}


def http_ok(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except OSError:
        return False
