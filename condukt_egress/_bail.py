"""End a ``pulumi`` CLI run on our error with that one line, nothing after it.

Under the CLI, a Python program runs in ``pulumi-language-python-exec``, and
what it prints around an error is not ours to choose: a :class:`pulumi.RunError`
is logged and the process exits 1, which the language host reports as a
second error (``an unhandled error occurred: program exited with non-zero
exit code: 1``); any other exception, including one raised in a resource
transform (the SDK's callback server appends the transform's stack to it),
is logged as ``Program failed with an unhandled exception`` with a traceback.
The host's own convention for "the error is already shown" is exit code 32:
it then adds nothing. :func:`stop` logs the error and exits so.

Only in that process: anywhere else (an Automation API inline program inside
a service, the provider, tests) the error is raised as usual.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Final, NoReturn

import pulumi

__all__ = ["ERROR_SHOWN", "stop", "under_the_cli"]

_EXEC: Final = "pulumi-language-python-exec"
ERROR_SHOWN: Final = 32
"""The language host's exit code for "an actionable error was already displayed"."""


def under_the_cli() -> bool:
    """Whether this process is a program the ``pulumi`` CLI's Python host started.

    ``sys.orig_argv`` is the interpreter's command line, which ``runpy`` (how
    the exec script runs ``__main__.py``) leaves alone.
    """
    return any(Path(arg).name == _EXEC for arg in sys.orig_argv)


def stop(error: Exception) -> NoReturn:
    """Log ``error`` as the run's one error line and end the program; raise it elsewhere.

    The log call is synchronous (no resource attached), so the engine has the
    line before the process ends. The exit is immediate: from a transform
    callback, unwinding would leave the engine waiting on the callback.
    """
    if not under_the_cli():
        raise error
    pulumi.log.error(str(error))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(ERROR_SHOWN)
