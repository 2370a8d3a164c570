"""A stack a killed ``pulumi`` left unreadable in a file backend, repaired by cancel and reap.

The on-disk states are the ones pulumi 3.274.1 leaves (see
condukt_egress/automation/_recovery.py): a SIGKILL between fileblob's
truncation of ``<stack>.json.attrs`` and its write leaves that file empty
and the CLI's lock behind; every read of the stack then fails with
``failed to load checkpoint: EOF``. Reproduced on the real engine by killing
the CLI at its write of that file (strace's syscall injection); here the
same files are built by hand, and the scripted CLI of tests/test_automation.py
reads and locks them as the real one does.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from condukt_egress.automation import SessionBusyError, stack_name
from condukt_egress.automation._lifecycle import recover_stacks
from condukt_egress.automation._recovery import lock_holders, readable, recover_stack
from tests.test_automation import FakeCli
from tests.test_automation_lifecycle import history_at, listed, recorded

PROJECT = "condukt-egress"
CHECKPOINT = {"version": 3, "checkpoint": {"stack": "s", "latest": {"resources": [{"urn": "u"}]}}}
OLDER = {"version": 3, "checkpoint": {"stack": "s", "latest": {"resources": []}}}
ATTRS = {"user.content_type": "application/json", "md5": "AAAA"}


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def stack_dir(backend: Path) -> Path:
    folder = backend / ".pulumi" / "stacks" / PROJECT
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def put(path: Path, data: bytes, attrs: bytes | None = None) -> Path:
    """An object as fileblob writes it: the data and its ``.attrs`` metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if attrs is not None:
        Path(f"{path}.attrs").write_bytes(attrs)
    return path


def lock(backend: Path, name: str, pid: int, host: str | None = None) -> Path:
    content = {"pid": pid, "username": "u", "hostname": host or socket.gethostname()}
    content["timestamp"] = "2026-12-07T09:00:00Z"
    path = backend / ".pulumi" / "locks" / "organization" / PROJECT / name / f"{pid}.json"
    return put(path, json.dumps(content).encode(), json.dumps(ATTRS).encode())


def killed_mid_write(backend: Path, name: str) -> Path:
    """What a CLI killed inside fileblob's setAttrs of the checkpoint leaves."""
    checkpoint = put(stack_dir(backend) / f"{name}.json", json.dumps(CHECKPOINT).encode(), b"")
    put(Path(f"{checkpoint}.bak"), json.dumps(OLDER).encode(), json.dumps(ATTRS).encode())
    lock(backend, name, dead_pid())
    return checkpoint


# --- the repair, on disk ------------------------------------------------------------


def test_an_empty_metadata_file_and_a_dead_lock_are_removed_and_the_state_kept(
    tmp_path: Path,
) -> None:
    checkpoint = killed_mid_write(tmp_path, "session-a")
    before = checkpoint.read_bytes()
    done = recover_stack(tmp_path, PROJECT, "session-a")
    assert len(done) == 2, done
    assert "no longer runs" in done[0]
    assert "session-a.json.attrs" in done[1]
    assert checkpoint.read_bytes() == before, "the checkpoint itself was whole: kept as is"
    assert not Path(f"{checkpoint}.attrs").exists()
    assert lock_holders(tmp_path, PROJECT, "session-a") == []
    assert recover_stack(tmp_path, PROJECT, "session-a") == [], "a healthy stack is left alone"


@pytest.mark.parametrize("holder", ["this process", "another host"])
def test_a_stack_locked_by_a_live_or_unknown_process_is_not_touched(
    tmp_path: Path, holder: str
) -> None:
    checkpoint = killed_mid_write(tmp_path, "session-a")
    if holder == "this process":
        lock(tmp_path, "session-a", os.getpid())
    else:
        lock(tmp_path, "session-a", 1, host="another-replica")
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert recover_stack(tmp_path, PROJECT, "session-a") == []
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == files
    assert Path(f"{checkpoint}.attrs").read_bytes() == b"", "maybe a live writer's, mid-write"


def test_an_empty_checkpoint_comes_back_from_the_bak(tmp_path: Path) -> None:
    checkpoint = killed_mid_write(tmp_path, "session-a")
    checkpoint.write_bytes(b"")
    done = recover_stack(tmp_path, PROJECT, "session-a")
    assert "restored session-a.json from session-a.json.bak" in done[-1], done
    assert json.loads(checkpoint.read_bytes()) == OLDER
    assert not Path(f"{checkpoint}.attrs").exists()
    aside = list((tmp_path / ".pulumi" / "backups" / PROJECT / "session-a").iterdir())
    assert [p.read_bytes() for p in aside] == [b""], "the unreadable file is kept aside"
    assert recover_stack(tmp_path, PROJECT, "session-a") == []


def test_without_a_good_bak_the_newest_history_checkpoint_comes_back(tmp_path: Path) -> None:
    checkpoint = killed_mid_write(tmp_path, "session-a")
    checkpoint.write_bytes(b'{"version": 3, "checkp')  # torn by a crash, not a kill
    Path(f"{checkpoint}.bak").write_bytes(b"")
    history = tmp_path / ".pulumi" / "history" / PROJECT / "session-a"
    for stamp, content in ((1796634708636820663, OLDER), (1796634709000000000, CHECKPOINT)):
        put(
            history / f"session-a-{stamp}.checkpoint.json.gz",
            gzip.compress(json.dumps(content).encode()),
            json.dumps(ATTRS).encode(),
        )
    done = recover_stack(tmp_path, PROJECT, "session-a")
    assert "from session-a-1796634709000000000.checkpoint.json.gz" in done[-1], done
    restored = stack_dir(tmp_path) / "session-a.json.gz"
    assert json.loads(gzip.decompress(restored.read_bytes())) == CHECKPOINT
    assert not checkpoint.exists(), "one variant left, so the CLI reads the restored one"


def test_with_no_readable_copy_it_says_how_to_restore_by_hand(tmp_path: Path) -> None:
    checkpoint = killed_mid_write(tmp_path, "session-a")
    checkpoint.write_bytes(b"")
    Path(f"{checkpoint}.bak").write_bytes(b"\x1f\x8b\x08 torn")
    done = recover_stack(tmp_path, PROJECT, "session-a")
    assert "`pulumi stack import`" in done[-1], done
    assert checkpoint.read_bytes() == b""


def test_what_counts_as_a_readable_checkpoint() -> None:
    assert readable(json.dumps(CHECKPOINT).encode())
    assert readable(gzip.compress(json.dumps(CHECKPOINT).encode()))
    assert not readable(b"")
    assert not readable(json.dumps(ATTRS).encode()), "a metadata file is no checkpoint"
    assert not readable(gzip.compress(json.dumps(CHECKPOINT).encode())[:-8])


# --- through SessionStacks and the scripted CLI ----------------------------------------


@pytest.fixture
def fake(fake: FakeCli, tmp_path: Path) -> FakeCli:
    """The shared scripted CLI, reading the file backend as the real one does."""
    fake.answer("file_backend", dir=str(tmp_path / "state" / "backend"))
    return fake


def test_cancel_repairs_a_stack_a_killed_up_left_so_destroy_works(
    fake: FakeCli, tmp_path: Path
) -> None:
    stacks = fake.stacks(tmp_path / "state")
    killed_mid_write(tmp_path / "state" / "backend", stack_name("killed-1"))
    with pytest.raises(SessionBusyError, match=r"call cancel\(session_id\)"):
        stacks.destroy("killed-1", refresh=True)
    assert stacks.cancel("killed-1") is True
    stacks.destroy("killed-1", refresh=True)
    assert not stacks.work_dir("killed-1").exists()


def test_reap_repairs_killed_stacks_before_listing_and_reaps_them(
    fake: FakeCli, tmp_path: Path
) -> None:
    old = datetime.now(UTC) - timedelta(hours=5)
    stacks = fake.stacks(tmp_path / "state")
    recorded(stacks, "killed-1")
    killed_mid_write(tmp_path / "state" / "backend", stack_name("killed-1"))
    fake.answer("stack ls", stdout=listed(("killed-1", old, False)))
    fake.answer("stack history", stdout=history_at(old))
    assert stacks.reap(older_than=60) == ["killed-1"]
    assert "destroy" in fake.commands()


def test_a_session_busy_in_this_process_is_left_alone(fake: FakeCli, tmp_path: Path) -> None:
    stacks = fake.stacks(tmp_path / "state")
    name = stack_name("running-1")
    checkpoint = killed_mid_write(tmp_path / "state" / "backend", name)
    stacks._busy[name] = "up"  # claimed here: its CLI may not hold the lock yet
    recover_stacks(stacks)
    assert Path(f"{checkpoint}.attrs").read_bytes() == b""
    del stacks._busy[name]
    recover_stacks(stacks)
    assert not Path(f"{checkpoint}.attrs").exists()
