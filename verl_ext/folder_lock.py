"""One writer at a time for a shared folder: a build's output folder, a training run's ``SAVE_DIR``.

Two builds writing one output folder, or two training runs writing one checkpoint folder, each finish "fine"
and leave a folder that belongs to neither. A :class:`FolderLock` is an exclusive ``flock`` on the hidden file
``<folder>/.verl_ext.lock``; the second writer is refused at once, with a message naming the first (pid, host,
what it does, since when), instead of waiting: the second build would replace the first one's puzzles and the
second run would interleave checkpoints with the first, so waiting would only postpone the conflict.

Why ``flock``: the kernel drops the lock when the last descriptor of the open file is closed, so a writer that
crashes or is killed (even with SIGKILL) never leaves a stale lock behind, and no pid file needs cleaning up.
The lock belongs to the open file, not the process: a shell script can open the file, have
``python -m verl_ext.folder_lock hold --fd N`` take the lock on that descriptor, and keep it (and pass it to the
children that inherit the descriptor) for as long as the script and those children run. On Linux NFS, ``flock``
is carried over POSIX byte-range locks, so the lock also holds between the nodes of a cluster sharing the folder.

Readers that only need the folder to be complete (the launcher's data checks) call :func:`writer_of`, which
names the writer without waiting for it.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

LOCK_NAME = ".verl_ext.lock"


class FolderBusy(RuntimeError):
    """Another process holds the folder's lock."""


def lock_path(folder: Path) -> Path:
    return Path(folder) / LOCK_NAME


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process (it has not written who it is yet)"
    started = holder.get("started")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    who = f"pid {holder.get('pid')} on {holder.get('host')}, since {since}"
    return f"{holder.get('purpose', 'another process')} ({who})"


def _read_holder(folder: Path) -> dict[str, Any] | None:
    # By path: the caller's descriptor may be write-only (a shell's `exec {fd}>>file`).
    try:
        holder = json.loads(lock_path(folder).read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return None  # empty or being rewritten
    return holder if isinstance(holder, dict) else None


def _write_holder(fd: int, purpose: str, pid: int) -> None:
    holder = {"pid": pid, "host": socket.gethostname(), "started": time.time(), "purpose": purpose}
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(holder) + "\n").encode())  # at offset 0 after the truncate, also in append mode


def _try_lock(fd: int, shared: bool = False) -> bool:
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def hold(fd: int, folder: Path, purpose: str, pid: int | None = None, hint: str = "", wait: bool = False) -> None:
    """Take the exclusive lock of ``folder`` on the already open descriptor ``fd`` of its lock file.

    Raises :class:`FolderBusy` naming the holder when another open file holds it, or with ``wait`` says whom it
    waits for (stderr) and blocks until the lock is free. ``pid`` is the process that should be named to others
    (the script that keeps the descriptor open), by default this one.
    """
    if not _try_lock(fd):
        if wait:
            print(f"waiting for {_describe(_read_holder(folder))} to release {folder}", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            raise FolderBusy(f"{folder} is in use by {_describe(_read_holder(folder))}" + (f"; {hint}" if hint else ""))
    _write_holder(fd, purpose, os.getpid() if pid is None else pid)


def writer_of(folder: Path) -> str | None:
    """A description of the process that holds ``folder``'s lock now, or None when nobody does."""
    path = lock_path(folder)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if _try_lock(fd, shared=True):
            return None  # the shared lock is dropped when fd closes below
        return _describe(_read_holder(folder))
    finally:
        os.close(fd)


class FolderLock:
    """``with FolderLock(folder, "build of rotation puzzles"):`` -- exclusive use of ``folder`` inside the block.

    The folder is created when missing. Raises :class:`FolderBusy` at once when another process holds it.
    """

    def __init__(self, folder: Path, purpose: str, hint: str = "") -> None:
        self.folder = Path(folder)
        self.purpose = purpose
        self.hint = hint
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path(self.folder), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            hold(fd, self.folder, self.purpose, hint=self.hint)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock; the file stays (removing it would race with a new holder)
            self._fd = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Lock a folder for a shell script (see the module docstring).")
    commands = parser.add_subparsers(dest="command", required=True)
    take = commands.add_parser("hold", help="take the lock on a descriptor the calling shell opened")
    take.add_argument("folder", type=Path)
    take.add_argument("--fd", type=int, required=True, help=f"descriptor of FOLDER/{LOCK_NAME}, opened by the caller")
    take.add_argument("--pid", type=int, required=True, help="the process to name to others (the calling script)")
    take.add_argument("--purpose", required=True, help="what the holder does, shown to a refused process")
    take.add_argument("--hint", default="", help="what a refused process should do instead")
    take.add_argument("--wait", action="store_true", help="wait for the holder to finish instead of refusing")
    who = commands.add_parser("writer", help="print who holds the folder's lock (nothing when free)")
    who.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "writer":
        holder = writer_of(args.folder)
        if holder:
            print(holder)
        return 0
    try:
        hold(args.fd, args.folder, args.purpose, pid=args.pid, hint=args.hint, wait=args.wait)
    except FolderBusy as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 3
    except OSError as error:  # e.g. a descriptor the caller did not open
        print(f"ERROR: cannot lock {args.folder} on descriptor {args.fd}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
