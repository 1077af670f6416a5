"""The reward as verl 0.9.1 uses it: Hydra keys, verl's own loaders and reward manager, parquet rows.

Every test here goes through verl's code (config composition, ``get_custom_reward_fn``,
``load_reward_manager`` + ``NaiveRewardManager.run_single``, ``PPOTrainer._build_replay_buffer``), not around it.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("verl")

# verl's reward manager module imports transformers' model classes, which import torchvision: on a CPU-only
# torch the CUDA torchvision wheel needs the training helper's schema fix first.
from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable  # noqa: E402

ensure_torchvision_importable()

from verl_ext.reward import RESULT_KEYS  # noqa: E402
from verl_ext.tasks import TASKS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REWARD_FILE = REPO / "verl_ext" / "reward.py"
SAMPLER_FILE = REPO / "verl_ext" / "task_metrics.py"


def compose(overrides: list[str]):
    """verl's own ``ppo_trainer`` config with ``overrides``, as ``python -m verl.trainer.main_ppo`` builds it."""
    import verl
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=overrides)


@pytest.fixture(scope="module")
def config():
    return compose(
        [
            f"reward.custom_reward_function.path={REWARD_FILE}",
            "reward.custom_reward_function.name=compute_score",
            "+reward.custom_reward_function.reward_kwargs.format_weight=0.2",
            "+reward.custom_reward_function.reward_kwargs.acc_weight=0.8",
            f"trainer.v1.sampler.custom_sampler.path={SAMPLER_FILE}",
            "trainer.v1.sampler.custom_sampler.name=TaskMetricsReplayBuffer",
        ]
    )


# --------------------------------------------------------------------------------------- rows


@pytest.fixture(scope="module")
def parquet_rows(tmp_path_factory) -> list[dict[str, Any]]:
    """Rows of every registered task, written by the project's builder (a mix over the bundled demo photos)
    and read back from parquet the way verl's dataset reads them."""
    from verl_ext.builder import build
    from verl_ext.builder.plan import BuildConfig

    output = tmp_path_factory.mktemp("rows")
    mix = ",".join(f"{name}:1" for name in sorted(TASKS))
    build(BuildConfig(task="mix", tasks=mix, source="demo", output=output, workers=1, progress=False))
    rows = [
        row for split in ("train", "val") for row in pd.read_parquet(output / f"{split}.parquet").to_dict("records")
    ]
    assert {row["extra_info"]["task"] for row in rows} == set(TASKS), "the demo mix lost a task"
    return rows


def responses_for(row: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """name -> (response, expected acc)."""
    truth = row["reward_model"]["ground_truth"]
    return {
        "right": (f"<think>look</think><answer>{truth}</answer>", 1.0),
        "hedged": (f"<think>look</think><answer>{truth} or {truth}x</answer>", 0.0),
        "no tags": (truth, 0.0),
    }


# ------------------------------------------------------------------------------- custom reward fn


def test_verl_loads_compute_score_by_path_and_passes_kwargs(config, parquet_rows) -> None:
    from verl.trainer.ppo.reward import get_custom_reward_fn

    fn = get_custom_reward_fn(config)
    assert fn is not None
    for row in parquet_rows:
        for name, (response, acc) in responses_for(row).items():
            result = fn(
                data_source=row["data_source"],
                solution_str=response,
                ground_truth=row["reward_model"]["ground_truth"],
                extra_info=row["extra_info"],
            )
            assert tuple(result) == RESULT_KEYS
            assert result["acc"] == acc, (row["data_source"], name, result)
        right = fn(
            data_source=row["data_source"],
            solution_str=responses_for(row)["right"][0].replace("<think>look</think>", ""),
            ground_truth=row["reward_model"]["ground_truth"],
            extra_info=row["extra_info"],
        )
        # reward_kwargs from the config reached the function: acc 0.8 / format 0.2
        assert right["score"] == pytest.approx(0.8)


def test_pkg_path_works_too() -> None:
    from verl.trainer.ppo.reward import get_custom_reward_fn

    fn = get_custom_reward_fn(compose(["reward.custom_reward_function.path=pkg://verl_ext.reward"]))
    result = fn(data_source="ssl_rotation", solution_str="x", ground_truth="0", extra_info={"task": "rotation"})
    assert tuple(result) == RESULT_KEYS


class CharTokenizer:
    """Stands in for the model tokenizer: token ids are code points (the reward manager only decodes)."""

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        return "".join(chr(int(i)) for i in ids)


def manager_input(row: dict[str, Any], response: str) -> Any:
    """One DataProto sample shaped as the reward loop hands it to ``run_single``."""
    from verl import DataProto

    prompt = torch.tensor([[1, 2, 3]])
    ids = torch.tensor([[ord(c) for c in response] + [0, 0]])  # right padding, as verl pads responses
    mask = torch.cat([torch.ones(1, 3), torch.ones(1, len(response)), torch.zeros(1, 2)], dim=1).long()
    return DataProto.from_dict(
        tensors={"prompts": prompt, "responses": ids, "attention_mask": mask},
        non_tensors={
            "data_source": np.array([row["data_source"]], dtype=object),
            "reward_model": np.array([row["reward_model"]], dtype=object),
            "extra_info": np.array([dict(row["extra_info"])], dtype=object),
        },
    )


def test_verl_naive_reward_manager_runs_it(config, parquet_rows) -> None:
    from verl.trainer.ppo.reward import load_reward_manager

    manager = load_reward_manager(config, CharTokenizer())
    for row in parquet_rows:
        for name, (response, acc) in responses_for(row).items():
            out = manager.loop.run_until_complete(manager.run_single(manager_input(row, response)))
            info = out["reward_extra_info"]
            assert tuple(info) == RESULT_KEYS, name
            assert info["acc"] == acc, (row["data_source"], name, info)
            assert out["reward_score"] == info["score"]


def test_reward_loop_keys_are_one_column_set_for_a_mixed_batch(config, parquet_rows) -> None:
    """verl builds its columns from the first sample's keys (``RewardLoopManager.compute_rm_score``)."""
    from verl.trainer.ppo.reward import load_reward_manager

    manager = load_reward_manager(config, CharTokenizer())
    infos = [
        manager.loop.run_until_complete(manager.run_single(manager_input(row, response)))["reward_extra_info"]
        for row in parquet_rows
        for response, _ in responses_for(row).values()
    ]
    keys = list(infos[0])
    columns = {key: np.array([info[key] for info in infos]) for key in keys}
    assert all(column.dtype == np.float64 for column in columns.values())
    assert all(list(info) == keys for info in infos)


# --------------------------------------------------------------------------- per-task training metrics


def test_verl_trainer_builds_our_replay_buffer(config) -> None:
    """``PPOTrainer._build_replay_buffer`` (verl's code) resolves the Hydra keys to our class."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    fake_trainer = SimpleNamespace(
        config=config, trainer_mode=config.trainer.v1.trainer_mode, _add_prompts_to_generate=lambda n: n
    )
    buffer = PPOTrainer._build_replay_buffer(fake_trainer)
    assert type(buffer).__name__ == "TaskMetricsReplayBuffer"
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    assert isinstance(buffer, ReplayBuffer)


def test_group_filtering_reaches_our_replay_buffer() -> None:
    """The project's config with ``algorithm.filter_groups`` on: verl builds our buffer (its own code,
    ``PPOTrainer._build_replay_buffer``) with the filtering arguments it gives its built-in one."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    from verl_ext.launch.preflight import compose as compose_project

    overrides = ["algorithm.filter_groups.enable=true", "algorithm.filter_groups.metric=acc"]
    config = compose_project(REPO / "configs", "grpo_cpu_tiny", [*overrides, "data.train_batch_size=8"])
    fake_trainer = SimpleNamespace(config=config, trainer_mode="sync", _add_prompts_to_generate=lambda n: n)
    buffer = PPOTrainer._build_replay_buffer(fake_trainer)
    assert type(buffer).__name__ == "TaskMetricsReplayBuffer"
    assert (buffer.filter_groups_metric, buffer.train_batch_size, buffer.gen_batch_size) == ("acc", 8, 1)
    plain = PPOTrainer._build_replay_buffer(
        SimpleNamespace(
            config=compose_project(REPO / "configs", "grpo_cpu_tiny", []),
            trainer_mode="sync",
            _add_prompts_to_generate=lambda n: n,
        )
    )
    assert plain.filter_groups_metric is None
