"""A CPU training run killed with SIGKILL, twice, at chosen moments, then resumed with the same command.

Through ``scripts/run_grpo.sh`` (``trainer.resume_mode=auto``, a checkpoint every step), with the tiny model:

1. killed while writing the step-2 checkpoint (only its model shard is on disk): the tracker still names
   step 1;
2. the same command resumes from step 1, moves the half-written step 2 aside, redoes step 2 (checkpoint
   complete) and is killed in the middle of step 3 (rollouts scored, weights not yet updated);
3. the same command resumes from step 2 and finishes step 3.

The moments come from :mod:`verl_ext.cpu.pause_points`: the training worker stops there and the test kills
the whole run (its process group: launcher, trainer, Ray) with SIGKILL. Marked ``e2e`` (minutes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cpu_environment import cpu_environment, require_cpu_stack

from verl_ext.folder_lock import writer_of

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = int(os.environ.get("VERL_CPU_RUN_TIMEOUT", "1500"))


class Run:
    """One launch of the run, in its own process group so the test can kill all of it."""

    def __init__(self, work: Path, model: Path, name: str, pause_at: str | None) -> None:
        self.log = work / f"{name}.log"
        self.metrics = work / f"{name}.metrics.jsonl"
        self.pause_file = work / f"{name}.paused"
        self.save_dir = work / "checkpoints"
        env = {
            **cpu_environment(),
            "DEVICE": "cpu",
            "MODEL_PATH": str(model),
            "DATA_DIR": str(work / "data"),
            "SAVE_DIR": str(work / "checkpoints"),
            "VERL_FILE_LOGGER_PATH": str(self.metrics),
            "RUN_TIMEOUT": str(RUN_TIMEOUT_S),
            "PYTHON": sys.executable,
        }
        if pause_at:
            env.update(VERL_EXT_PAUSE_AT=pause_at, VERL_EXT_PAUSE_FILE=str(self.pause_file))
        command = [
            "bash",
            str(REPO / "scripts" / "run_grpo.sh"),
            "rotation",
            "demo",
            "trainer.total_training_steps=3",
            "trainer.save_freq=1",
            "trainer.test_freq=-1",
            "trainer.val_before_train=false",
        ]
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                command, env=env, cwd=work, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill_when_paused(self, timeout_s: float = RUN_TIMEOUT_S) -> None:
        """Wait for the pause point, then SIGKILL the whole process group and wait until none of it is left."""
        try:
            deadline = time.monotonic() + timeout_s
            while not self.pause_file.exists():
                if self.process.poll() is not None:
                    pytest.fail(
                        f"the run ended ({self.process.returncode}) before its pause point:\n{self.text()[-5000:]}"
                    )
                if time.monotonic() > deadline:
                    pytest.fail(f"no pause point reached in {timeout_s} s:\n{self.text()[-5000:]}")
                time.sleep(0.5)
        finally:
            self.kill()

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=60)
        # Every process of the run holds SAVE_DIR's lock (run_grpo.sh's descriptor, inherited): once it is free,
        # nothing of the killed run is left (a process outside the group, e.g. under `timeout`, would still hold it).
        for _ in range(600):
            if writer_of(self.save_dir) is None:
                return
            time.sleep(0.1)
        pytest.fail(f"processes of the killed run still hold {self.save_dir}: {writer_of(self.save_dir)}")

    def finish(self) -> None:
        try:
            self.process.wait(timeout=RUN_TIMEOUT_S + 120)
        finally:
            self.kill()
        assert self.process.returncode == 0, self.text()[-6000:]

    def steps(self) -> list[int]:
        if not self.metrics.exists():
            return []
        return [json.loads(line)["step"] for line in self.metrics.read_text().splitlines()]


def tracker(work: Path) -> str:
    return (work / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip()


def test_a_run_killed_mid_checkpoint_and_mid_step_resumes_from_its_last_complete_checkpoint(
    format_tiny_model_dir: Path, tmp_path: Path
) -> None:
    require_cpu_stack()
    checkpoints = tmp_path / "checkpoints"

    # 1. Killed while the step-2 checkpoint is half written.
    first = Run(tmp_path, format_tiny_model_dir, "first", pause_at="checkpoint:2")
    first.kill_when_paused()
    assert first.steps() == [1]
    assert tracker(tmp_path) == "1"
    half = checkpoints / "global_step_2" / "actor"
    assert (half / "model_world_size_1_rank_0.pt").is_file() and not (half / "optim_world_size_1_rank_0.pt").exists()

    # 2. Resumes from step 1 and is killed in the middle of step 3.
    second = Run(tmp_path, format_tiny_model_dir, "second", pause_at="update_actor:2")
    second.kill_when_paused()
    text = second.text()
    assert "global_step_2 is incomplete (optim shard of rank(s) [0] missing" in text
    assert f"resuming from {checkpoints}/global_step_1" in text
    assert second.steps() == [2]  # step 2 again, then the kill inside step 3
    assert tracker(tmp_path) == "2"
    assert len(list((checkpoints / "incomplete").glob("global_step_2.*"))) == 1
    assert not (checkpoints / "global_step_3").exists()

    # 3. Resumes from step 2 and finishes.
    third = Run(tmp_path, format_tiny_model_dir, "third", pause_at=None)
    third.finish()
    assert f"resuming from {checkpoints}/global_step_2" in third.text()
    assert third.steps() == [3]
    assert tracker(tmp_path) == "3"
    assert (checkpoints / "global_step_3" / "data.pt").is_file()
