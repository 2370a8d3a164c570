"""Timing whole processes, shared by the benchmarks: what a user waits for."""

from __future__ import annotations

import compileall
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def byte_compile(tree: Path) -> None:
    """Byte-compile ``tree``'s package, as ``pip install`` and any first run do.

    Machines that set ``PYTHONDONTWRITEBYTECODE`` (this project's build
    machines do) would otherwise compile every module from source on every
    run, which no installed copy does; the dependencies were byte-compiled by
    pip, so without this the comparison would not be like for like.
    """
    compileall.compile_dir(tree / "condukt_egress", quiet=1)


def wall_seconds(argv: Sequence[str], tree: Path) -> float:
    """Seconds from spawning ``argv`` in ``tree`` to its exit (it must succeed; output dropped)."""
    start = time.perf_counter()
    subprocess.run(  # noqa: S603 - our own interpreter and arguments
        argv, check=True, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start
