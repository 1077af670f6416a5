"""Per-task training metrics: the pure aggregation, and the replay buffer against a real TransferQueue."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("verl")
pytest.importorskip("transfer_queue")

# verl's v1 package imports transformers' processors, hence torchvision: CPU-only torch needs the fix first.
from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable  # noqa: E402

ensure_torchvision_importable()

from verl_ext.task_metrics import TaskMetricsReplayBuffer, filtering_kwargs, task_metrics  # noqa: E402


def info(score: float, acc: float, fmt: float = 1.0) -> dict:
    return {"score": score, "acc": acc, "format": fmt, "partial": acc, "answered": 1.0}


def test_task_metrics_per_data_source() -> None:
    keys = ["u1_0_0", "u1_1_0", "u2_0_0", "u2_1_0", "u3_0_0", "u3_1_0"]
    sources = ["ssl_rotation"] * 4 + ["ssl_jigsaw"] * 2
    infos = [info(1, 1), info(0.1, 0), info(0.1, 0), info(0.1, 0), info(1, 1), info(0.5, 0, 0)]
    metrics = task_metrics(keys, sources, infos)
    assert metrics["train/ssl_rotation/acc"] == 0.25
    assert metrics["train/ssl_rotation/score"] == pytest.approx((1 + 0.1 * 3) / 4)
    assert metrics["train/ssl_rotation/flat_groups"] == 0.5  # u2: both rollouts 0.1
    assert metrics["train/ssl_rotation/responses_total"] == 4
    assert metrics["train/ssl_jigsaw/acc"] == 0.5
    assert metrics["train/ssl_jigsaw/format"] == 0.5
    assert metrics["train/ssl_jigsaw/flat_groups"] == 0.0


def test_task_metrics_skips_what_is_not_a_number() -> None:
    metrics = task_metrics(["a_0_0", "b_0_0"], ["s", "s"], [{"acc": 1.0, "note": "x", "bad": float("nan")}, None])
    assert metrics == {"train/s/acc": 1.0, "train/s/responses_total": 2.0}


def test_task_metrics_needs_aligned_inputs() -> None:
    with pytest.raises(ValueError):
        task_metrics(["a"], ["s", "t"], [{}])


# ------------------------------------------------------------------------------------ real TransferQueue


@pytest.fixture(scope="module")
def transfer_queue():
    """A local Ray with one TransferQueue storage unit (what verl's trainer starts, minus everything else)."""
    import ray
    import transfer_queue as tq
    from omegaconf import OmegaConf

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1, "total_storage_size": 1000}}}))
    yield tq
    tq.close()
    if started:
        ray.shutdown()


def put_group(
    tq, uid: str, source: str, infos: list[dict], global_steps: int = 1, extra_info: dict | None = None
) -> None:
    """Write one finished GRPO group the way verl's trainer and AgentLoopWorkerTQ do (the prompt's dataset fields,
    ``extra_info`` among them, travel with every response)."""
    import torch
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    tq.kv_batch_put(
        keys=[uid], partition_id="train", tags=[{"is_prompt": True, "status": "finished", "global_steps": global_steps}]
    )
    fields = [
        {
            "data_source": source,
            "extra_fields": {"reward_extra_info": reward_info, "min_global_steps": 0, "max_global_steps": 0},
            "rm_scores": torch.tensor([0.0, reward_info["score"]]),
            "extra_info": extra_info or {},
        }
        for reward_info in infos
    ]
    tags = [{"status": "success", "global_steps": global_steps, "min_global_steps": 0, "max_global_steps": 0}] * len(
        infos
    )
    tq.kv_batch_put(
        keys=[f"{uid}_{i}_0" for i in range(len(infos))],
        partition_id="train",
        fields=list_of_dict_to_tensordict(fields),
        tags=tags,
    )


# Starting Ray and TransferQueue takes 10-50 s on the 2-core machine, so this runs with the slow end-to-end set
# (scripts/test.sh runs everything; `-m "not e2e"` skips it).
@pytest.mark.e2e
def test_replay_buffer_adds_per_task_metrics(transfer_queue) -> None:
    buffer = TaskMetricsReplayBuffer(
        trainer_mode="sync",
        trainer_config={},
        max_off_policy_threshold=None,
        max_off_policy_strategy="drop",
        sampler_kwargs={},
        poll_interval=0.05,
    )
    put_group(transfer_queue, "p1", "ssl_rotation", [info(1, 1), info(0.1, 0)])
    put_group(transfer_queue, "p2", "ssl_jigsaw", [info(0.1, 0), info(0.1, 0)])
    batch, metrics = buffer.sample(global_steps=1, partition_id="train", batch_size=2)
    assert sorted(batch.keys) == ["p1_0_0", "p1_1_0", "p2_0_0", "p2_1_0"]
    assert metrics["train/ssl_rotation/acc"] == 0.5
    assert metrics["train/ssl_rotation/flat_groups"] == 0.0
    assert metrics["train/ssl_jigsaw/acc"] == 0.0
    assert metrics["train/ssl_jigsaw/flat_groups"] == 1.0
    assert metrics["train/ssl_jigsaw/responses_total"] == 2.0
    transfer_queue.kv_clear(keys=batch.keys, partition_id="train")


def test_filtering_settings_match_verls_builtin_buffer() -> None:
    """What the configs hand over in sampler_kwargs becomes what verl gives its own buffer (trainer_base.py)."""
    on = {"filter_groups": {"enable": True, "metric": "acc", "max_inflight_gen_batches": 3}, "train_batch_size": 8}
    assert filtering_kwargs(on, sync=True) == {
        "filter_groups_metric": "acc",
        "sync_refill_failed_groups": False,
        "train_batch_size": 8,
        "gen_batch_size": 1,
        "max_inflight_gen_batches": 3,
    }
    assert filtering_kwargs(on, sync=False) == {"filter_groups_metric": "acc", "sync_refill_failed_groups": False}
    off = {"filter_groups": {"enable": False, "metric": "acc"}, "train_batch_size": 8, "gen_batch_size": None}
    assert filtering_kwargs(off, sync=True)["filter_groups_metric"] is None
    assert filtering_kwargs(off, sync=True)["gen_batch_size"] == 8
    assert filtering_kwargs({}, sync=True)["filter_groups_metric"] is None  # a config without the hand-over
    with pytest.raises(ValueError, match="metric must be set"):
        filtering_kwargs({"filter_groups": {"enable": True, "metric": None}, "train_batch_size": 8}, sync=True)


def test_the_poll_interval_reaches_the_buffer_and_bad_ones_are_refused() -> None:
    assert filtering_kwargs({"poll_interval": 0.1}, sync=True)["poll_interval"] == 0.1
    assert "poll_interval" not in filtering_kwargs({}, sync=True)  # verl's own default then
    for bad in (0, -1, "fast", True, 120):
        with pytest.raises(ValueError, match="poll_interval"):
            filtering_kwargs({"poll_interval": bad}, sync=False)


@pytest.mark.e2e
def test_flat_groups_are_filtered_refilled_and_reported_per_task(transfer_queue) -> None:
    """algorithm.filter_groups with this buffer: flat groups are dropped, new prompts are asked for in their place,
    the batch holds only informative groups, and each task's share of flat groups among those generated is logged."""
    refills = []

    def refill(count: int) -> int:  # the trainer's _add_prompts_to_generate: new prompts, here finished at once
        for i in range(count):
            uid = f"r{len(refills)}x{i}"
            put_group(transfer_queue, uid, "ssl_rotation", [info(1, 1), info(0.1, 0)])
        refills.append(count)
        return count

    buffer = TaskMetricsReplayBuffer(
        trainer_mode="sync",
        trainer_config={},
        max_off_policy_threshold=None,
        max_off_policy_strategy="drop",
        sampler_kwargs={"filter_groups": {"enable": True, "metric": "acc"}, "train_batch_size": 2},
        poll_interval=0.05,
        refill_fn=refill,
    )
    assert buffer.filter_groups_metric == "acc" and buffer.gen_batch_size == 1
    put_group(transfer_queue, "q1", "ssl_rotation", [info(1, 1), info(0.1, 0)])  # informative
    put_group(transfer_queue, "q2", "ssl_jigsaw", [info(0.1, 0), info(0.1, 0)])  # flat: all wrong
    put_group(transfer_queue, "q3", "ssl_rotation", [info(1, 1), info(1, 1)])  # flat: all right
    batch, metrics = buffer.sample(global_steps=1, partition_id="train", batch_size=2)
    uids = {key.split("_")[0] for key in batch.keys}
    assert len(uids) == 2 and not uids & {"q2", "q3"}  # two informative groups (verl drops any surplus)
    assert refills and sum(refills) >= 1
    assert metrics["train/ssl_jigsaw/flat_groups"] == 1.0 and metrics["train/ssl_jigsaw/filtered_groups"] == 1.0
    generated_rotation = 2 + sum(refills)  # q1, q3 and the refills
    assert metrics["train/ssl_rotation/flat_groups"] == pytest.approx(1 / generated_rotation)
    assert metrics["train/ssl_rotation/acc"] == 0.5  # the batch itself: informative groups only
    assert metrics["train/ssl_rotation/filtered_groups"] == 1.0
    transfer_queue.kv_clear(keys=batch.keys, partition_id="train")


@pytest.mark.e2e
def test_the_curriculum_learns_from_kept_and_filtered_groups(transfer_queue, tmp_path) -> None:
    """With group filtering on, the controller still sees the flat groups verl drops: they say the most about a
    level (mastered, or out of reach). Its state file records every group, its metrics join the step's."""
    from verl_ext.curriculum import CurriculumConfig
    from verl_ext.online.state import Group, StateDir

    def level(task: str, k: int, position: int) -> dict:
        return {"task": task, "difficulty": f"level_{k}", "index": position, "content_id": f"c{position}"}

    refilled: list[int] = []

    def refill(count: int) -> int:  # new informative prompts, a new uid and position each
        for _ in range(count):
            n = len(refilled)
            refilled.append(n)
            put_group(
                transfer_queue,
                f"s{n}",
                "ssl_rotation",
                [info(1, 1), info(0.1, 0)],
                extra_info=level("rotation", 0, 10 + n),
            )
        return count

    knobs = {"enable": True, "group_size": 2, "min_groups": 100}
    buffer = TaskMetricsReplayBuffer(
        trainer_mode="sync",
        trainer_config={},
        max_off_policy_threshold=None,
        max_off_policy_strategy="drop",
        sampler_kwargs={
            "filter_groups": {"enable": True, "metric": "acc"},
            "train_batch_size": 2,
            "curriculum": knobs,
            "curriculum_state_dir": str(tmp_path),
        },
        poll_interval=0.05,
        refill_fn=refill,
    )
    put_group(transfer_queue, "k1", "ssl_rotation", [info(1, 1), info(0.1, 0)], extra_info=level("rotation", 0, 1))
    put_group(transfer_queue, "k2", "ssl_rotation", [info(1, 1), info(1, 1)], extra_info=level("rotation", 1, 2))
    put_group(transfer_queue, "k3", "ssl_jigsaw", [info(0.1, 0), info(0.1, 0)], extra_info=level("jigsaw", 0, 3))
    batch, metrics = buffer.sample(global_steps=1, partition_id="train", batch_size=2)
    groups = StateDir(tmp_path).groups(1)
    filtered = [Group("rotation", 1, 1.0, 2, "c2"), Group("jigsaw", 0, 0.0, 3, "c3")]
    assert all(group in groups for group in filtered)
    # Two informative groups kept (k1 and the refills are all informative; which two verl keeps depends on timing).
    kept = [group for group in groups if group not in filtered]
    assert len(kept) == 2 and all(group[:3] == ("rotation", 0, 0.5) for group in kept), groups
    assert {group.position for group in kept} <= {1, *(10 + n for n in refilled)}
    assert metrics["train/curriculum/rotation/groups"] == 3.0 and metrics["train/curriculum/jigsaw/groups"] == 1.0
    assert metrics["train/curriculum/rotation/level_1/accuracy"] == 1.0
    assert metrics["train/curriculum/jigsaw/level_0/solve_rate"] < CurriculumConfig().prior
    transfer_queue.kv_clear(keys=batch.keys, partition_id="train")
