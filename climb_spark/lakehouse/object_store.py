"""An S3-compatible object store (`s3.*` in the config) as each side takes it: Hadoop's `fs.s3a.*`
options for Spark and pyarrow's S3FileSystem for every Python-side reader and writer, from the
same settings; the check, before Spark starts, that every bucket the config names answers; and
the one line a job ends with when the store stops answering mid-run.

Credentials are the SDKs' own business on both sides (environment, shared profile, instance
role), so none pass through here.
"""
from __future__ import annotations

import functools
import re
from typing import Mapping
from urllib.parse import urlparse

from climb_spark.config import Config, S3Config
from climb_spark.errors import ConfigError, ServiceError

SCHEMES = ("s3://", "s3a://", "s3n://")


def is_s3(uri: str | None) -> bool:
    return bool(uri) and uri.startswith(SCHEMES)


def hadoop_conf(s3: S3Config) -> dict[str, str]:
    """The Spark settings (`spark.hadoop.fs.s3a.*`) for these store settings; empty for AWS's
    defaults, so a platform's own S3 set-up (EMR, Databricks) is left as it is."""
    conf = {}
    if s3.endpoint:
        conf["fs.s3a.endpoint"] = s3.endpoint.rstrip("/")
        conf["fs.s3a.connection.ssl.enabled"] = str(s3.endpoint.startswith("https://")).lower()
    if s3.region:
        conf["fs.s3a.endpoint.region"] = s3.region
    if s3.path_style:
        conf["fs.s3a.path.style.access"] = "true"
    if s3.credentials == "anonymous":
        conf["fs.s3a.aws.credentials.provider"] = "org.apache.hadoop.fs.s3a.AnonymousAWSCredentialsProvider"
    return {f"spark.hadoop.{k}": v for k, v in conf.items()}


def from_session(spark) -> S3Config:
    """The store settings a session was built with (hadoop_conf read back), for code that has the
    session but not the config."""
    def get(key: str) -> str | None:
        return spark.conf.get(f"spark.hadoop.fs.s3a.{key}", None)

    anonymous = (get("aws.credentials.provider") or "").endswith("AnonymousAWSCredentialsProvider")
    return S3Config(endpoint=get("endpoint"), region=get("endpoint.region"),
                    path_style=get("path.style.access") == "true",
                    credentials="anonymous" if anonymous else "default")


@functools.lru_cache(maxsize=8)
def filesystem(s3: S3Config):
    """pyarrow's S3FileSystem for these settings, one per process (and per Python worker)."""
    from pyarrow import fs

    options: dict = {"region": s3.region, "anonymous": s3.credentials == "anonymous",
                     "force_virtual_addressing": not s3.path_style,
                     "connect_timeout": 10, "request_timeout": 60,
                     "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=3)}
    if s3.endpoint:
        url = urlparse(s3.endpoint)
        options.update(endpoint_override=url.netloc, scheme=url.scheme)
    return fs.S3FileSystem(**{k: v for k, v in options.items() if v is not None})


def path(uri: str) -> str:
    """`s3a://bucket/key` -> `bucket/key`, the form pyarrow's S3FileSystem names objects by."""
    return re.sub(r"^s3[an]?://", "", uri).rstrip("/")


def where(s3: S3Config) -> str:
    return s3.endpoint.rstrip("/") if s3.endpoint else "AWS S3"


def paths(cfg: Config) -> dict[str, str | None]:
    """Every path setting, by key, that may name an object store."""
    return {"lakehouse.root": cfg.lakehouse.root, "ingest.input": cfg.ingest.input, "corpus.output": cfg.corpus.output,
            "quality.model_dir": cfg.quality.model_dir, "export.output": cfg.export.output,
            "report.output": cfg.report.output, "target.path": cfg.target.path, "proxy.tokenizer": cfg.proxy.tokenizer}


def check_exists(key: str, uri: str, s3: S3Config) -> None:
    """An input on the store is there (an object, or a prefix with objects under it)."""
    from pyarrow import fs

    if filesystem(s3).get_file_info(path(uri)).type == fs.FileType.NotFound:
        raise ConfigError(f"{key}: nothing at {uri} on {where(s3)}")


def check_buckets(paths: Mapping[str, str | None], s3: S3Config) -> None:
    """Every bucket the settings name exists and lets these credentials in, or one line naming the
    first setting that points elsewhere; asked once per bucket, before a JVM starts."""
    from pyarrow import fs

    asked: set[str] = set()
    for key, uri in paths.items():
        if not is_s3(uri):
            continue
        bucket = path(uri).split("/", 1)[0]
        if bucket in asked:
            continue
        asked.add(bucket)
        try:
            found = filesystem(s3).get_file_info(bucket).type
        except OSError as err:
            text = str(err)
            if unreachable(text):
                raise ServiceError(f"{key}: the object store at {where(s3)} does not answer ({_first(text)})") \
                    from None
            if "ACCESS_DENIED" in text or "403" in text or "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" \
                    in text:
                raise ConfigError(f"{key}: the object store at {where(s3)} refused the credentials for bucket "
                                  f"{bucket} ({_first(text)}); they come from the environment (AWS_ACCESS_KEY_ID, "
                                  "AWS_SECRET_ACCESS_KEY), the AWS profile or the instance role") from None
            raise ConfigError(f"{key}: cannot use bucket {bucket} at {where(s3)}: {_first(text)}") from None
        if found == fs.FileType.NotFound:
            raise ConfigError(f"{key}: bucket {bucket} does not exist at {where(s3)} ({uri}); create it or "
                              "point the setting at one that does")


# How a request that found nobody listening reads: pyarrow (libcurl), Hadoop's S3A (the AWS SDK,
# Apache HttpClient), Python's sockets.
_DOWN = ("NETWORK_CONNECTION", "Could not connect to server", "Connection refused", "Failed to connect to",
         "Unable to execute HTTP request", "connect timed out", "Connection reset")


def unreachable(text: str) -> bool:
    """Whether an error's text says the store did not answer (not that it refused or lacks a key)."""
    return any(marker in text for marker in _DOWN)


def _first(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), text)
    return line[:300]


def stopped_answering(err: BaseException, s3: S3Config) -> ServiceError | None:
    """The store that stopped answering mid-run, found in an exception chain (a Py4J trace from the
    JVM, pyarrow's OSError inside a task's), as one line; None for any other error. A line counts
    when it says nobody answered and names the store (its host, an s3a:// path, an AWS error)."""
    host = urlparse(s3.endpoint).netloc if s3.endpoint else "amazonaws.com"
    seen: BaseException | None = err
    while seen is not None:
        for line in str(seen).splitlines():
            if unreachable(line) and (host in line or "AWS Error" in line or "s3a://" in line):
                said = line.strip().lstrip(": ").removeprefix("Caused by: ")[:300]
                return ServiceError(f"the object store at {where(s3)} stopped answering ({said}); "
                                    "every table keeps its last committed version: run the job again once it "
                                    "answers")
        seen = seen.__cause__ or seen.__context__
    return None
