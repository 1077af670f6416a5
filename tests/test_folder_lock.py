"""verl_ext.folder_lock: one writer per folder, the holder named to the refused, no stale lock after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verl_ext.folder_lock import LOCK_NAME, FolderBusy, FolderLock, writer_of

REPO = Path(__file__).resolve().parent.parent


def test_second_holder_is_refused_with_the_first_named(tmp_path: Path) -> None:
    with FolderLock(tmp_path / "f", "a build of rotation puzzles"):
        assert "a build of rotation puzzles (pid" in (writer_of(tmp_path / "f") or "")
        with pytest.raises(FolderBusy, match=rf"in use by a build of rotation puzzles \(pid {os.getpid()} on .*; use"):
            with FolderLock(tmp_path / "f", "another", hint="use another folder"):
                pass
    assert writer_of(tmp_path / "f") is None
    with FolderLock(tmp_path / "f", "another"):  # free again after the block
        pass


def test_a_folder_without_a_lock_file_has_no_writer(tmp_path: Path) -> None:
    assert writer_of(tmp_path) is None and not (tmp_path / LOCK_NAME).exists()


def _shell_holding(folder: Path, *then: str) -> list[str]:
    """A bash script that takes the lock the way scripts/run_grpo.sh does, then runs ``then``."""
    script = (
        f'exec {{fd}}>> "$1/{LOCK_NAME}" && "$2" -m verl_ext.folder_lock hold "$1" --fd "$fd" --pid $$ '
        '--purpose "training run demo" --hint "set another SAVE_DIR" && ' + " && ".join(then)
    )
    return ["bash", "-c", script, "lock-test", str(folder), sys.executable]


def test_a_shell_keeps_the_lock_after_the_helper_exits_and_loses_it_when_killed(tmp_path: Path) -> None:
    # Its own process group, so the test can kill the shell and every child it started, by that group's id.
    shell = subprocess.Popen(
        _shell_holding(tmp_path, "echo held", "{ sleep 120; true; }"),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert shell.stdout.readline().strip() == "held"
        # The Python helper has exited; the lock lives on in the shell's open descriptor and names the shell.
        assert f"training run demo (pid {shell.pid} on" in (writer_of(tmp_path) or "")
        refused = subprocess.run(_shell_holding(tmp_path, "echo held"), capture_output=True, text=True, timeout=60)
        assert refused.returncode == 3 and "held" not in refused.stdout
        assert f"is in use by training run demo (pid {shell.pid}" in refused.stderr
        assert "set another SAVE_DIR" in refused.stderr
        # Killing the shell alone: its child (here `sleep`, in a run the trainer) inherited the descriptor and
        # keeps the folder for as long as it lives.
        os.kill(shell.pid, signal.SIGKILL)
        shell.wait()
        assert writer_of(tmp_path) is not None
    finally:
        try:
            os.killpg(shell.pid, signal.SIGKILL)  # no cleanup of any kind
        except ProcessLookupError:
            pass
        shell.wait()
    for _ in range(100):  # the kernel closes the killed processes' descriptors as they exit
        if writer_of(tmp_path) is None:
            break
        time.sleep(0.05)
    taken = subprocess.run(_shell_holding(tmp_path, "echo held"), capture_output=True, text=True, timeout=60)
    assert taken.returncode == 0 and taken.stdout.strip() == "held", taken.stderr


def test_the_helper_refuses_a_descriptor_it_was_not_given(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "verl_ext.folder_lock",
            "hold",
            str(tmp_path),
            "--fd",
            "97",
            "--pid",
            "1",
            "--purpose",
            "x",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2 and "cannot lock" in done.stderr


def test_a_waiting_holder_says_whom_it_waits_for_and_takes_the_folder_when_free(tmp_path: Path) -> None:
    script = (
        f'exec {{fd}}>> "$1/{LOCK_NAME}" && "$2" -m verl_ext.folder_lock hold "$1" --fd "$fd" --pid $$ --wait '
        '--purpose "an installation" && echo took'
    )
    with FolderLock(tmp_path, "an installation of the CPU stack"):
        waiting = subprocess.Popen(
            ["bash", "-c", script, "wait-test", str(tmp_path), sys.executable],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert waiting.stderr.readline().startswith("waiting for an installation of the CPU stack (pid")
        time.sleep(0.5)
        assert waiting.poll() is None  # still waiting while the folder is held
    out, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 0 and out.strip() == "took"
