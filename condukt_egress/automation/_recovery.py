"""Repair a file backend's stack that a killed ``pulumi`` process left unreadable.

What the file (DIY) backend writes, as pulumi 3.274.1 does it
(``pkg/backend/diy/state.go``) through gocloud's ``fileblob`` driver:

- ``.pulumi/stacks/<project>/<stack>.json`` (``.json.gz`` with
  ``PULUMI_DIY_BACKEND_GZIP``, ``.json.zst`` with zstd): the checkpoint,
  written again after every resource step. ``saveCheckpoint`` first copies it
  to ``<file>.bak``, then writes a temporary file and renames it over the
  checkpoint, so the checkpoint itself is always whole;
- ``<object>.attrs`` next to every object: fileblob's metadata (content type,
  MD5). ``setAttrs`` writes it *in place* (``os.Create`` truncates it, then a
  JSON encode) before the rename, and every read decodes it first
  (``getAttrs``, ``gocloud.dev/blob/fileblob/attrs.go``): a process killed
  between the truncation and the write leaves it empty, and every later read
  of the stack fails with ``failed to load checkpoint: EOF`` (``stack ls``
  of the whole backend with ``EOF``). The same empty file, read while a live
  process writes it, is a transient race;
- ``.pulumi/history/<project>/<stack>/<stack>-<ns>.{history,checkpoint}.json``
  at the end of each update, ``.pulumi/backups/<project>/<stack>/`` copies;
- ``.pulumi/locks/<org>/<project>/<stack>/<id>.json`` while an update runs,
  naming the CLI's pid and host; a killed CLI leaves it behind.

:func:`recover_stack` repairs only what a dead process left: with no lock of
a live process, it removes the locks of dead ones (as ``pulumi cancel``
does), removes an unreadable metadata sidecar (fileblob reads a missing one
as defaults), and, should the checkpoint itself be empty or unreadable (a
machine crash: fileblob does not fsync), puts back the newest readable copy
the backend keeps (``.bak``, then history, then backups). A later
``destroy(refresh=True)`` reconciles that copy with the cluster.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from condukt_egress.automation._status import process_running

__all__ = ["LockHolder", "lock_holders", "readable", "recover_stack"]

_VARIANTS: Final = (".json", ".json.gz", ".json.zst")
_GZIP: Final = b"\x1f\x8b\x08"
_ZSTD: Final = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class LockHolder:
    """One lock file of a stack and whether its process still runs.

    Attributes:
        path: The lock file.
        pid: The CLI process that wrote it (0 if unreadable).
        hostname: The host it ran on.
        alive: Whether it may still run: a live pid on this host, or any
            lock this host cannot judge (another host, unreadable).
    """

    path: Path
    pid: int
    hostname: str
    alive: bool


def lock_holders(backend_dir: Path, project: str, stack: str) -> list[LockHolder]:
    """The locks the backend holds for ``stack`` (``locks/<org>/<project>/<stack>/``)."""
    holders = []
    for path in sorted((backend_dir / ".pulumi" / "locks").glob(f"*/{project}/{stack}/*.json")):
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
            pid, host = int(content["pid"]), str(content["hostname"])
        except (OSError, ValueError, KeyError, TypeError):
            holders.append(LockHolder(path, 0, "", alive=True))
            continue
        alive = host != socket.gethostname() or process_running(pid)
        holders.append(LockHolder(path, pid, host, alive=alive))
    return holders


def readable(data: bytes) -> bool:
    """Whether ``data`` is a checkpoint the CLI can read (plain or gzip JSON; zstd by magic)."""
    if data.startswith(_ZSTD):
        return True  # no zstd in the standard library; the frame header is all we check
    try:
        if data.startswith(_GZIP):
            data = gzip.decompress(data)
        content = json.loads(data)
    except (OSError, EOFError, ValueError):
        return False
    return isinstance(content, dict) and ("checkpoint" in content or "latest" in content)


def _sidecar_ok(path: Path) -> bool:
    """Whether ``path``'s fileblob metadata sidecar is absent or decodes."""
    try:
        text = Path(f"{path}.attrs").read_text(encoding="utf-8")
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _checkpoint(backend_dir: Path, project: str, stack: str) -> Path | None:
    """The stack's checkpoint as the CLI picks it: the newest of its variants."""
    base = backend_dir / ".pulumi" / "stacks" / project / stack
    found = [Path(f"{base}{ext}") for ext in _VARIANTS if Path(f"{base}{ext}").is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def _copies(backend_dir: Path, project: str, stack: str, checkpoint: Path) -> Iterator[Path]:
    """The copies of a checkpoint the backend keeps, newest first: .bak, history, backups."""
    yield Path(f"{checkpoint}.bak")
    pulumi = backend_dir / ".pulumi"
    for folder, pattern in (("history", f"{stack}-*.checkpoint"), ("backups", f"{stack}.*")):
        found = [
            path
            for ext in _VARIANTS
            for path in (pulumi / folder / project / stack).glob(pattern + ext)
        ]
        yield from sorted(found, key=_stamp, reverse=True)


def _stamp(path: Path) -> int:
    """The nanosecond time in a history or backup file name (0 if none)."""
    digits = "".join(c if c.isdigit() else " " for c in path.name).split()
    return max((int(d) for d in digits if len(d) >= 18), default=0)


def _replace(path: Path, data: bytes) -> None:
    """Write ``path`` atomically (a temporary file renamed over it), as fileblob does."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def recover_stack(backend_dir: Path, project: str, stack: str) -> list[str]:
    """Undo what a killed CLI left in a file backend's stack; what was done, one line each.

    Does nothing while a live process (or one on another host) holds the
    stack's lock: the empty file may then be that writer's, mid-write.

    Args:
        backend_dir: The ``file://`` backend's directory.
        project: The Pulumi project (``condukt-egress``).
        stack: The stack name.
    """
    holders = lock_holders(backend_dir, project, stack)
    if any(h.alive for h in holders):
        return []
    done = []
    for holder in holders:
        for path in (holder.path, Path(f"{holder.path}.attrs")):
            path.unlink(missing_ok=True)
        done.append(f"removed the lock of pid {holder.pid}, which no longer runs")
    checkpoint = _checkpoint(backend_dir, project, stack)
    if checkpoint is None:
        return done
    if not _sidecar_ok(checkpoint):
        Path(f"{checkpoint}.attrs").unlink()
        done.append(f"removed the empty metadata file {checkpoint.name}.attrs")
    if readable(checkpoint.read_bytes()):
        return done
    for copy in _copies(backend_dir, project, stack, checkpoint):
        with contextlib.suppress(OSError):
            data = copy.read_bytes()
            if readable(data):
                break
    else:
        done.append(
            f"the checkpoint {checkpoint.name} is unreadable and the backend keeps no readable "
            "copy; `pulumi stack import` a good one"
        )
        return done
    target = Path(f"{checkpoint.parent / checkpoint.name.split('.json')[0]}{_extension(data)}")
    if lock_holders(backend_dir, project, stack):
        return done  # a process started meanwhile; it reads the checkpoint as it finds it
    backups = backend_dir / ".pulumi" / "backups" / project / stack
    backups.mkdir(parents=True, exist_ok=True)
    aside = backups / f"{checkpoint.name}.unreadable-{time.time_ns()}"
    os.replace(checkpoint, aside)
    Path(f"{target}.attrs").unlink(missing_ok=True)
    _replace(target, data)
    done.append(f"restored {target.name} from {copy.name} (the unreadable one is now {aside})")
    return done


def _extension(data: bytes) -> str:
    """The checkpoint file extension matching ``data``'s compression."""
    if data.startswith(_GZIP):
        return ".json.gz"
    if data.startswith(_ZSTD):
        return ".json.zst"
    return ".json"
