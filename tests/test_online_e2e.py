"""Online puzzles with the adaptive curriculum in a real CPU training run, stopped and resumed.

Through ``scripts/run_grpo.sh`` with ``ONLINE=1 CURRICULUM=adaptive`` (tiny model, demo pictures, one loader
worker as the GPU recipe uses workers, a checkpoint every step):

* an uninterrupted run of 6 steps;
* the same run in two launches: 3 steps, then the same command with 6 steps, which resumes from step 3.

The curriculum's knobs make it unlock the next level as soon as it has seen 4 groups of the hardest open one,
whatever the (random) model answers, so later steps train on two levels. With one worker the loader asks for a
step's batch two steps early, so step ``s`` draws its levels from the state of step ``s - 3``. Checked: every
step logs the curriculum metrics and writes its state; both runs train on the same puzzle positions and pictures,
step by step, and (their rewards being equal) at the same levels; every puzzle a step trained on is the one the
stream makes at that position with the state the loader had; the resumed run continued from the checkpoint's
state. Marked ``e2e`` (minutes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cpu_environment import cpu_environment, require_cpu_stack

from verl_ext.curriculum import CurriculumConfig
from verl_ext.online.dataset import OnlineSettings, PuzzleStream
from verl_ext.online.pictures import PICTURES_FILE, read_pictures
from verl_ext.online.state import StateDir, parse_level

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = int(os.environ.get("VERL_CPU_RUN_TIMEOUT", "1500"))
BATCH = 4  # configs/grpo_cpu_tiny.yaml: data.train_batch_size
WORKERS = 1
STEPS = 6
# Unlock the next level whatever the answers: mastered above 1% (an estimate starts at 50% and a step's 4 groups
# lower it by a fifth at most), after 4 groups of the hardest open level.
KNOBS = {"master": 0.01, "collapse": 0.0, "min_groups": 4}


def launch(work: Path, model: Path, save_dir: Path, steps: int, name: str) -> Path:
    """One launch of the run to ``steps`` steps; returns its metrics file. The launch's process group is stopped
    by its pid should it outlive the timeout."""
    metrics = work / f"{name}.metrics.jsonl"
    log = work / f"{name}.log"
    env = {
        **cpu_environment(),
        "DEVICE": "cpu",
        "MODEL_PATH": str(model),
        "DATA_DIR": str(work / "data"),
        "SAVE_DIR": str(save_dir),
        "VERL_FILE_LOGGER_PATH": str(metrics),
        "RUN_TIMEOUT": str(RUN_TIMEOUT_S),
        "PYTHON": sys.executable,
        "ONLINE": "1",
        "CURRICULUM": "adaptive",
    }
    command = [
        "bash",
        str(REPO / "scripts" / "run_grpo.sh"),
        "rotation",
        "demo",
        f"trainer.total_training_steps={steps}",
        "trainer.save_freq=1",
        "trainer.test_freq=-1",
        "trainer.val_before_train=false",
        f"data.dataloader_num_workers={WORKERS}",
        *(f"data.online.curriculum.{key}={value}" for key, value in KNOBS.items()),
    ]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=env, cwd=work, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=RUN_TIMEOUT_S + 120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = 124
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
    assert code == 0, f"{name} exited {code}:\n{tail}"
    return metrics


def logged_steps(metrics: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return {row["step"]: row["data"] for row in rows if "train/curriculum/rotation/frontier" in row.get("data", {})}


def served(save_dir: Path) -> dict[int, list[tuple[int, str, int]]]:
    """Per step: (position, picture, level) of every group the step trained on, from the curriculum's state files."""
    states = StateDir(save_dir / "curriculum")
    return {v: sorted((g.position, g.content_id, g.level) for g in states.groups(v)) for v in states.versions()}


def expected_stream(work: Path, save_dir: Path) -> PuzzleStream:
    """The stream the run's loader served, rebuilt outside the run from its picture index and state files."""
    settings = OnlineSettings(
        pictures=work / "data" / PICTURES_FILE,
        epochs=1000,
        state_dir=save_dir / "curriculum",
        curriculum=CurriculumConfig(group_size=4, **KNOBS),
    )
    data = {"train_batch_size": BATCH, "dataloader_num_workers": WORKERS}
    return PuzzleStream(read_pictures(settings.pictures), settings, data)


def test_online_curriculum_run_resumes_with_its_state_and_serves_the_same_puzzles(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    require_cpu_stack()
    whole = tmp_path / "whole"
    split = tmp_path / "split"
    logs = launch(tmp_path, tiny_model_dir, whole, STEPS, "whole")
    first = launch(tmp_path, tiny_model_dir, split, STEPS // 2, "first")
    second = launch(tmp_path, tiny_model_dir, split, STEPS, "second")

    # Metrics every step, in each launch; a checkpoint per step.
    steps = list(range(1, STEPS + 1))
    assert sorted(logged_steps(logs)) == steps
    assert sorted(logged_steps(first)) + sorted(logged_steps(second)) == steps
    assert (split / f"global_step_{STEPS}" / "data.pt").is_file()
    for metrics in (logs, first, second):
        for data in logged_steps(metrics).values():
            assert data["train/curriculum/rotation/groups"] == BATCH
            assert data["train/curriculum/rotation/frontier"] >= 1
            assert 0.0 <= data["train/curriculum/rotation/level_0/solve_rate"] <= 1.0

    # The same positions and pictures, step by step, in the whole run and the interrupted one.
    whole_served, split_served = served(whole), served(split)
    assert sorted(whole_served) == sorted(split_served) == steps
    for step in steps:
        assert [p for p, _, _ in split_served[step]] == list(range((step - 1) * BATCH, step * BATCH))
        assert [(p, c) for p, c, _ in whole_served[step]] == [(p, c) for p, c, _ in split_served[step]]
    # Each trained puzzle is the stream's puzzle at its position under the state the loader had: picture and level.
    for save_dir, record in ((whole, whole_served), (split, split_served)):
        stream = expected_stream(tmp_path, save_dir)
        for groups in record.values():
            for position, picture, level in groups:
                row = stream[position]
                assert row["extra_info"]["content_id"] == picture
                assert parse_level(row["extra_info"]["difficulty"]) == level
    # Levels above the easiest were trained on, once the first update reached the loader (step 4 on).
    assert {level for step in steps[3:] for _, _, level in split_served[step]} - {0}
    assert {level for step in steps[:3] for _, _, level in split_served[step]} == {0}

    config = CurriculumConfig(group_size=4, **KNOBS)
    states = StateDir(split / "curriculum")
    # The resumed run continued from the checkpoint's state: state 4 = state 3 + step 4's groups.
    expected = states.read(STEPS // 2, config)
    expected.update(states.groups(STEPS // 2 + 1))
    assert states.read(STEPS // 2 + 1, config).state_dict() == expected.state_dict()
    # Equal rewards (the random model answers nothing right) make equal curricula: the same levels, step by step.
    accuracies = [[g.accuracy for g in StateDir(d / "curriculum").groups(s)] for d in (whole, split) for s in steps]
    if accuracies[:STEPS] == accuracies[STEPS:]:
        assert whole_served == split_served
        assert (
            StateDir(whole / "curriculum").read(STEPS, config).state_dict() == states.read(STEPS, config).state_dict()
        )
