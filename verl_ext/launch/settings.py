"""Settings the launcher derives from the hardware and the data, so the first run on a new machine works.

Each rule looks at the composed config (the recipe plus the user's overrides) and either adds Hydra overrides,
with the reason printed for the user, or refuses with a message that names the fix. A key the user set on the
command line is never changed: a rule that cannot honour it refuses instead of overriding it silently.

The rules, and why each exists (all checked against verl 0.9.1's source):

* attention: verl loads the actor with FlashAttention-2, and ``use_remove_padding`` swaps in an attention path
  that also needs flash-attn. Without the package both must change together (sdpa, padded batches).
* batch size: verl's trainer drops the last partial batch, so fewer training rows than one batch gives
  an epoch of zero steps, and the run fails (ZeroDivisionError) after its first validation.
* tensor parallel: vLLM replicas must tile the GPUs of a node; verl otherwise makes 0 replicas or asserts.
* one GPU: the actor's weights, gradients and AdamW state stay on the GPU during rollout unless offloaded,
  next to vLLM's share of the memory (see :func:`single_gpu_memory` for the arithmetic).
* ``max_model_len``: left null, verl's vLLM server takes the model's ``max_position_embeddings``
  (128,000 for Qwen2.5-VL) and sizes its scheduling for it; the run never needs more than prompt + response.
* curriculum loader workers: verl's loader asks for a batch ``2 x data.dataloader_num_workers`` steps ahead, so
  the curriculum's levels reach the puzzles that many steps late (:mod:`verl_ext.online.state`); verl's default of
  8 workers would mean 16 steps. Online puzzles are cheap (``scripts/bench_online.py``: one worker makes a
  512-prompt step in a few seconds, a GPU step takes minutes), so with the curriculum on the workers drop to 2.
* row order: a build made with ``--order stratified`` holds every answer in its share in each run of rows
  (:mod:`verl_ext.builder.order`); verl's shuffle would undo that, so such training files are read as written.
* sampling seeds: with ``rollout.full_determinism`` verl 0.9.1 gives every vLLM request the same seed, so the
  ``rollout.n`` responses to a prompt come out identical and every GRPO group is flat; the seeded agent loop
  (:mod:`verl_ext.seeded_rollout`) gives each request its own, which verl then keeps.
* Ray: without ``RAY_ADDRESS`` the run starts a Ray of its own (``address=local``); ``ray.init`` would
  otherwise join any cluster ``ray start`` made on the machine, even a stopped one. With ``RAY_ADDRESS`` it
  joins that cluster, and the values a config sets for a local Ray (the CPU config's ``num_cpus``) are
  cleared: ``ray.init`` refuses ``num_cpus``, ``num_gpus``, ``resources``, ``labels`` and
  ``object_store_memory`` when it connects to a cluster (each node declared its own at ``ray start``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import sys
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from verl_ext.launch.errors import PreflightError

ATTENTION_KEY = "actor_rollout_ref.model.override_config.attn_implementation"
REMOVE_PADDING_KEY = "actor_rollout_ref.model.use_remove_padding"
TP_KEY = "actor_rollout_ref.rollout.tensor_model_parallel_size"
MAX_MODEL_LEN_KEY = "actor_rollout_ref.rollout.max_model_len"
ACTOR_OFFLOAD_KEYS = (
    "actor_rollout_ref.actor.fsdp_config.param_offload",
    "actor_rollout_ref.actor.fsdp_config.optimizer_offload",
)
FLASH_ATTN_INSTALL = "pip install flash-attn==2.8.3 --no-build-isolation"


@dataclass(frozen=True)
class Decision:
    """Overrides the launcher adds, and the sentence that tells the user why."""

    overrides: tuple[str, ...]
    reason: str


def override_key(override: str) -> str | None:
    """The config key a Hydra override sets (``++a.b=1`` -> ``a.b``); None for flags such as ``--cfg``."""
    if override.startswith("-") or "=" not in override:
        return None
    return override.split("=", 1)[0].lstrip("+~")


def user_keys(overrides: list[str]) -> set[str]:
    return {key for key in map(override_key, overrides) if key}


def _get(config: DictConfig, key: str, default: Any = None) -> Any:
    return OmegaConf.select(config, key, default=default)


def world_size(config: DictConfig) -> int:
    return int(config.trainer.n_gpus_per_node) * int(config.trainer.nnodes)


def attention(config: DictConfig, explicit: set[str], flash_attn_installed: bool) -> list[Decision]:
    """Use PyTorch's SDPA attention on padded batches when flash-attn is missing (both settings, or neither)."""
    if flash_attn_installed:
        return []
    attn = _get(config, ATTENTION_KEY) or "flash_attention_2"  # verl's default when the key is absent
    remove_padding = bool(_get(config, REMOVE_PADDING_KEY, False))
    needs_flash = [
        key
        for key, on in ((ATTENTION_KEY, attn == "flash_attention_2"), (REMOVE_PADDING_KEY, remove_padding))
        if on and key in explicit
    ]
    if needs_flash:
        raise PreflightError(
            f"flash-attn is not installed, but {' and '.join(needs_flash)} as given on the command line need it. "
            f"Install it ({FLASH_ATTN_INSTALL}), or drop that override and the launcher runs PyTorch's SDPA "
            "attention on padded batches instead."
        )
    overrides = []
    if remove_padding:
        overrides.append(f"{REMOVE_PADDING_KEY}=false")
    if attn == "flash_attention_2":
        overrides.append(f"++{ATTENTION_KEY}=sdpa")
    if not overrides:
        return []
    return [
        Decision(
            tuple(overrides),
            (
                "flash-attn is not installed: the actor and reference model use PyTorch SDPA attention on padded "
                "batches (use_remove_padding=false, attn_implementation=sdpa). Each micro-batch is then padded to its "
                "longest sequence instead of packed, which costs time and activation memory in the log-prob and "
                f"update phases (rollout in vLLM is unaffected). For the recipe's speed: {FLASH_ATTN_INSTALL}"
            ),
        )
    ]


def batch_fits_data(config: DictConfig, train_rows: int) -> None:
    """Refuse a training set smaller than one batch (verl would run zero steps per epoch, then crash)."""
    batch = int(config.data.train_batch_size)
    limit = _get(config, "data.train_max_samples")
    rows = min(train_rows, int(limit)) if isinstance(limit, int) and limit > 0 else train_rows
    if rows >= batch:
        return
    fitting = _largest_valid_batch(config, rows)
    more = "build more puzzles (more pictures, or --puzzles-per-image in BUILD_ARGS)"
    fix = (
        f"Add data.train_batch_size={fitting} actor_rollout_ref.actor.ppo_mini_batch_size={fitting} (the largest "
        f"batch verl accepts for this layout), or {more}."
        if fitting
        else f"No smaller batch fits this GPU layout; {more}."
    )
    raise PreflightError(
        f"the training split has {rows} puzzles but data.train_batch_size is {batch}. verl drops the last partial "
        f"batch, so an epoch would have 0 steps and the run would fail after its first validation. {fix}"
    )


def _largest_valid_batch(config: DictConfig, rows: int) -> int | None:
    """The largest batch (and mini-batch) of at most ``rows`` prompts that verl's validation accepts."""
    trial = copy.deepcopy(config)
    for size in range(rows, 0, -1):
        OmegaConf.update(trial, "data.train_batch_size", size)
        OmegaConf.update(trial, "actor_rollout_ref.actor.ppo_mini_batch_size", size)
        try:
            validate_with_verl(trial, quiet=True)
        except PreflightError:
            continue
        return size
    return None


def tensor_parallel(config: DictConfig, explicit: set[str]) -> list[Decision]:
    """A vLLM tensor-parallel size that tiles a node's GPUs: the largest divisor of them up to the config's."""
    tp = int(_get(config, TP_KEY, 1))
    gpus = int(config.trainer.n_gpus_per_node)
    if gpus % tp == 0:
        return []
    if TP_KEY in explicit:
        raise PreflightError(
            f"{TP_KEY}={tp} does not divide the {gpus} GPU(s) per node, so verl cannot place a single vLLM replica. "
            f"Use a size that divides {gpus} (e.g. {TP_KEY}={_largest_divisor(gpus, tp)})."
        )
    fitted = _largest_divisor(gpus, tp)
    return [
        Decision(
            (f"{TP_KEY}={fitted}",),
            (
                f"the config spreads each vLLM replica over {tp} GPUs, but a node has {gpus}: using {fitted} "
                f"({gpus // fitted} replica(s) per node, each holding the whole model)."
            ),
        )
    ]


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def single_gpu_memory(config: DictConfig, explicit: set[str]) -> list[Decision]:
    """On one GPU, keep the actor's weights and AdamW state on the host outside their own phase.

    The arithmetic for Qwen2.5-VL-3B (3.75 B parameters) on one 80 GB GPU: FSDP keeps fp32 weights (15 GB),
    fp32 gradients (15 GB) and AdamW's two moments (30 GB) resident, 60 GB, and vLLM takes
    ``gpu_memory_utilization`` 0.6 of the GPU (48 GB) during rollout: 108 GB. Offloading both to the host
    leaves rollout with vLLM alone and the update with the actor alone (vLLM's weights and KV cache are
    released while the actor trains, ``free_cache_engine``), at the price of host-device copies every step.
    With several GPUs FSDP shards those 60 GB, which is why only a single GPU gets this.
    """
    if world_size(config) != 1:
        return []
    overrides = tuple(f"{key}=true" for key in ACTOR_OFFLOAD_KEYS if key not in explicit and not _get(config, key))
    if not overrides:
        return []
    return [
        Decision(
            overrides,
            (
                "one GPU: the actor's weights and AdamW state are offloaded to host memory between phases "
                "(actor fsdp_config.param_offload=true, optimizer_offload=true), since together with vLLM's "
                f"{_get(config, 'actor_rollout_ref.rollout.gpu_memory_utilization')} share of the GPU they do not fit. "
                "Costs host-device copies every step; see verl_ext/launch/settings.py for the arithmetic."
            ),
        )
    ]


CURRICULUM_WORKERS = 2
WORKERS_KEY = "data.dataloader_num_workers"


def curriculum_workers(config: DictConfig, explicit: set[str]) -> list[Decision]:
    """At most 2 loader workers with the adaptive curriculum (see the module docstring), unless the user chose."""
    if WORKERS_KEY in explicit or not _get(config, "data.online.curriculum.enable", False):
        return []
    if int(_get(config, WORKERS_KEY, 0) or 0) <= CURRICULUM_WORKERS:
        return []
    return [
        Decision(
            (f"{WORKERS_KEY}={CURRICULUM_WORKERS}",),
            f"{CURRICULUM_WORKERS} loader workers: the loader prefetches 2 batches per worker, so the curriculum's "
            f"levels reach the puzzles {2 * CURRICULUM_WORKERS} steps late instead of "
            f"{2 * int(_get(config, WORKERS_KEY))}; {CURRICULUM_WORKERS} workers make puzzles far faster than a step "
            "uses them (scripts/bench_online.py).",
        )
    ]


SHUFFLE_KEY = "data.shuffle"


def keep_row_order(config: DictConfig, explicit: set[str], stratified: list[str]) -> list[Decision]:
    """Training files built in stratified order (``stratified``: their folders) are read as written."""
    if not stratified or SHUFFLE_KEY in explicit or not _get(config, SHUFFLE_KEY, True):
        return []
    return [
        Decision(
            (f"{SHUFFLE_KEY}=false",),
            f"no shuffling: {', '.join(stratified)} holds its rows in stratified order (every batch holds the answers "
            "in their overall shares, verl_ext/builder/order.py), which a shuffle would undo.",
        )
    ]


def max_model_len(config: DictConfig, explicit: set[str]) -> list[Decision]:
    """vLLM's context length: prompt + response, never the model's 128k positions."""
    if MAX_MODEL_LEN_KEY in explicit:
        return []
    needed = int(config.data.max_prompt_length) + int(config.data.max_response_length)
    if _get(config, MAX_MODEL_LEN_KEY) == needed:
        return []
    return [
        Decision(
            (f"{MAX_MODEL_LEN_KEY}={needed}",),
            (f"vLLM context length {needed} tokens (data.max_prompt_length + data.max_response_length)."),
        )
    ]


FULL_DETERMINISM_KEY = "actor_rollout_ref.rollout.full_determinism"
AGENT_LOOP_KEY = "actor_rollout_ref.rollout.agent.default_agent_loop"
VERL_SINGLE_TURN_LOOP = "single_turn_agent"
SEEDED_LOOP = "seeded_single_turn"  # verl_ext.seeded_rollout.NAME, named here without importing verl


def sampling_seeds(config: DictConfig, explicit: set[str]) -> list[Decision]:
    """Under verl's full determinism, one seed per request rather than one for all (identical groups)."""
    rollout = config.actor_rollout_ref.rollout
    if not _get(config, FULL_DETERMINISM_KEY, False) or int(rollout.n) < 2:
        return []
    if _get(config, AGENT_LOOP_KEY) != VERL_SINGLE_TURN_LOOP:
        return []  # the seeded loop, or a loop of the user's own that may seed its requests
    why = (
        f"with {FULL_DETERMINISM_KEY}=true verl gives every vLLM request the same seed, so the {rollout.n} "
        "responses to a prompt come out identical and every GRPO group is flat"
    )
    if AGENT_LOOP_KEY in explicit:
        raise PreflightError(f"{why}. Use {AGENT_LOOP_KEY}={SEEDED_LOOP} (a seed of its own for every request).")
    return [Decision((f"{AGENT_LOOP_KEY}={SEEDED_LOOP}",), f"a seed of its own for every rollout request: {why}.")]


# ray.init arguments Ray refuses when it connects to a running cluster (ray/_private/worker.py, Ray 2.60).
LOCAL_RAY_ONLY = ("num_cpus", "num_gpus", "resources", "labels", "object_store_memory")
RAY_ADDRESS_KEY = "ray_kwargs.ray_init.address"


def ray_cluster(config: DictConfig, explicit: set[str], ray_address: str | None) -> list[Decision]:
    """A Ray of the run's own, or the cluster at ``ray_address`` (``RAY_ADDRESS``) without the local-only keys."""
    address = _get(config, RAY_ADDRESS_KEY)
    if not ray_address and (address is None or str(address) == "local"):
        if address is not None or RAY_ADDRESS_KEY in explicit:
            return []
        return [
            Decision(
                (f"++{RAY_ADDRESS_KEY}=local",),
                "a Ray instance of the run's own (RAY_ADDRESS is not set): without it ray.init joins any cluster "
                "started on this machine with `ray start` -- someone else's, or a stopped one whose address file "
                "is left in Ray's temp folder -- instead of starting one.",
            )
        ]
    target = ray_address or str(address)
    keys = [
        f"ray_kwargs.ray_init.{name}"
        for name in LOCAL_RAY_ONLY
        if _get(config, f"ray_kwargs.ray_init.{name}") is not None
    ]
    refused = [key for key in keys if key in explicit]
    if ray_address and str(address) == "local" and RAY_ADDRESS_KEY in explicit:
        refused.append(RAY_ADDRESS_KEY)
    if refused:
        raise PreflightError(
            f"{', '.join(refused)} cannot be set when joining the Ray cluster at {target}: Ray takes each node's "
            "resources from its `ray start` (e.g. ray start --num-cpus=16 --num-gpus=8). Drop the override."
        )
    overrides = [f"{key}=null" for key in keys]
    if ray_address and str(address) == "local":
        overrides.append(f"{RAY_ADDRESS_KEY}=null")  # ray.init then reads RAY_ADDRESS
    if not overrides:
        return []
    cleared = ", ".join(o.split("=", 1)[0].rsplit(".", 1)[1] for o in overrides)
    return [
        Decision(
            tuple(overrides),
            f"joining the Ray cluster at {target}: its nodes declared their resources at `ray start`, and ray.init "
            f"refuses num_cpus/num_gpus/resources when it connects to a cluster (cleared: {cleared}).",
        )
    ]


def smoke_overrides(world: int) -> tuple[str, ...]:
    """A one-step run that shows a GPU setup works in minutes: tiny batch, short answers, no validation, no save.

    Two prompts per GPU (at least 8) with two responses each split evenly over any number of GPUs, and micro
    batches of 2 divide every per-GPU share, so verl's batch checks pass for 1, 2, 4, 8, 16... GPUs.
    """
    batch = max(8, 2 * world)
    return (
        f"data.train_batch_size={batch}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={batch}",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.rollout.n=2",
        "data.max_response_length=128",
        "actor_rollout_ref.rollout.enforce_eager=true",
        "trainer.val_before_train=false",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        "trainer.total_training_steps=1",
        "trainer.resume_mode=disable",
        "trainer.logger=['console']",
    )


def decide(
    config: DictConfig,
    explicit: set[str],
    *,
    device: str,
    flash_attn_installed: bool,
    ray_address: str | None = None,
) -> list[Decision]:
    """Every rule above, in order, for a config composed with the user's overrides (and the smoke ones)."""
    decisions = []
    if device == "gpu":
        decisions += attention(config, explicit, flash_attn_installed)
        decisions += tensor_parallel(config, explicit)
        decisions += single_gpu_memory(config, explicit)
    decisions += max_model_len(config, explicit)
    decisions += curriculum_workers(config, explicit)
    decisions += sampling_seeds(config, explicit)
    decisions += ray_cluster(config, explicit, ray_address)
    return decisions


def validate_with_verl(config: DictConfig, quiet: bool = False) -> None:
    """verl's own batch-layout validation, the check ``main_ppo`` runs first thing, before ``ray.init``: here for
    when verl does not run (a printed config, DRY_RUN) and for trying batch sizes."""
    from verl.utils.config import validate_config

    actor = config.actor_rollout_ref.actor
    use_reference = bool(actor.use_kl_loss) or bool(config.algorithm.use_kl_in_reward)
    # verl prints its verdict on stdout, which carries the launcher's overrides: send it elsewhere.
    sink = io.StringIO() if quiet else sys.stderr
    try:
        with contextlib.redirect_stdout(sink):
            validate_config(config, use_reference_policy=use_reference, use_critic=False)
    except (AssertionError, ValueError) as error:
        raise PreflightError(f"verl rejects this configuration: {error}") from None
