"""scripts/merge_models.sh and scripts/check_merged.py on a real verl FSDP checkpoint, made on CPU: the tiny
Qwen2.5-VL sharded over two gloo ranks with FSDP2 and saved by verl's own FSDPCheckpointManager (the class
verl's actor uses), so the merge runs on the same file layout a GPU run writes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MERGE = REPO / "scripts" / "merge_models.sh"
CHECK = REPO / "scripts" / "check_merged.py"
WORLD_SIZE = 2
SHIFT = 0.25  # added to every weight before saving, so the merged model is distinguishable from the original

# One rank of the checkpoint writer; argv: model_dir, checkpoint root.
SAVE_RANK = f"""
import os, sys
from verl_ext.cpu import import_hooks
import_hooks.install()
import torch, torch.distributed as dist
from omegaconf import OmegaConf
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForImageTextToText, AutoProcessor
from verl.utils.checkpoint.fsdp_checkpoint_manager import FSDPCheckpointManager

model_dir, root = sys.argv[1], sys.argv[2]
dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
with torch.no_grad():
    for parameter in model.parameters():
        parameter.add_({SHIFT})
# verl's FSDP2 mesh is named "fsdp"; its merger relies on that name.
fully_shard(model, mesh=init_device_mesh("cpu", (dist.get_world_size(),), mesh_dim_names=("fsdp",)))
contents = ["model", "optimizer", "extra"]
checkpoint_config = OmegaConf.create({{"save_contents": contents, "load_contents": contents}})
manager = FSDPCheckpointManager(model, torch.optim.AdamW(model.parameters(), lr=1e-6), None,
                                AutoProcessor.from_pretrained(model_dir), checkpoint_config=checkpoint_config)
manager.save_checkpoint(local_path=os.path.join(root, "global_step_1", "actor"), global_step=1)
if dist.get_rank() == 0:
    with open(os.path.join(root, "latest_checkpointed_iteration.txt"), "w") as f:
        f.write("1")
dist.destroy_process_group()
"""


def load_checker():
    """scripts/check_merged.py as a module, so its checks run in this process (no interpreter start-up)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_merged", CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_model_dir) -> Path:
    """SAVE_DIR of a run with one saved step, written by WORLD_SIZE ranks."""
    root = tmp_path_factory.mktemp("save_dir")
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(WORLD_SIZE)}
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", SAVE_RANK, str(tiny_model_dir), str(root)],
            env={**env, "RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(WORLD_SIZE)
    ]
    outputs = [rank.communicate(timeout=300)[0] for rank in ranks]
    assert all(rank.returncode == 0 for rank in ranks), "\n".join(outputs)
    return root


def merge(actor_dir: Path, target: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(MERGE), str(actor_dir), str(target)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHON": sys.executable, **env},
    )


@pytest.fixture(scope="module")
def merged(checkpoint, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    target = tmp_path_factory.mktemp("merged") / "model"
    return target, merge(checkpoint / "global_step_1" / "actor", target)


def test_checkpoint_has_the_layout_a_gpu_run_writes(checkpoint):
    actor = checkpoint / "global_step_1" / "actor"
    assert json.loads((actor / "fsdp_config.json").read_text())["world_size"] == WORLD_SIZE
    for rank in range(WORLD_SIZE):
        for kind in ("model", "optim", "extra_state"):
            assert (actor / f"{kind}_world_size_{WORLD_SIZE}_rank_{rank}.pt").is_file()
    assert (actor / "huggingface" / "config.json").is_file()


def test_merge_writes_a_folder_transformers_loads(merged):
    target, result = merged
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK:" in result.stdout and "Qwen2_5_VLForConditionalGeneration" in result.stdout
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (target / name).is_file(), name


def test_merged_weights_are_the_trained_ones(merged, tiny_model_dir):
    import torch
    from safetensors.torch import load_file

    target, result = merged
    assert result.returncode == 0, result.stderr
    original, merged_weights = load_file(tiny_model_dir / "model.safetensors"), load_file(target / "model.safetensors")
    assert set(merged_weights) == set(original)  # every shard was found and named as in the HF model
    for name, weight in original.items():
        # The merger writes bfloat16: compare with the shifted original at bfloat16 precision.
        expected = (weight.float() + SHIFT).to(torch.bfloat16).float()
        assert torch.allclose(merged_weights[name].float(), expected, atol=1e-2, rtol=1e-2), name


def test_merge_refuses_to_overwrite_a_model_unless_asked(merged, checkpoint):
    target, result = merged
    assert result.returncode == 0, result.stderr
    again = merge(checkpoint / "global_step_1" / "actor", target)
    assert again.returncode == 1 and "already holds a model" in again.stderr and "OVERWRITE=1" in again.stderr


@pytest.mark.parametrize(
    "where,message",
    [
        ("nowhere", "the folder does not exist"),
        ("global_step_1", "is a step folder; merge its actor"),
        ("", "is a run's checkpoint folder; merge one step's actor"),
        ("global_step_1/actor/huggingface", "not a verl FSDP actor checkpoint"),
    ],
)
def test_wrong_checkpoint_paths_get_a_pointer_to_the_right_one(checkpoint, tmp_path, where, message):
    result = merge(checkpoint / where if where else checkpoint, tmp_path / "out")
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    if where == "":
        assert str(checkpoint / "global_step_1" / "actor") in result.stderr


def test_missing_shard_is_reported(checkpoint, tmp_path):
    broken = tmp_path / "actor"
    shutil.copytree(checkpoint / "global_step_1" / "actor", broken)
    (broken / f"model_world_size_{WORLD_SIZE}_rank_1.pt").unlink()
    result = merge(broken, tmp_path / "out")
    assert result.returncode == 1 and "rank_1.pt is missing" in result.stderr


def test_checker_names_what_is_missing(merged, tmp_path):
    target, result = merged
    assert result.returncode == 0, result.stderr
    partial = tmp_path / "partial"
    shutil.copytree(target, partial)
    (partial / "processor_config.json").unlink()
    problems = load_checker().check_files(partial)
    assert problems == ["no image processor (processor_config.json or preprocessor_config.json)"]


def test_checker_requires_a_chat_template(merged, tmp_path):
    target, result = merged
    assert result.returncode == 0, result.stderr
    partial = tmp_path / "no_template"
    shutil.copytree(target, partial)
    (partial / "chat_template.jinja").unlink()
    config = json.loads((partial / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (partial / "tokenizer_config.json").write_text(json.dumps(config))
    checker = load_checker()
    assert checker.check_files(partial) == []
    checker.prepare_torchvision()
    problems, _ = checker.check_processor(partial)
    assert problems == ["no chat template (chat_template.jinja or chat_template in tokenizer_config.json)"]
    assert checker.check_processor(target)[0] == []  # the complete folder passes the same check


def test_checker_on_a_folder_without_weights(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert load_checker().main([str(tmp_path)]) == 1
    stderr = capsys.readouterr().err
    assert "no weights" in stderr and "tokenizer_config.json is missing" in stderr
