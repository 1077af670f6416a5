"""scripts/bench_learning.sh hands verl the recipe it documents (DRY_RUN=1: the launcher's command, nothing run)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from test_run_scripts import REPO, launcher_setup, overrides_of, write_dataset, write_model

BENCH = REPO / "scripts" / "bench_learning.sh"


def bench_folder(out: Path) -> Path:
    """A benchmark folder with its model and puzzles present, so the benchmark builds neither."""
    write_model(out / "model")
    write_dataset(out / "data", source="scenes", rows={"test": 32, "dev": 3}, max_prompt_tokens=256)
    return out


def bench(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    tmp_path, env = launcher_setup(tmp_path)
    env = {**env, "BENCH_DIR": str(bench_folder(tmp_path / "bench")), "DRY_RUN": "1", **settings}
    return subprocess.run(["bash", str(BENCH)], env=env, capture_output=True, text=True, timeout=300)


def command_of(result: subprocess.CompletedProcess) -> dict[str, str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return overrides_of(shlex.split(result.stdout.strip().splitlines()[-1]))


def test_the_benchmark_trains_the_answer_token_at_its_rate(tmp_path: Path) -> None:
    overrides = command_of(bench(tmp_path))
    assert overrides["actor_rollout_ref.rollout.agent.default_agent_loop"] == "seeded_answer_token"
    assert overrides["actor_rollout_ref.actor.optim.lr"] == "2e-4"
    assert overrides["data.train_batch_size"] == "16" and overrides["actor_rollout_ref.rollout.n"] == "8"


def test_every_response_token_on_request(tmp_path: Path) -> None:
    overrides = command_of(bench(tmp_path, LOSS_ON="response", LR="1e-4"))
    assert overrides["actor_rollout_ref.rollout.agent.default_agent_loop"] == "seeded_single_turn"
    assert overrides["actor_rollout_ref.actor.optim.lr"] == "1e-4"


@pytest.mark.parametrize(("setting", "message"), [("LOSS_ON", "LOSS_ON=tokens"), ("SETTING", "SETTING=tokens")])
def test_an_unknown_setting_is_a_clear_message(tmp_path: Path, setting: str, message: str) -> None:
    result = bench(tmp_path, **{setting: "tokens"})
    assert result.returncode != 0 and message in result.stderr
