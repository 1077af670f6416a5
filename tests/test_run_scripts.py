"""scripts/run_grpo.sh and the per-benchmark scripts, without a GPU: the composed config they hand verl, the
command they would run (DRY_RUN=1, with a stand-in nvidia-smi), and the messages they end with on a bad setup."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "scripts" / "run_grpo.sh"


def _png(size: int = 28) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 120, 40)).save(buffer, "PNG")
    return buffer.getvalue()


_PICTURE = _png()


def write_dataset(
    data_dir: Path,
    task: str = "rotation",
    source: str = "mmbench",
    rows: dict[str, int] | None = None,
    max_prompt_tokens: int = 1024,
) -> Path:
    """A built-dataset folder as build_benchmarks/build.py leaves it (only the parts the launcher reads).

    The default training split holds one batch of the GPU recipe (512): the launcher refuses fewer.
    """
    rows = {"test": 512, "dev": 3} if rows is None else rows
    data_dir.mkdir(parents=True, exist_ok=True)
    params = json.dumps({"angles": [0, 90, 180, 270]})
    for split, n in rows.items():
        # Each split its own pictures (content ids), so the launcher's leakage guard passes. Rows are whole for
        # the launcher's row check (a picture, a task the reward knows, a ground truth it scores right).
        extra = [
            {"task": "rotation", "params": params, "content_id": f"{split}-{i}", "partner_content_id": ""}
            for i in range(n)
        ]
        frame = pd.DataFrame(
            {
                "data_source": [f"ssl_{task}"] * n,
                "prompt": [[{"role": "user", "content": "<image>"}]] * n,
                "images": [[{"bytes": _PICTURE, "path": None}]] * n,
                "reward_model": [{"ground_truth": "90"}] * n,
                "extra_info": extra,
            }
        )
        frame.to_parquet(data_dir / f"{split}.parquet")
    manifest = {
        "task": task,
        "source": source,
        "train_split": "test",
        "val_split": "dev",
        "splits": rows,
        "skips": {"too_small": 2},
        "max_prompt_tokens": max_prompt_tokens,
    }
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    return data_dir


def write_model(model_dir: Path) -> Path:
    """Just enough of a model folder for the launcher's checks (verl never starts in these tests)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text("{}")
    (model_dir / "processor_config.json").write_text("{}")
    return model_dir


def fake_nvidia_smi(bin_dir: Path, gpus: int) -> Path:
    """An nvidia-smi that lists `gpus` GPUs, or fails like a machine without a driver when gpus == 0."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "nvidia-smi"
    if gpus:
        lines = "\n".join(f"echo 'GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i})'" for i in range(gpus))
        script.write_text(f"#!/bin/sh\n{lines}\n")
    else:
        script.write_text(
            "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver'\nexit 9\n"
        )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


@pytest.fixture
def setup(tmp_path):
    """Fake model and data, and an environment that keeps every output under tmp_path."""
    return launcher_setup(tmp_path)


def launcher_setup(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """What ``setup`` gives, in a folder of the caller's (a module fixture shares one launch between tests)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DEVICE",
            "CONFIG",
            "DATA_DIR",
            "INPUT",
            "TASKS",
            "SAVE_DIR",
            "EXPERIMENT_NAME",
            "N_GPUS_PER_NODE",
            "NNODES",
            "RAY_ADDRESS",
            "ALLOW_EVAL_IMAGES",
            "TENSORBOARD_DIR",
            "DRY_RUN",
            "RUN_TIMEOUT",
            "BUILD_ARGS",
            "ONLINE",
            "CURRICULUM",
        }
    }
    env.update(
        PYTHON=sys.executable,
        MODEL_PATH=str(write_model(tmp_path / "model")),
        DATA_DIR=str(write_dataset(tmp_path / "data")),
        SAVE_DIR=str(tmp_path / "ckpt"),
    )
    return tmp_path, env


def run(
    args: list[str], env: dict[str, str], script: Path = RUN, gpus: int | None = None, tmp_path: Path | None = None
) -> subprocess.CompletedProcess:
    if gpus is not None:
        env = {**env, "PATH": f"{fake_nvidia_smi(tmp_path / 'bin', gpus)}{os.pathsep}{env['PATH']}"}
    return subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=300)


def dry_run(
    args: list[str], env: dict[str, str], tmp_path: Path, gpus: int = 8, script: Path = RUN
) -> tuple[list[str], str]:
    """The verl command the launcher would run, as an argument list, and its stderr."""
    result = run(args, {**env, "DRY_RUN": "1"}, script=script, gpus=gpus, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    return shlex.split(result.stdout.strip().splitlines()[-1]), result.stderr


def overrides_of(command: list[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in command if "=" in arg and not arg.startswith("--"))


def test_cfg_job_prints_the_composed_config_without_a_gpu(setup):
    tmp_path, env = setup
    # Flags may come before overrides (Hydra's argparse wants them last: the launcher moves them there).
    result = run(["rotation", "mmbench", "--cfg", "job", "trainer.total_training_steps=7"], env)
    assert result.returncode == 0, result.stderr
    from omegaconf import OmegaConf

    config = OmegaConf.create(result.stdout[result.stdout.index("actor_rollout_ref:") :])
    assert config.trainer.total_training_steps == 7
    data, actor = config.data, config.actor_rollout_ref.actor
    assert data.train_files == [str(tmp_path / "data" / "test.parquet")]
    assert data.val_files == [str(tmp_path / "data" / "dev.parquet")]
    assert config.actor_rollout_ref.model.path == env["MODEL_PATH"]
    assert (actor.optim.lr, actor.kl_loss_coef, config.actor_rollout_ref.rollout.n) == (1e-6, 0.01, 5)
    assert (data.train_batch_size, actor.ppo_mini_batch_size) == (512, 128)
    assert config.reward.custom_reward_function.path == "pkg://verl_ext.reward"
    assert config.trainer.default_local_dir == env["SAVE_DIR"]
    assert config.trainer.resume_mode == "auto"
    assert config.trainer.experiment_name == "mmbench_rotation_model"
    assert config.ray_kwargs.ray_init.runtime_env.env_vars.TENSORBOARD_DIR == str(tmp_path / "ckpt" / "tensorboard")


def test_cfg_job_prints_a_config_a_launch_refuses_and_warns_why(setup):
    tmp_path, env = setup
    write_dataset(tmp_path / "data", rows={"test": 40, "dev": 3})
    printed = run(["rotation", "mmbench", "--cfg", "job"], env)
    assert printed.returncode == 0, printed.stderr
    assert "actor_rollout_ref:" in printed.stdout
    refusal = "the training split has 40 puzzles but data.train_batch_size is 512"
    assert f"WARNING: a launch with this config would stop here: {refusal}" in printed.stderr
    # A launch with the same split still refuses (test_launch_settings.py: fewer training puzzles than one batch).


def test_command_uses_our_config_all_gpus_and_passes_overrides_last(setup):
    tmp_path, env = setup
    command, _ = dry_run(
        ["rotation", "mmbench", "trainer.total_training_steps=3", "trainer.n_gpus_per_node=4"], env, tmp_path, gpus=8
    )
    assert command[:3] == [sys.executable, "-m", "verl.trainer.main_ppo"]
    assert f"--config-dir={REPO / 'configs'}" in command and "--config-name=grpo_qwen2_5_vl" in command
    assert command.index("trainer.n_gpus_per_node=8") < command.index("trainer.n_gpus_per_node=4")  # user wins
    assert command[-2:] == ["trainer.total_training_steps=3", "trainer.n_gpus_per_node=4"]


def test_validation_is_held_out_by_default(setup):
    tmp_path, env = setup
    command, stderr = dry_run(["rotation", "mmbench"], env, tmp_path)
    values = overrides_of(command)
    assert values["data.train_files"] == f"['{tmp_path / 'data' / 'test.parquet'}']"
    assert values["data.val_files"] == f"['{tmp_path / 'data' / 'dev.parquet'}']"
    assert "WARNING" not in stderr


def test_training_on_eval_images_is_an_explicit_loud_opt_in(setup):
    tmp_path, env = setup
    command, stderr = dry_run(["rotation", "mmbench"], {**env, "ALLOW_EVAL_IMAGES": "1"}, tmp_path)
    data = tmp_path / "data"
    assert overrides_of(command)["data.train_files"] == f"['{data / 'test.parquet'}','{data / 'dev.parquet'}']"
    assert overrides_of(command)["data.val_files"] == f"['{data / 'dev.parquet'}']"
    assert "WARNING: ALLOW_EVAL_IMAGES=1" in stderr and "transductive" in stderr


def test_training_pictures_shared_with_validation_are_refused_unless_allowed(setup):
    tmp_path, env = setup
    data = tmp_path / "data"
    val = pd.read_parquet(data / "dev.parquet")
    val.at[0, "extra_info"] = {**val.at[0, "extra_info"], "content_id": "test-2"}  # a training picture
    val.to_parquet(data / "dev.parquet")
    refused = run(["rotation", "mmbench"], {**env, "DRY_RUN": "1"}, gpus=8, tmp_path=tmp_path)
    assert refused.returncode == 1
    assert "test-2" in refused.stderr + refused.stdout and "share pictures" in refused.stderr
    command, stderr = dry_run(["rotation", "mmbench"], {**env, "ALLOW_EVAL_IMAGES": "1"}, tmp_path)
    assert "data.train_files" in overrides_of(command)


def test_no_gpu_is_a_clear_message(setup):
    tmp_path, env = setup
    result = run(["rotation", "mmbench"], env, gpus=0, tmp_path=tmp_path)
    assert result.returncode == 1
    assert "ERROR: no NVIDIA GPU found" in result.stderr and "scripts/demo.sh" in result.stderr
    assert "Traceback" not in result.stderr


def test_more_gpus_asked_than_present(setup):
    tmp_path, env = setup
    result = run(["rotation", "mmbench"], {**env, "N_GPUS_PER_NODE": "8"}, gpus=2, tmp_path=tmp_path)
    assert result.returncode == 1 and "N_GPUS_PER_NODE=8 but this machine has 2 GPU(s)" in result.stderr


def test_multi_node_needs_a_ray_cluster(setup):
    tmp_path, env = setup
    result = run(["rotation", "mmbench"], {**env, "NNODES": "2"}, gpus=8, tmp_path=tmp_path)
    assert result.returncode == 1
    assert "ray start --head" in result.stderr and "ray start --address" in result.stderr


def test_multi_node_on_a_ray_cluster_skips_the_local_gpu_check(setup):
    tmp_path, env = setup
    command, _ = dry_run(
        ["rotation", "mmbench"], {**env, "NNODES": "2", "RAY_ADDRESS": "10.0.0.1:6379"}, tmp_path, gpus=0
    )
    values = overrides_of(command)
    assert (values["trainer.nnodes"], values["trainer.n_gpus_per_node"]) == ("2", "8")


@pytest.mark.parametrize("bad", ["missing", "no_config", "no_processor"])
def test_no_model_is_a_clear_message(setup, bad):
    tmp_path, env = setup
    model = tmp_path / "model"
    if bad == "missing":
        model = tmp_path / "nowhere"
    elif bad == "no_config":
        (model / "config.json").unlink()
    else:
        (model / "processor_config.json").unlink()
    result = run(["rotation", "mmbench", "--cfg", "job"], {**env, "MODEL_PATH": str(model)})
    assert result.returncode == 1
    assert {
        "missing": "the folder does not exist",
        "no_config": "no config.json",
        "no_processor": "no image processor",
    }[bad] in result.stderr
    assert "Traceback" not in result.stderr


def test_no_data_and_no_input_is_a_clear_message(setup):
    tmp_path, env = setup
    result = run(["rotation", "mmbench"], {**env, "DATA_DIR": str(tmp_path / "empty")}, gpus=8, tmp_path=tmp_path)
    assert result.returncode == 1
    assert "no puzzles in DATA_DIR" in result.stderr and "INPUT" in result.stderr


def test_missing_input_is_a_clear_message(setup):
    tmp_path, env = setup
    result = run(
        ["rotation", "mmbench"],
        {**env, "DATA_DIR": str(tmp_path / "empty"), "INPUT": str(tmp_path / "no.tsv")},
        gpus=8,
        tmp_path=tmp_path,
    )
    assert result.returncode == 1 and f"INPUT={tmp_path / 'no.tsv'} does not exist" in result.stderr


def test_empty_parquet_is_a_clear_message_with_the_skip_reasons(setup):
    tmp_path, env = setup
    write_dataset(tmp_path / "data", rows={"test": 0, "dev": 3})
    result = run(["rotation", "mmbench"], env, gpus=8, tmp_path=tmp_path)
    assert result.returncode == 1
    assert "holds no puzzles (0 rows)" in result.stderr and "too_small: 2" in result.stderr
    assert "Traceback" not in result.stderr


def test_data_built_for_a_larger_prompt_budget_is_refused(setup):
    tmp_path, env = setup
    write_dataset(tmp_path / "data", max_prompt_tokens=2048)
    result = run(["rotation", "mmbench"], env, gpus=8, tmp_path=tmp_path)
    assert result.returncode == 1
    assert "built for prompts of up to 2048 tokens, but data.max_prompt_length is 1024" in result.stderr
    dry_run(["rotation", "mmbench", "data.max_prompt_length=2048"], env, tmp_path)  # a matching budget passes


def test_data_built_for_another_task_is_refused(setup):
    tmp_path, env = setup
    result = run(["jigsaw", "mmbench"], env, gpus=8, tmp_path=tmp_path)
    assert result.returncode == 1 and "holds puzzles for task=rotation" in result.stderr


def test_missing_data_is_built_with_the_configs_prompt_budget(setup):
    """With INPUT set, the launcher calls build_benchmarks/build.py (recorded here by a stand-in interpreter)."""
    tmp_path, env = setup
    log = tmp_path / "builder_calls.txt"
    data_dir = tmp_path / "built"
    wrapper = tmp_path / "python"
    # Record build.py calls and write the dataset they would produce; run everything else with the real python.
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case "$1" in *build_benchmarks/build.py) echo "$@" >> {log}; '
        f'"{sys.executable}" -c "import sys; sys.path.insert(0, \'{REPO / "tests"}\'); '
        "from test_run_scripts import write_dataset; from pathlib import Path; "
        f"write_dataset(Path('{data_dir}'), max_prompt_tokens=768)\"; "
        "exit $?;; esac\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    wrapper.chmod(0o755)
    (tmp_path / "mmbench.tsv").write_text("index\timage\n")
    build_env = {
        **env,
        "PYTHON": str(wrapper),
        "DATA_DIR": str(data_dir),
        "INPUT": str(tmp_path / "mmbench.tsv"),
        "BUILD_ARGS": "--seed 3",
    }
    command, _ = dry_run(["rotation", "mmbench", "data.max_prompt_length=768"], build_env, tmp_path)
    call = log.read_text().split()
    assert call[call.index("--task") + 1] == "rotation" and call[call.index("--source") + 1] == "mmbench"
    assert call[call.index("--output") + 1] == str(data_dir)
    assert call[call.index("--input") + 1] == str(tmp_path / "mmbench.tsv")
    assert call[call.index("--max-prompt-tokens") + 1] == "768"  # the budget verl will enforce
    assert call[-2:] == ["--seed", "3"]
    assert overrides_of(command)["data.val_files"] == f"['{data_dir / 'dev.parquet'}']"
    # A second run finds the data and does not build again.
    dry_run(["rotation", "mmbench"], build_env, tmp_path)
    assert len(log.read_text().splitlines()) == 1


def test_resume_notice_names_the_step_verl_restarts_from(setup):
    tmp_path, env = setup
    save_dir = tmp_path / "ckpt"
    from test_resume import checkpoint  # a complete checkpoint, as verl writes it

    checkpoint(save_dir, 50)
    (save_dir / "latest_checkpointed_iteration.txt").write_text("50")
    command, stderr = dry_run(["rotation", "mmbench"], env, tmp_path)
    assert f"resuming from {save_dir / 'global_step_50'}" in stderr
    assert overrides_of(command)["trainer.default_local_dir"] == str(save_dir)
    _, stderr = dry_run(["rotation", "mmbench", "trainer.resume_mode=disable"], env, tmp_path)
    assert "resuming" not in stderr


def test_default_save_dir_is_stable_so_a_rerun_resumes(setup):
    tmp_path, env = setup
    env = {k: v for k, v in env.items() if k != "SAVE_DIR"}
    first, _ = dry_run(["rotation", "mmbench"], env, tmp_path)
    second, _ = dry_run(["rotation", "mmbench"], env, tmp_path)
    assert overrides_of(first)["trainer.default_local_dir"] == overrides_of(second)["trainer.default_local_dir"]
    assert overrides_of(first)["trainer.default_local_dir"].endswith("checkpoints/mmbench_rotation_model")


@pytest.mark.parametrize("task", ["rotation", "jigsaw", "position", "contrastive"])
def test_mmbench_scripts_run_their_task(setup, task):
    tmp_path, env = setup
    write_dataset(tmp_path / task, task=task)
    script = REPO / "scripts" / f"run_mmbench_{task}.sh"
    command, _ = dry_run(["trainer.total_epochs=1"], {**env, "DATA_DIR": str(tmp_path / task)}, tmp_path, script=script)
    assert overrides_of(command)["trainer.experiment_name"] == f"mmbench_{task}_model"
    assert command[-1] == "trainer.total_epochs=1"


def test_mix_script_trains_on_a_multi_task_dataset(setup):
    tmp_path, env = setup
    write_dataset(tmp_path / "mix", task="mix")
    command, _ = dry_run(
        [],
        {**env, "DATA_DIR": str(tmp_path / "mix"), "TASKS": "rotation,position"},
        tmp_path,
        script=REPO / "scripts" / "run_mmbench_mix.sh",
    )
    assert overrides_of(command)["trainer.experiment_name"] == "mmbench_mix_rotation-position_model"


def test_mix_without_tasks_is_a_clear_message(setup):
    tmp_path, env = setup
    result = run(["mix", "mmbench", "--cfg", "job"], env)
    assert result.returncode == 1 and "TASK=mix needs TASKS" in result.stderr


@pytest.mark.skipif((REPO / "models" / "Qwen2.5-VL-7B-Instruct").exists(), reason="the 7B model is downloaded here")
def test_7b_config_defaults_to_the_7b_model_folder(setup):
    tmp_path, env = setup
    env = {k: v for k, v in env.items() if k != "MODEL_PATH"}
    result = run(["rotation", "mmbench", "--cfg", "job"], {**env, "CONFIG": "grpo_qwen2_5_vl_7b"})
    assert result.returncode == 1 and "models/Qwen2.5-VL-7B-Instruct" in result.stderr


def test_unknown_config_and_bad_numbers_are_clear_messages(setup):
    tmp_path, env = setup
    result = run(["rotation", "mmbench", "--cfg", "job"], {**env, "CONFIG": "nope"})
    assert result.returncode == 1 and "no config nope.yaml" in result.stderr and "grpo_qwen2_5_vl" in result.stderr
    result = run(["rotation", "mmbench"], {**env, "NNODES": "two"}, gpus=8, tmp_path=tmp_path)
    assert result.returncode == 1 and "NNODES=two is not a positive whole number" in result.stderr


def test_cpu_device_uses_the_cpu_config_and_environment(setup):
    tmp_path, env = setup
    command, _ = dry_run(["rotation", "mmbench"], {**env, "DEVICE": "cpu"}, tmp_path, gpus=0)
    assert "--config-name=grpo_cpu_tiny" in command
    assert "trainer.n_gpus_per_node" not in overrides_of(command)  # the CPU config's own layout stands


def test_usage_without_arguments():
    result = subprocess.run(["bash", str(RUN)], capture_output=True, text=True)
    assert result.returncode == 1 and "Usage: bash scripts/run_grpo.sh TASK SOURCE" in result.stderr


@pytest.fixture
def demo_build(setup):
    """A real demo build (the online picture index is made from its manifest) in place of the fake dataset."""
    from verl_ext.builder import BuildConfig, build

    tmp_path, env = setup
    data = tmp_path / "demo_data"
    build(BuildConfig(task="rotation", source="demo", output=data, limit=6, workers=1, progress=False))
    return tmp_path, {**env, "DATA_DIR": str(data)}, data


def test_online_puzzles_are_an_opt_in_with_offline_validation(demo_build):
    tmp_path, env, data = demo_build
    result = run(
        ["rotation", "demo"],
        {**env, "ONLINE": "1", "CURRICULUM": "adaptive", "DRY_RUN": "1"},
        gpus=8,
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    values = overrides_of(shlex.split(result.stdout.strip().splitlines()[-1]))
    assert values["data.train_files"] == "online"
    assert values["data.val_files"] == f"['{data / 'val.parquet'}']"
    assert values["data.online.pictures"] == str(data / "online" / "pictures.parquet")
    assert (data / "online" / "pictures.parquet").is_file()
    assert values["data.custom_cls.path"] == "pkg://verl_ext.online.dataset"
    assert values["data.custom_cls.name"] == "OnlinePuzzleDataset"
    assert values["data.shuffle"] == "false" and values["data.online.curriculum.enable"] == "true"
    assert values["data.dataloader_num_workers"] == "2"  # the curriculum's delay is 2 steps per worker
    # The leakage guard read the picture index: its pictures against the val split's.
    assert "no overlap between" in result.stdout + result.stderr


def test_online_training_pictures_shared_with_validation_are_refused(demo_build):
    tmp_path, env, data = demo_build
    dry_run(["rotation", "demo"], {**env, "ONLINE": "1"}, tmp_path)  # writes the picture index
    from verl_ext.online.pictures import PICTURES_FILE, read_pictures

    shared = read_pictures(data / PICTURES_FILE).content_ids[0]
    val = pd.read_parquet(data / "val.parquet")
    val.at[0, "extra_info"] = {**val.at[0, "extra_info"], "content_id": shared}
    val.to_parquet(data / "val.parquet")
    refused = run(["rotation", "demo"], {**env, "ONLINE": "1", "DRY_RUN": "1"}, gpus=8, tmp_path=tmp_path)
    assert refused.returncode == 1 and shared in refused.stderr + refused.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"CURRICULUM": "adaptive"}, "set ONLINE=1 too"),
        ({"ONLINE": "yes"}, "ONLINE=yes"),
        ({"ONLINE": "1", "CURRICULUM": "fast"}, "CURRICULUM=fast"),
        ({"ONLINE": "1", "ALLOW_EVAL_IMAGES": "1"}, "Use one or the other"),
    ],
)
def test_online_settings_that_cannot_work_are_clear_messages(demo_build, extra, message):
    tmp_path, env, _ = demo_build
    result = run(["rotation", "demo"], {**env, "DRY_RUN": "1", **extra}, gpus=8, tmp_path=tmp_path)
    assert result.returncode == 1 and message in result.stderr
