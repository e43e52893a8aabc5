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
