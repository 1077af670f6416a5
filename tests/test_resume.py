"""verl_ext.launch.resume on checkpoint folders as a killed run leaves them (made here with torch.save, the way
verl writes them), and the launcher's resume step through scripts/run_grpo.sh."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_run_scripts import run, setup  # noqa: F401 - setup is a fixture

from verl_ext.launch.resume import INCOMPLETE, TRACKER, apply, plan_resume


def save(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.zeros(64)}, path)


def checkpoint(save_dir: Path, step: int, world: int = 1, kinds=("model", "optim", "extra_state"), data=True) -> Path:
    folder = save_dir / f"global_step_{step}"
    for kind in kinds:
        for rank in range(world):
            save(folder / "actor" / f"{kind}_world_size_{world}_rank_{rank}.pt")
    if data:
        save(folder / "data.pt")
    return folder


def cut(path: Path) -> None:
    """What torch.save leaves when killed midway: the start of the archive, without its directory."""
    path.write_bytes(path.read_bytes()[:100])


def test_a_clean_save_dir_resumes_where_the_tracker_says_and_changes_nothing(tmp_path: Path) -> None:
    checkpoint(tmp_path, 2)
    checkpoint(tmp_path, 4, world=2)
    (tmp_path / TRACKER).write_text("4")
    plan = plan_resume(tmp_path)
    assert (plan.step, plan.set_tracker, plan.move_aside, plan.warnings) == (4, False, [], [])


def test_a_kill_while_writing_shards_resumes_from_the_previous_checkpoint(tmp_path: Path) -> None:
    checkpoint(tmp_path, 2)
    half = checkpoint(tmp_path, 4, kinds=("model",), data=False)  # killed after the model shard
    (tmp_path / TRACKER).write_text("2")
    plan = plan_resume(tmp_path)
    assert plan.step == 2 and not plan.set_tracker
    assert [c.path for c in plan.move_aside] == [half]
    assert "optim shard of rank(s) [0] missing" in plan.warnings[0]
    apply(tmp_path, plan)
    assert not half.exists() and len(list((tmp_path / INCOMPLETE).glob("global_step_4.*"))) == 1
    assert (tmp_path / TRACKER).read_text() == "2"


def test_a_cut_shard_of_one_rank_makes_the_checkpoint_incomplete(tmp_path: Path) -> None:
    checkpoint(tmp_path, 1)
    folder = checkpoint(tmp_path, 2, world=2)
    cut(folder / "actor" / "optim_world_size_2_rank_1.pt")
    (tmp_path / TRACKER).write_text("1")
    plan = plan_resume(tmp_path)
    assert plan.step == 1 and "optim_world_size_2_rank_1.pt is cut short" in plan.warnings[0]


def test_an_empty_tracker_is_rewritten_to_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    checkpoint(tmp_path, 2)
    checkpoint(tmp_path, 4)
    (tmp_path / TRACKER).write_text("")  # killed while verl rewrote it in place
    plan = plan_resume(tmp_path)
    assert plan.step == 4 and plan.set_tracker
    assert any("unreadable" in warning for warning in plan.warnings)
    apply(tmp_path, plan)
    assert (tmp_path / TRACKER).read_text() == "4"


def test_a_tracker_naming_a_deleted_checkpoint_does_not_restart_from_step_0(tmp_path: Path) -> None:
    # max_actor_ckpt_to_keep=1: step 2 was deleted once step 4's shards were whole; the kill came before
    # data.pt and the tracker. verl alone would train from step 0.
    checkpoint(tmp_path, 4, data=False)
    (tmp_path / TRACKER).write_text("2")
    plan = plan_resume(tmp_path)
    assert plan.step == 4 and plan.set_tracker and plan.move_aside == []
    assert any("no data.pt" in warning and "data order restarted" in warning for warning in plan.warnings)


def test_nothing_complete_starts_from_scratch_loudly_and_keeps_the_pieces(tmp_path: Path) -> None:
    half = checkpoint(tmp_path, 1, kinds=("model",), data=False)
    plan = plan_resume(tmp_path)
    assert plan.step is None and [c.path for c in plan.move_aside] == [half]
    apply(tmp_path, plan)
    assert not (tmp_path / TRACKER).exists() and (tmp_path / INCOMPLETE).is_dir()


def test_an_empty_save_dir_has_nothing_to_say(tmp_path: Path) -> None:
    plan = plan_resume(tmp_path / "nothing yet")
    assert (plan.step, plan.warnings, plan.move_aside) == (None, [], [])


@pytest.mark.parametrize("dry", [True, False])
def test_the_launcher_repairs_the_save_dir_before_verl_starts_and_dry_run_only_tells(setup, dry: bool) -> None:
    tmp_path, env = setup
    save_dir = tmp_path / "ckpt"
    checkpoint(save_dir, 2)
    checkpoint(save_dir, 3, kinds=("model",), data=False)
    (save_dir / TRACKER).write_text("")
    extra = {"DRY_RUN": "1"} if dry else {"RUN_TIMEOUT": "1"}  # not dry: stop verl at once, it is not under test
    result = run(["rotation", "mmbench"], {**env, **extra}, gpus=8, tmp_path=tmp_path)
    assert f"WARNING: {save_dir}: {TRACKER} is unreadable" in result.stderr
    assert "global_step_3 is incomplete (optim shard of rank(s) [0] missing" in result.stderr
    assert f"resuming from {save_dir}/global_step_2" in result.stderr
    assert (save_dir / TRACKER).read_text() == ("" if dry else "2")
    assert (save_dir / "global_step_3").exists() == dry
