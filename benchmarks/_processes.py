"""Timing whole processes, shared by the benchmarks: what a user waits for."""

from __future__ import annotations

import compileall
import subprocess
import time
from collections.abc import Mapping, Sequence
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


def rotated(names: Sequence[str], round_index: int) -> list[str]:
    """``names`` starting at a different one each round, so none always goes first."""
    k = round_index % len(names)
    return [*names[k:], *names[:k]]


def timed_rounds(
    commands: Mapping[str, Sequence[str]], rounds: int, tree: Path
) -> dict[str, list[float]]:
    """Each command's wall seconds per round: all run once a round, in rotating order.

    Every command runs once first, uncounted, to warm the file cache.
    """
    for argv in commands.values():
        wall_seconds(argv, tree)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for r in range(rounds):
        for name in rotated(list(commands), r):
            times[name].append(wall_seconds(commands[name], tree))
    return times
