"""Files outside the Delta tables (raw input, models, token pools, export shards, checkpoints,
the report) by URI, from the driver or from a Python task: one mapping of the schemes Spark users
write to pyarrow's filesystems. An object store's settings (`cfg.s3`) are passed in by every
caller, tasks included, so Python reaches the store Spark reaches."""
from __future__ import annotations

import io
import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path

from climb_spark.config import S3Config
from climb_spark.errors import StoreUnavailable
from climb_spark.lakehouse import object_store


def filesystem(uri: str, s3: S3Config):
    """(pyarrow filesystem, path in it) for a local path, a `file:` URI, or a remote URI.

    `s3://`, Hadoop's `s3a://` and `s3n://` go to the store `s3` describes; `dbfs:/` is read through
    the /dbfs mount that Databricks gives every node; other schemes (`gs://`, `hdfs://`,
    `abfs://`) as pyarrow configures them from the URI and the node's environment."""
    from pyarrow import fs

    if uri.startswith("dbfs:/"):
        return fs.LocalFileSystem(), "/dbfs/" + uri.removeprefix("dbfs:").lstrip("/")
    if object_store.is_s3(uri):
        return object_store.filesystem(s3), object_store.path(uri)
    if uri.startswith("file:"):
        uri = re.sub(r"^file:(//)?", "", uri)
    elif "://" in uri:
        return fs.FileSystem.from_uri(uri)
    return fs.LocalFileSystem(), str(Path(uri).resolve())


def open_input(uri: str, s3: S3Config):
    """A seekable binary file with a fast readline (Python's buffered reader, over a local file or
    a remote one); a remote store that stops answering raises StoreUnavailable."""
    from pyarrow import fs

    filesystem_, path = filesystem(uri, s3)
    if isinstance(filesystem_, fs.LocalFileSystem):
        return open(path, "rb")
    with _store_errors(uri):
        return io.BufferedReader(_Remote(filesystem_.open_input_file(path), uri), 1 << 20)


@contextmanager
def _store_errors(uri: str):
    try:
        yield
    except OSError as err:
        if object_store.unreachable(str(err)):
            raise StoreUnavailable(f"the store stopped answering while reading {uri}: {err}") from None
        raise


class _Remote(io.RawIOBase):
    """pyarrow's remote file under Python's buffered reader, its transport errors made
    StoreUnavailable."""

    def __init__(self, native, uri: str):
        self._f, self._uri = native, uri

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        with _store_errors(self._uri):
            return self._f.readinto(b)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with _store_errors(self._uri):
            return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        self._f.close()
        super().close()


def remove_dir(uri: str, s3: S3Config) -> None:
    """A folder and everything under it, if it is there. On an object store, also the empty
    folders some stores (SeaweedFS) go on listing once their objects are gone, which Hadoop's S3A
    then counts as content (a table location "not empty") and a later listing as a folder again:
    each is removed by its marker, deepest first (pyarrow cannot name one otherwise)."""
    from pyarrow import fs

    filesystem_, path = filesystem(uri, s3)
    if filesystem_.get_file_info(path).type == fs.FileType.Directory:
        try:
            filesystem_.delete_dir(path)
        except FileNotFoundError:  # listed, yet gone: such a store's empty folder, removed below
            if not isinstance(filesystem_, fs.S3FileSystem):
                raise
    if not isinstance(filesystem_, fs.S3FileSystem):
        return
    left, todo = [], [path]
    while todo:
        for info in filesystem_.get_file_info(fs.FileSelector(todo.pop(), allow_not_found=True)):
            if info.type == fs.FileType.Directory:
                left.append(info.path)
                todo.append(info.path)
    if left or filesystem_.get_file_info(path).type == fs.FileType.Directory:
        for folder in sorted(left, key=lambda p: -p.count("/")) + [path]:
            filesystem_.create_dir(folder)
            filesystem_.delete_dir(folder)


def read_bytes(uri: str, s3: S3Config) -> bytes:
    filesystem_, path = filesystem(uri, s3)
    with filesystem_.open_input_stream(path, compression=None) as f:
        return f.read()


def exists(uri: str, s3: S3Config) -> bool:
    from pyarrow import fs

    filesystem_, path = filesystem(uri, s3)
    return filesystem_.get_file_info(path).type == fs.FileType.File


def local_uri(path: str) -> str:
    """The `file:/...` form Spark lists local files by, so rows keep the same `file` values."""
    return "file:" + os.path.abspath(path)


def write_text(uri: str, text: str, s3: S3Config) -> None:
    """Write a small file, whole or not at all: on a local or HDFS path through a temporary name
    and a rename, on an object store by its single atomic PUT (a rename there is a copy)."""
    write_bytes(uri, text.encode("utf-8"), s3)


def write_bytes(uri: str, data: bytes, s3: S3Config) -> None:
    """`write_text` for bytes."""
    from pyarrow import fs

    filesystem_, path = filesystem(uri, s3)
    local = isinstance(filesystem_, fs.LocalFileSystem)
    if local:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    staged = f"{path}.{uuid.uuid4().hex[:8]}.tmp" if local or isinstance(filesystem_, fs.HadoopFileSystem) else path
    with filesystem_.open_output_stream(staged, compression=None) as f:  # bytes as given, whatever the name
        f.write(data)
    if staged != path:
        filesystem_.move(staged, path)
