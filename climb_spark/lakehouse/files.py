"""Files outside the Delta tables (raw input, export shards, checkpoints) by URI, from the driver
or from a Python task: one mapping of the schemes Spark users write to pyarrow's filesystems."""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path


def filesystem(uri: str):
    """(pyarrow filesystem, path in it) for a local path, a `file:` URI, or a remote URI.

    Hadoop's `s3a://`/`s3n://` are S3 to pyarrow; `dbfs:/` is read through the /dbfs mount that
    Databricks gives every node. Credentials come from the environment as pyarrow finds them
    (instance profile, AWS_* variables), as on a cluster's nodes."""
    from pyarrow import fs

    if uri.startswith("dbfs:/"):
        return fs.LocalFileSystem(), "/dbfs/" + uri.removeprefix("dbfs:").lstrip("/")
    if uri.startswith("file:"):
        uri = re.sub(r"^file:(//)?", "", uri)
    elif "://" in uri:
        return fs.FileSystem.from_uri(re.sub(r"^s3[an]://", "s3://", uri))
    return fs.LocalFileSystem(), str(Path(uri).resolve())


def open_input(uri: str):
    """A seekable binary file; a local file through Python's buffered reader (fast readline)."""
    from pyarrow import fs

    filesystem_, path = filesystem(uri)
    if isinstance(filesystem_, fs.LocalFileSystem):
        return open(path, "rb")
    return filesystem_.open_input_file(path)


def local_uri(path: str) -> str:
    """The `file:/...` form Spark lists local files by, so rows keep the same `file` values."""
    return "file:" + os.path.abspath(path)


def write_text(uri: str, text: str) -> None:
    """Write a small file, whole or not at all: on a local or HDFS path through a temporary name
    and a rename, on an object store by its single atomic PUT."""
    from pyarrow import fs

    filesystem_, path = filesystem(uri)
    local = isinstance(filesystem_, fs.LocalFileSystem)
    if local:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    staged = f"{path}.{uuid.uuid4().hex[:8]}.tmp" if local or isinstance(filesystem_, fs.HadoopFileSystem) else path
    with filesystem_.open_output_stream(staged) as f:
        f.write(text.encode("utf-8"))
    if staged != path:
        filesystem_.move(staged, path)
