"""What the launcher decides for a first GPU run, and what it refuses, before Ray starts.

Each point is checked through scripts/run_grpo.sh with DRY_RUN=1 and RAY_ADDRESS set (so no local GPU is
needed, as on a cluster's head node), and the rules themselves against configs composed like verl composes
them and verl's own config validation.
"""

from __future__ import annotations

import json

import pytest
from test_configs import CONFIG_DIR, compose
from test_run_scripts import (  # noqa: F401 - setup is a fixture
    dry_run,
    launcher_setup,
    overrides_of,
    run,
    setup,
    write_dataset,
)

from verl_ext.launch import settings
from verl_ext.launch.errors import PreflightError

CLUSTER = {"RAY_ADDRESS": "10.0.0.1:6379"}


def cluster(env: dict[str, str], gpus: int, nodes: int = 1, **extra: str) -> dict[str, str]:
    return {**env, **CLUSTER, "N_GPUS_PER_NODE": str(gpus), "NNODES": str(nodes), **extra}


def fake_flash_attn(tmp_path) -> str:
    """A folder holding an importable ``flash_attn`` package, as if flash-attn were installed."""
    package = tmp_path / "site" / "flash_attn"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    return str(tmp_path / "site")


@pytest.fixture(scope="module")
def eight_gpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], str]:
    """The verl command and stderr of one dry run of a first launch on an 8-GPU node, which several checks below
    read (a dry run takes seconds: the launcher imports verl for its config validation)."""
    tmp_path, env = launcher_setup(tmp_path_factory.mktemp("eight_gpus"))
    return dry_run(["rotation", "mmbench"], cluster(env, 8), tmp_path, gpus=0)


# ---- 1. attention without flash-attn


def test_without_flash_attn_both_attention_settings_change_together(eight_gpus):
    command, stderr = eight_gpus
    values = overrides_of(command)
    assert values["actor_rollout_ref.model.use_remove_padding"] == "false"
    assert values["++actor_rollout_ref.model.override_config.attn_implementation"] == "sdpa"
    assert "flash-attn is not installed" in stderr and "pip install flash-attn==2.8.3" in stderr


def test_with_flash_attn_the_recipe_keeps_packed_flash_attention(setup):
    tmp_path, env = setup
    env = cluster(env, 8, PYTHONPATH=fake_flash_attn(tmp_path) + ":" + env.get("PYTHONPATH", ""))
    command, stderr = dry_run(["rotation", "mmbench"], env, tmp_path, gpus=0)
    values = overrides_of(command)
    assert "actor_rollout_ref.model.use_remove_padding" not in values
    assert not any("attn_implementation" in key for key in values)
    assert "flash-attn is not installed" not in stderr


@pytest.mark.parametrize(
    "override",
    [
        "actor_rollout_ref.model.use_remove_padding=true",
        "++actor_rollout_ref.model.override_config.attn_implementation=flash_attention_2",
    ],
)
def test_asking_for_flash_attention_without_flash_attn_is_refused_with_the_install_command(setup, override):
    tmp_path, env = setup
    result = run(["rotation", "mmbench", override], {**cluster(env, 8), "DRY_RUN": "1"}, gpus=0, tmp_path=tmp_path)
    assert result.returncode == 1
    assert "flash-attn is not installed" in result.stderr and "pip install flash-attn==2.8.3" in result.stderr
    assert "Traceback" not in result.stderr


def test_sdpa_settings_pass_verls_validation_and_reach_the_composed_config(eight_gpus):
    command, _ = eight_gpus
    added = [arg for arg in command if "attn_implementation" in arg or "use_remove_padding" in arg]
    config = compose("grpo_qwen2_5_vl", added)
    assert config.actor_rollout_ref.model.use_remove_padding is False
    assert config.actor_rollout_ref.model.override_config.attn_implementation == "sdpa"


# ---- 2. a training set smaller than one batch


def test_fewer_training_puzzles_than_one_batch_are_refused_with_a_batch_verl_accepts(setup):
    tmp_path, env = setup
    write_dataset(tmp_path / "data", rows={"test": 40, "dev": 3})
    result = run(["rotation", "mmbench"], {**cluster(env, 8), "DRY_RUN": "1"}, gpus=0, tmp_path=tmp_path)
    assert result.returncode == 1
    assert "the training split has 40 puzzles but data.train_batch_size is 512" in result.stderr
    fix = "data.train_batch_size=40 actor_rollout_ref.actor.ppo_mini_batch_size=40"
    assert fix in result.stderr
    dry_run(["rotation", "mmbench", *fix.split()], cluster(env, 8), tmp_path, gpus=0)  # the advice works


def test_validation_puzzles_added_to_training_count_towards_the_batch(setup):
    tmp_path, env = setup
    write_dataset(tmp_path / "data", rows={"test": 500, "dev": 20})
    assert run(["rotation", "mmbench"], {**cluster(env, 8), "DRY_RUN": "1"}, gpus=0, tmp_path=tmp_path).returncode == 1
    dry_run(["rotation", "mmbench"], cluster(env, 8, ALLOW_EVAL_IMAGES="1"), tmp_path, gpus=0)


def test_the_cpu_demo_data_fits_the_cpu_batch(setup):
    tmp_path, env = setup
    write_dataset(tmp_path / "data", rows={"test": 40, "dev": 10})
    dry_run(["rotation", "mmbench"], {**env, "DEVICE": "cpu"}, tmp_path, gpus=0)


def test_a_layout_verl_rejects_is_refused_before_ray_starts(setup):
    tmp_path, env = setup
    result = run(["rotation", "mmbench"], {**cluster(env, 7, 3), "DRY_RUN": "1"}, gpus=0, tmp_path=tmp_path)
    assert result.returncode == 1
    assert "verl rejects this configuration" in result.stderr and "divisible" in result.stderr


def test_a_launch_leaves_the_layout_check_to_verl_which_refuses_before_ray_starts(setup):
    """A real launch skips the launcher's copy of verl's validation (seconds of imports): verl's main_ppo runs it
    before ray.init. Were that to change in verl, this run would try to join the cluster named in RAY_ADDRESS."""
    tmp_path, env = setup
    result = run(
        ["rotation", "mmbench"],
        {**cluster(env, 7, 3), "DEVICE": "cpu", "RUN_TIMEOUT": "120"},
        gpus=0,
        tmp_path=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "must be divisible" in output and "verl rejects this configuration" not in output
    assert "ray init kwargs" not in output  # verl prints this line just before ray.init


# ---- 3. tensor parallel that fits the GPUs


def test_7b_on_one_gpu_runs_one_replica_per_gpu(setup):
    tmp_path, env = setup
    command, stderr = dry_run(["rotation", "mmbench"], cluster(env, 1, CONFIG="grpo_qwen2_5_vl_7b"), tmp_path, gpus=0)
    assert overrides_of(command)["actor_rollout_ref.rollout.tensor_model_parallel_size"] == "1"
    assert "spreads each vLLM replica over 2 GPUs, but a node has 1" in stderr


def test_7b_on_eight_gpus_keeps_its_tensor_parallel_size(setup):
    tmp_path, env = setup
    command, _ = dry_run(["rotation", "mmbench"], cluster(env, 8, CONFIG="grpo_qwen2_5_vl_7b"), tmp_path, gpus=0)
    assert "actor_rollout_ref.rollout.tensor_model_parallel_size" not in overrides_of(command)


def test_a_tensor_parallel_size_the_user_set_that_cannot_fit_is_refused(setup):
    tmp_path, env = setup
    args = ["rotation", "mmbench", "actor_rollout_ref.rollout.tensor_model_parallel_size=4"]
    result = run(args, {**cluster(env, 2), "DRY_RUN": "1"}, gpus=0, tmp_path=tmp_path)
    assert result.returncode == 1 and "does not divide the 2 GPU(s) per node" in result.stderr


@pytest.mark.parametrize("gpus,tp,expected", [(1, 2, 1), (3, 2, 1), (6, 4, 3), (8, 2, 2), (4, 8, 4)])
def test_tensor_parallel_rule(gpus, tp, expected):
    config = compose(
        "grpo_qwen2_5_vl",
        [f"trainer.n_gpus_per_node={gpus}", f"actor_rollout_ref.rollout.tensor_model_parallel_size={tp}"],
    )
    decisions = settings.tensor_parallel(config, explicit=set())
    chosen = int(decisions[0].overrides[0].split("=")[1]) if decisions else tp
    assert chosen == expected


# ---- 4. one GPU: memory


def test_one_gpu_offloads_the_actor(setup):
    tmp_path, env = setup
    command, stderr = dry_run(["rotation", "mmbench"], cluster(env, 1), tmp_path, gpus=0)
    values = overrides_of(command)
    assert values["actor_rollout_ref.actor.fsdp_config.param_offload"] == "true"
    assert values["actor_rollout_ref.actor.fsdp_config.optimizer_offload"] == "true"
    assert "one GPU" in stderr


def test_several_gpus_keep_the_actor_on_the_gpus(eight_gpus):
    command, _ = eight_gpus
    assert not any("offload" in key for key in overrides_of(command))


def test_an_offload_setting_the_user_chose_is_kept(setup):
    tmp_path, env = setup
    args = ["rotation", "mmbench", "actor_rollout_ref.actor.fsdp_config.optimizer_offload=false"]
    command, _ = dry_run(args, cluster(env, 1), tmp_path, gpus=0)
    assert command.count("actor_rollout_ref.actor.fsdp_config.optimizer_offload=false") == 1
    assert "actor_rollout_ref.actor.fsdp_config.optimizer_offload=true" not in command


# ---- 5. vLLM's context length


def test_max_model_len_is_prompt_plus_response_and_follows_overrides(setup):
    assert compose("grpo_qwen2_5_vl").actor_rollout_ref.rollout.max_model_len == 1024 + 2048
    assert compose("grpo_cpu_tiny").actor_rollout_ref.rollout.max_model_len == 1024 + 64
    tmp_path, env = setup
    command, _ = dry_run(["rotation", "mmbench", "data.max_response_length=4096"], cluster(env, 8), tmp_path, gpus=0)
    assert overrides_of(command)["actor_rollout_ref.rollout.max_model_len"] == str(1024 + 4096)


def test_the_curriculum_gets_two_loader_workers_unless_the_user_chose():
    on = compose("grpo_qwen2_5_vl", ["data.online.curriculum.enable=true"])
    assert on.data.dataloader_num_workers == 8  # verl's default, kept by the recipe
    assert [d.overrides for d in settings.curriculum_workers(on, set())] == [("data.dataloader_num_workers=2",)]
    assert settings.curriculum_workers(on, {settings.WORKERS_KEY}) == []
    assert settings.curriculum_workers(compose("grpo_qwen2_5_vl", []), set()) == []  # no curriculum: verl's 8
    assert settings.curriculum_workers(compose("grpo_cpu_tiny", ["data.online.curriculum.enable=true"]), set()) == []


def test_stratified_training_rows_are_read_as_written_unless_the_user_chose(setup):
    tmp_path, env = setup
    data = write_dataset(tmp_path / "data", rows={"test": 40, "dev": 10})
    command, _ = dry_run(["rotation", "mmbench"], {**env, "DEVICE": "cpu"}, tmp_path, gpus=0)
    assert "data.shuffle" not in overrides_of(command)  # rows in source order: verl shuffles them
    manifest = json.loads((data / "manifest.json").read_text())
    for order in ("stratified", "balanced"):  # balanced: stratified after equalising the answers
        (data / "manifest.json").write_text(json.dumps({**manifest, "args": {"order": order}}))
        command, stderr = dry_run(["rotation", "mmbench"], {**env, "DEVICE": "cpu"}, tmp_path, gpus=0)
        assert overrides_of(command)["data.shuffle"] == "false"
        assert "stratified order" in stderr
    on = compose("grpo_cpu_tiny", [])
    assert settings.keep_row_order(on, {settings.SHUFFLE_KEY}, ["data"]) == []  # the user's choice stands
    off = compose("grpo_cpu_tiny", ["data.shuffle=false"])
    assert settings.keep_row_order(off, set(), ["data"]) == []  # already read in order


# ---- 6, 7, 9. recipe length, checkpoints kept, kernel settings


@pytest.mark.parametrize("name", ["grpo_qwen2_5_vl", "grpo_qwen2_5_vl_7b"])
def test_the_recipe_has_an_explicit_length_and_keeps_a_bounded_number_of_checkpoints(name):
    config = compose(name)
    assert config.trainer.total_training_steps == 300
    assert config.trainer.max_actor_ckpt_to_keep == 2


def test_kernel_settings_follow_verls_vlm_example_or_say_why_not():
    config = compose("grpo_qwen2_5_vl")
    assert config.actor_rollout_ref.model.use_fused_kernels is True  # as verl's example and CI
    assert config.actor_rollout_ref.rollout.enable_chunked_prefill is True  # kept; the reason is in the config
    text = (CONFIG_DIR / "grpo_qwen2_5_vl.yaml").read_text()
    line = next(line for line in text.splitlines() if "enable_chunked_prefill" in line)
    assert "verl's VLM example turns it off" in line
    assert compose("grpo_cpu_tiny").actor_rollout_ref.model.use_fused_kernels is False


# ---- 8. the smoke run


def test_smoke_run_is_one_short_step_without_validation_or_checkpoint(setup):
    tmp_path, env = setup
    env = {k: v for k, v in env.items() if k != "SAVE_DIR"}
    command, stderr = dry_run(["rotation", "mmbench"], cluster(env, 8, SMOKE="1"), tmp_path, gpus=0)
    values = overrides_of(command)
    assert values["trainer.total_training_steps"] == "1"
    assert (values["trainer.save_freq"], values["trainer.test_freq"]) == ("-1", "-1")
    assert values["trainer.val_before_train"] == "false"
    assert values["actor_rollout_ref.rollout.enforce_eager"] == "true"
    assert values["data.max_response_length"] == "128"
    assert values["actor_rollout_ref.rollout.max_model_len"] == str(1024 + 128)
    assert values["trainer.default_local_dir"].endswith("checkpoints/smoke_mmbench_rotation_model")
    assert "smoke run" in stderr


@pytest.mark.parametrize("gpus,nodes", [(1, 1), (2, 1), (4, 1), (8, 1), (8, 2), (8, 4)])
@pytest.mark.parametrize("name", ["grpo_qwen2_5_vl", "grpo_qwen2_5_vl_7b"])
def test_smoke_settings_pass_verls_validation_for_every_layout(name, gpus, nodes):
    shape = [f"trainer.n_gpus_per_node={gpus}", f"trainer.nnodes={nodes}"]
    config = compose(name, [*shape, *settings.smoke_overrides(gpus * nodes), "data.train_files=[t.parquet]"])
    settings.validate_with_verl(config)


def test_smoke_settings_the_user_overrides_win(setup):
    tmp_path, env = setup
    command, _ = dry_run(
        ["rotation", "mmbench", "trainer.total_training_steps=2"], cluster(env, 8, SMOKE="1"), tmp_path, gpus=0
    )
    assert overrides_of(command)["trainer.total_training_steps"] == "2"
    assert "trainer.total_training_steps=1" not in command


def test_rules_never_change_a_key_the_user_set():
    config = compose("grpo_qwen2_5_vl_7b", ["trainer.n_gpus_per_node=1"])
    explicit = {settings.MAX_MODEL_LEN_KEY, *settings.ACTOR_OFFLOAD_KEYS, settings.RAY_ADDRESS_KEY}
    decided = settings.decide(config, explicit, device="gpu", flash_attn_installed=True)
    keys = {settings.override_key(o) for d in decided for o in d.overrides}
    assert keys == {settings.TP_KEY}
    with pytest.raises(PreflightError, match="does not divide"):
        settings.decide(config, {settings.TP_KEY}, device="gpu", flash_attn_installed=True)


def test_a_local_run_gets_a_ray_of_its_own():
    decided = settings.ray_cluster(compose("grpo_qwen2_5_vl", []), set(), ray_address=None)
    assert [d.overrides for d in decided] == [("++ray_kwargs.ray_init.address=local",)]
    assert "someone else's" in decided[0].reason
    # The CPU config asks for it itself.
    assert settings.ray_cluster(compose("grpo_cpu_tiny", []), set(), ray_address=None) == []


def test_joining_a_cluster_clears_what_only_a_local_ray_accepts():
    cpu = compose("grpo_cpu_tiny", [])
    decided = settings.ray_cluster(cpu, set(), ray_address="10.0.0.1:6379")
    assert decided[0].overrides == (
        "ray_kwargs.ray_init.num_cpus=null",
        "ray_kwargs.ray_init.num_gpus=null",
        "ray_kwargs.ray_init.address=null",
    )
    assert "joining the Ray cluster at 10.0.0.1:6379" in decided[0].reason
    assert settings.ray_cluster(compose("grpo_qwen2_5_vl", []), set(), ray_address="10.0.0.1:6379") == []
    with pytest.raises(PreflightError, match="ray_kwargs.ray_init.num_cpus cannot be set when joining"):
        settings.ray_cluster(cpu, {"ray_kwargs.ray_init.num_cpus"}, ray_address="10.0.0.1:6379")


def test_the_launcher_joins_the_cluster_ray_address_names(setup):
    tmp_path, env = setup
    command, stderr = dry_run(
        ["rotation", "mmbench"], {**env, "DEVICE": "cpu", "RAY_ADDRESS": "10.0.0.1:6379", "NNODES": "2"}, tmp_path
    )
    overrides = overrides_of(command)
    assert overrides["ray_kwargs.ray_init.num_cpus"] == "null" and overrides["ray_kwargs.ray_init.address"] == "null"
    assert "joining the Ray cluster at 10.0.0.1:6379" in stderr


def test_full_determinism_gets_a_seed_per_request_or_is_refused():
    """verl 0.9.1 seeds every request alike under full determinism: identical responses in every group."""
    from verl_ext.seeded_rollout import NAME

    assert settings.SEEDED_LOOP == NAME
    gpu = compose("grpo_qwen2_5_vl", [f"{settings.FULL_DETERMINISM_KEY}=true"])
    decided = settings.sampling_seeds(gpu, set())
    assert [d.overrides for d in decided] == [(f"{settings.AGENT_LOOP_KEY}={NAME}",)]
    assert "identical" in decided[0].reason
    with pytest.raises(PreflightError, match=f"{settings.AGENT_LOOP_KEY}={NAME}"):
        settings.sampling_seeds(gpu, {settings.AGENT_LOOP_KEY})
    assert settings.sampling_seeds(compose("grpo_qwen2_5_vl", []), set()) == []  # vLLM's engine-wide generator
    seeded = compose("grpo_cpu_tiny", [f"{settings.FULL_DETERMINISM_KEY}=true"])
    assert settings.sampling_seeds(seeded, set()) == []  # the CPU config samples with the seeded loop already
    one = compose("grpo_qwen2_5_vl", [f"{settings.FULL_DETERMINISM_KEY}=true", "actor_rollout_ref.rollout.n=1"])
    assert settings.sampling_seeds(one, set()) == []
