"""A TERM sent to a launcher by pid stops what it started: verl (here a stand-in that records the signal), through
`timeout` and through a script that calls the launcher (scripts/lib/common.sh, wait_child). Without that, bash ends
on the signal and its child trains on with no one left to stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_bench_learning import bench_folder
from test_run_scripts import REPO, RUN, fake_nvidia_smi, launcher_setup

# verl's trainer, as far as a signal is concerned: it takes a moment to shut down (Ray's does), and says so.
STAND_IN = """\
import os, signal, sys, time
from pathlib import Path

record = Path(os.environ["STAND_IN_RECORD"])

def shut_down(signum, frame):
    print("stand-in: shutting down", flush=True)
    time.sleep(0.5)
    (record / "signal").write_text(signal.Signals(signum).name)
    print("stand-in: shut down", flush=True)
    sys.exit(15)

signal.signal(signal.SIGTERM, shut_down)
(record / "pid").write_text(str(os.getpid()))
print("stand-in: training", flush=True)
time.sleep(300)
"""


def stand_in_python(tmp_path: Path) -> Path:
    """An interpreter that runs the stand-in for `-m verl.trainer.main_ppo` and the real python for the rest."""
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    wrapper = tmp_path / "python"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = -m ] && [ "$2" = verl.trainer.main_ppo ] && exec "{sys.executable}" "{tmp_path / "stand_in.py"}"\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def term_once_training(command: list[str], env: dict[str, str], record: Path) -> tuple[int, str]:
    """Start the script, send it TERM once the stand-in trains, and return its exit status and output. Fails if the
    stand-in outlives the script (and then stops it, so a failing run leaves nothing behind)."""
    record.mkdir()
    script = subprocess.Popen(
        command,
        env={**env, "STAND_IN_RECORD": str(record)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, stand_in = "", None
    try:
        deadline = time.monotonic() + 120
        while not (record / "pid").exists():  # written once the stand-in's TERM handler is in place
            if script.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the stand-in never started:\n{script.communicate()[0]}")
            time.sleep(0.1)
        stand_in = int((record / "pid").read_text())
        script.send_signal(signal.SIGTERM)
        try:
            # The output pipe stays open while anything the script started lives, so this also waits for those.
            output, _ = script.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("the script, or something it started, was still running 30 s after TERM")
        deadline = time.monotonic() + 10
        while alive(stand_in) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(stand_in), f"the stand-in ({stand_in}) outlived the script:\n{output}"
    finally:
        for pid in (script.pid, stand_in):
            if pid is not None and alive(pid):
                os.kill(pid, signal.SIGKILL)
        script.wait()
    return script.returncode, output


@pytest.mark.parametrize("run_timeout", ["", "10m"], ids=["plain", "under-timeout"])
def test_term_to_the_launcher_stops_verl_and_keeps_its_last_lines(tmp_path, run_timeout):
    tmp_path, env = launcher_setup(tmp_path)
    env = {
        **env,
        "PYTHON": str(stand_in_python(tmp_path)),
        "RUN_TIMEOUT": run_timeout,
        "PATH": f"{fake_nvidia_smi(tmp_path / 'bin', 8)}{os.pathsep}{env['PATH']}",
    }
    status, output = term_once_training(["bash", str(RUN), "rotation", "mmbench"], env, tmp_path / "record")
    assert (tmp_path / "record" / "signal").read_text() == "SIGTERM"
    assert status == 128 + signal.SIGTERM, output
    assert "stopped by SIGTERM" in output and "stand-in: shut down" in output
    # The log that tee writes holds the stand-in's last line: the launcher waited for it.
    (log,) = (tmp_path / "ckpt").glob("train_*.log")
    assert "stand-in: shut down" in log.read_text()


def test_term_to_a_script_that_calls_the_launcher_stops_verl(tmp_path):
    """bench_learning.sh runs run_grpo.sh, which runs verl under `timeout`: three levels, one TERM."""
    tmp_path, env = launcher_setup(tmp_path)
    bench = bench_folder(tmp_path / "bench")
    env = {**env, "PYTHON": str(stand_in_python(tmp_path)), "BENCH_DIR": str(bench)}
    status, _ = term_once_training(["bash", str(REPO / "scripts" / "bench_learning.sh")], env, tmp_path / "record")
    assert (tmp_path / "record" / "signal").read_text() == "SIGTERM"
    assert status == 128 + signal.SIGTERM
    assert "stand-in: shut down" in (bench / "train_console.log").read_text()
