"""The GPU training configs: they compose on top of verl's ppo_trainer, carry the SSL4RL recipe, and pass verl's
own config validation for the GPU layouts the README describes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"
GPU_CONFIGS = ("grpo_qwen2_5_vl", "grpo_qwen2_5_vl_7b")


def compose(name: str, overrides: list[str] | None = None):
    """Compose a config the way `python -m verl.trainer.main_ppo --config-dir=configs --config-name=NAME` does."""
    from verl_ext.cpu import import_hooks

    import_hooks.install()  # verl's config package imports torchvision, which needs the fix without a GPU
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return hydra_compose(name, overrides=["hydra.searchpath=[pkg://verl.trainer.config]", *(overrides or [])])


@pytest.fixture(scope="module")
def base():
    return compose("grpo_qwen2_5_vl")


def test_base_config_is_the_ssl4rl_3b_recipe(base):
    actor, rollout = base.actor_rollout_ref.actor, base.actor_rollout_ref.rollout
    assert base.algorithm.adv_estimator == "grpo"
    assert base.algorithm.use_kl_in_reward is False
    assert actor.optim.lr == pytest.approx(1e-6)
    assert actor.optim.lr_scheduler_type == "constant"
    assert base.data.train_batch_size == 512
    assert actor.ppo_mini_batch_size == 128
    assert actor.ppo_micro_batch_size_per_gpu == 10
    assert (rollout.n, rollout.temperature) == (5, 1.0)
    assert (actor.use_kl_loss, actor.kl_loss_coef, actor.kl_loss_type) == (True, 0.01, "low_var_kl")
    assert actor.entropy_coeff == 0
    assert (base.data.max_prompt_length, base.data.max_response_length) == (1024, 2048)
    assert (rollout.name, rollout.tensor_model_parallel_size, rollout.gpu_memory_utilization) == ("vllm", 1, 0.6)
    assert base.actor_rollout_ref.model.use_remove_padding is True
    assert base.actor_rollout_ref.model.enable_gradient_checkpointing is True
    assert base.trainer.save_freq == 50
    assert "tensorboard" in base.trainer.logger and "wandb" not in base.trainer.logger


def test_prompts_are_never_cut_or_silently_dropped_by_config(base):
    # The builders size every puzzle to fit; filtering is a logged safety net and truncation would be an error.
    assert base.data.filter_overlong_prompts is True
    assert base.data.truncation == "error"


def test_resume_is_automatic_and_checkpoints_hold_what_resuming_needs(base):
    assert base.trainer.resume_mode == "auto"
    assert set(base.actor_rollout_ref.actor.checkpoint.save_contents) == {"model", "optimizer", "extra"}


@pytest.mark.parametrize("name", ["grpo_qwen2_5_vl", "grpo_qwen2_5_vl_7b", "grpo_cpu_tiny"])
def test_the_rollout_engine_starts_from_the_model_files(name):
    """verl's default "dummy" start leaves vLLM's load-time buffers (Qwen2.5-VL's on-device pixel normalisation)
    random, and the weight sync never restores them: the rollout engine would not see the pictures."""
    assert compose(name).actor_rollout_ref.rollout.load_format == "auto"


def test_reward_is_our_compute_score_and_verl_can_load_it(base):
    from verl.utils.import_utils import load_extern_object

    from verl_ext.reward import compute_score

    reward = base.reward.custom_reward_function
    assert (reward.path, reward.name) == ("pkg://verl_ext.reward", "compute_score")
    assert load_extern_object(reward.path, reward.name) is compute_score


def test_training_metrics_per_task_come_from_our_replay_buffer(base):
    from verl.utils.import_utils import load_extern_type

    from verl_ext.task_metrics import TaskMetricsReplayBuffer

    sampler = base.trainer.v1.sampler.custom_sampler
    assert base.trainer.v1.trainer_mode == "sync"  # the buffer class below is the one for the sync trainer
    assert load_extern_type(sampler.path, sampler.name) is TaskMetricsReplayBuffer


def test_7b_overlay_changes_only_memory_layout(base):
    from omegaconf import OmegaConf

    big = compose("grpo_qwen2_5_vl_7b")
    assert big.actor_rollout_ref.rollout.tensor_model_parallel_size == 2
    micro_batch = "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"
    assert OmegaConf.select(big, micro_batch) < OmegaConf.select(base, micro_batch)
    # The learning recipe itself is inherited unchanged.
    for key in (
        "actor_rollout_ref.actor.optim.lr",
        "data.train_batch_size",
        "actor_rollout_ref.actor.ppo_mini_batch_size",
        "actor_rollout_ref.rollout.n",
        "actor_rollout_ref.actor.kl_loss_coef",
        "data.max_prompt_length",
        "reward.custom_reward_function.path",
        "trainer.resume_mode",
        "trainer.v1.sampler.custom_sampler.name",
    ):
        assert OmegaConf.select(big, key) == OmegaConf.select(base, key), key


@pytest.mark.parametrize("name", GPU_CONFIGS)
@pytest.mark.parametrize("nnodes,gpus", [(1, 8), (2, 8), (4, 8), (8, 8)])
def test_configs_pass_verls_validation(name, nnodes, gpus):
    from verl.utils.config import validate_config

    config = compose(
        name,
        [
            f"trainer.nnodes={nnodes}",
            f"trainer.n_gpus_per_node={gpus}",
            "data.train_files=[t.parquet]",
            "data.val_files=[v.parquet]",
        ],
    )
    validate_config(config, use_reference_policy=True, use_critic=False)  # raises on an inconsistent batch layout


def test_a_batch_layout_verl_rejects_is_rejected():
    # Guards the test above against passing vacuously: 512 prompts x 5 cannot split over 3 x 7 GPUs.
    from verl.utils.config import validate_config

    config = compose("grpo_qwen2_5_vl", ["trainer.nnodes=3", "trainer.n_gpus_per_node=7"])
    with pytest.raises(AssertionError, match="divisible"):
        validate_config(config, use_reference_policy=True, use_critic=False)


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_every_key_carries_a_comment(name):
    key_line = re.compile(r"^\s*[A-Za-z_][\w.]*:")
    uncommented = [
        line
        for line in (CONFIG_DIR / f"{name}.yaml").read_text().splitlines()
        if key_line.match(line) and "#" not in line and not line.rstrip().endswith(":")
    ]
    # Section headers (`actor:`) carry no value and need no comment; every key with a value does.
    assert uncommented == []


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_configs_do_not_set_a_hydra_searchpath(name):
    # Hydra only allows hydra.searchpath in the primary config, so a config that sets it cannot be extended
    # (the 7B and CPU configs extend the base); run_grpo.sh passes --config-dir instead.
    assert "searchpath" not in "".join(
        line.split("#")[0] for line in (CONFIG_DIR / f"{name}.yaml").read_text().splitlines()
    )
