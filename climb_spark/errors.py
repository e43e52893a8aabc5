"""The errors a user can act on, each with its own exit code; `cli.main` catches them once and
prints one line. Anything else is a bug and keeps its traceback (exit 1)."""
from __future__ import annotations


class ClimbError(Exception):
    kind = "error"
    exit_code = 1


class ConfigError(ClimbError, ValueError):
    """A setting is wrong: the message names the key."""

    kind = "config error"
    exit_code = 2


class SqlError(ClimbError):
    """A statement given to `climb-spark sql` that Spark refused."""

    kind = "sql error"
    exit_code = 2


class PreconditionError(ClimbError, RuntimeError):
    """What a stage needs is not there (or belongs to an earlier run): the message names what to
    run first."""

    kind = "precondition"
    exit_code = 3


class InputError(ClimbError, ValueError):
    """The data cannot give what the settings ask of it (more clusters than documents, a target
    with nothing in it)."""

    kind = "input error"
    exit_code = 4


class ServiceError(ClimbError):
    """A service the stage needs (a teacher endpoint) stopped answering; the work done so far is
    kept and a re-run goes on from it."""

    kind = "service unavailable"
    exit_code = 5


class ProxyError(ServiceError):
    """A proxy that gave no usable score (a command that failed, hung past proxy.timeout_s or
    printed no finite number; a training that diverged): recorded as failed, never kept as a
    result; the proxies that finished are kept and a re-run trains only what is missing."""

    kind = "proxy failed"


class BusyError(ClimbError):
    """Another job holds what this one needs exclusively (a local lakehouse's catalog)."""

    kind = "lakehouse busy"
    exit_code = 6


class DiskFullError(ClimbError):
    """A write ran out of space; what was committed before it stands, the failed write does not."""

    kind = "disk full"
    exit_code = 7


class StoreUnavailable(RuntimeError):
    """A remote file's store stopped answering mid-read (raised inside tasks, lakehouse/files.py).
    Not an OSError on purpose: the ingest readers take an OSError for a damaged file (a reject),
    and a store that is away for a moment must fail the task instead, which is retried, rather
    than be recorded as bad input."""


class AccountingError(ClimbError):
    """Input records that are in none of the tables meant to hold them (or in two): the reader's
    own count and what reached the tables disagree. Said before anything is written, never
    printed as a balanced run."""

    kind = "accounting error"
    exit_code = 8


def disk_full(err: BaseException) -> DiskFullError | None:
    """The disk-full error buried in an exception chain (a Py4J trace from the JVM, an OSError)."""
    import errno

    seen = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return DiskFullError(f"no space left on device ({seen.filename or 'a local write'})")
        text = str(seen)
        if "No space left on device" in text:
            line = next(ln.strip() for ln in text.splitlines() if "No space left on device" in ln)
            return DiskFullError(f"no space left on device ({line[:300]})")
        seen = seen.__cause__ or seen.__context__
    return None
