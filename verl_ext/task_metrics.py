"""Per-task reward figures in the *training* metrics of verl 0.9.1 (TensorBoard, console, wandb, ...).

verl logs the extra keys of a reward function (``acc``, ``format``, ...) per data source for validation only.
In the V1 trainer (the default, ``trainer.use_v1=True``) reward managers run inside the rollout workers and
their ``reward_extra_info`` lands in TransferQueue next to each response, but nothing moves it into the
trainer's metrics dict, so a custom reward manager cannot make training figures appear. The one object that
both sees every training batch and returns metrics the trainer logs is the replay buffer: the trainer merges
the second value of ``ReplayBuffer.sample()`` into each step's metrics, and verl lets users swap in their
own replay buffer class by path. This module provides one that adds, for every data source (``ssl_<task>``)
in the sampled batch::

    train/<data_source>/<key>              mean over the batch's responses of each numeric reward key
                                           (score, acc, format, partial, answered for verl_ext.reward)
    train/<data_source>/flat_groups        fraction of the step's prompts whose rollouts all got the same score
                                           (no GRPO advantage, no learning signal); with group filtering on,
                                           of the groups generated for the step, filtered ones included
    train/<data_source>/filtered_groups    with group filtering on: groups dropped (and replaced) this step
    train/<data_source>/responses_total    number of responses behind the figures

and, with ``sampler_kwargs.health.enable`` (on in the project's configs), the training-health figures of the
step's responses, which :class:`verl_ext.health.HealthMonitor` watches to print a warning when the run stops
learning (entropy or response length collapsing, responses cut off, flat groups near 1)::

    train/health/sampled_entropy           mean over response tokens of -log p(token) under the rollout policy
                                           (the sampled tokens' surprisal: an unbiased estimate of the
                                           per-token entropy, from the log-probabilities vLLM returns)
    train/health/response_length           mean response length in tokens
    train/health/clipped_share             share of responses at data.max_response_length

Enable it (sync trainer, the default ``trainer.v1.trainer_mode=sync``)::

    trainer.v1.sampler.custom_sampler.path=pkg://verl_ext.task_metrics
    trainer.v1.sampler.custom_sampler.name=TaskMetricsReplayBuffer

For the async trainer modes use ``name=TaskMetricsReplayBufferAsync``.

Adaptive curriculum. With ``sampler_kwargs.curriculum.enable`` (``data.online.curriculum`` in the configs,
``CURRICULUM=adaptive`` in run_grpo.sh) this buffer also runs the curriculum's controller
(:mod:`verl_ext.online.controller`): every step it hands over the step's groups of curriculum puzzles (task and
level from the prompt's ``extra_info``, accuracy from the rewards), those removed by group filtering included, and
adds ``train/curriculum/<task>/...`` to the step's metrics.

Group filtering. verl hands a custom replay buffer only the base constructor arguments: DAPO group filtering
(``algorithm.filter_groups``, which drops groups whose responses all score the same and generates new prompts in
their place) and ``trainer.v1.sampler.sync_refill_failed_groups`` would be silently off. The project's configs
pass them through ``trainer.v1.sampler.sampler_kwargs`` (interpolations of those keys, plus the batch sizes), and
:func:`filtering_kwargs` turns them into the arguments verl gives its built-in buffer, with the same rules, so
``algorithm.filter_groups.enable=true algorithm.filter_groups.metric=acc`` works with these metrics on.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

from verl_ext import health
from verl_ext.curriculum import curriculum_config
from verl_ext.online.controller import CurriculumController
from verl_ext.online.state import Group, parse_level
from verl_ext.reward import finite_number

logger = logging.getLogger(__name__)

METRIC_PREFIX = "train"


def _setting(settings: Any, key: str, default: Any = None) -> Any:
    value = None if settings is None else settings.get(key)  # a dict or an OmegaConf DictConfig
    return default if value is None else value


def filtering_kwargs(sampler_kwargs: Mapping[str, Any] | None, sync: bool) -> dict[str, Any]:
    """The group-filtering arguments verl's trainer gives its built-in replay buffer (``trainer_base.py``,
    ``_build_replay_buffer``), from the settings the project's configs put in ``sampler_kwargs``:
    ``filter_groups`` (``algorithm.filter_groups``), ``sync_refill_failed_groups``, ``train_batch_size`` and
    ``gen_batch_size`` (``data.*``). Also ``poll_interval``: how often the buffer looks for finished rollouts
    (verl's default, 2 s, rounds every CPU step's generation up to a multiple of 2 s)."""
    sampler_kwargs = sampler_kwargs or {}
    groups = _setting(sampler_kwargs, "filter_groups")
    metric = None
    if bool(_setting(groups, "enable", False)):
        metric = _setting(groups, "metric")
        if not metric:
            raise ValueError("algorithm.filter_groups.metric must be set when group filtering is enabled")
    refill_failed = bool(_setting(sampler_kwargs, "sync_refill_failed_groups", False))
    out: dict[str, Any] = {"filter_groups_metric": metric, "sync_refill_failed_groups": refill_failed}
    poll = _setting(sampler_kwargs, "poll_interval")
    if poll is not None:
        if isinstance(poll, bool) or not isinstance(poll, (int, float)) or not 0 < poll <= 60:
            raise ValueError(
                f"trainer.v1.sampler.sampler_kwargs.poll_interval must be seconds in (0, 60], got {poll!r}"
            )
        out["poll_interval"] = float(poll)
    if sync:
        train_batch = _setting(sampler_kwargs, "train_batch_size")
        if (metric is not None or refill_failed) and train_batch is None:
            raise ValueError(
                "group filtering needs trainer.v1.sampler.sampler_kwargs.train_batch_size (the project's configs "
                "set it to ${data.train_batch_size})"
            )
        out["train_batch_size"] = train_batch
        out["gen_batch_size"] = (
            1 if metric is not None or refill_failed else (_setting(sampler_kwargs, "gen_batch_size") or train_batch)
        )
        out["max_inflight_gen_batches"] = int(_setting(groups, "max_inflight_gen_batches", 1)) if metric else 1
    return out


def _as_list(values: Any) -> list[Any]:
    """A TransferQueue field (NonTensorStack, numpy array, list, ...) as a list of plain Python values."""
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    return [getattr(item, "data", item) for item in items]


def _final_positions(keys: list[str]) -> list[int]:
    """Positions of the last output of every session (keys ``{uid}_{session}_{index}``), as verl's validation
    keeps them: multi-output agent loops score only their final output."""
    best: dict[str, tuple[int, int]] = {}
    for pos, key in enumerate(keys):
        parts = key.rsplit("_", 2)
        session, index = (
            (f"{parts[0]}_{parts[1]}", int(parts[2])) if len(parts) == 3 and parts[2].isdigit() else (key, 0)
        )
        if session not in best or index > best[session][0]:
            best[session] = (index, pos)
    return sorted(pos for _, pos in best.values())


def task_metrics(
    keys: list[str], data_sources: Iterable[Any], reward_infos: Iterable[Any], prefix: str = METRIC_PREFIX
) -> dict[str, float]:
    """Per-data-source means of the numeric reward keys of one batch (see the module docstring for names).

    ``keys``, ``data_sources`` and ``reward_infos`` are aligned per response; ``reward_infos`` holds each
    response's ``reward_extra_info`` dict (missing or non-dict entries count as responses without figures).
    """
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    responses: dict[str, int] = defaultdict(int)
    group_scores: dict[str, dict[str, set[float]]] = defaultdict(lambda: defaultdict(set))
    for key, source, info in zip(keys, data_sources, reward_infos, strict=True):
        source = str(source)
        responses[source] += 1
        if not isinstance(info, Mapping):
            continue
        for name, value in info.items():
            number = finite_number(value)
            if number is not None:
                sums[source][name] += number
                counts[source][name] += 1
        score = finite_number(info.get("score"))
        if score is not None:
            group_scores[source][key.split("_", 1)[0]].add(score)

    metrics: dict[str, float] = {}
    for source, total in responses.items():
        for name, value in sums[source].items():
            metrics[f"{prefix}/{source}/{name}"] = value / counts[source][name]
        groups = group_scores[source]
        if groups:
            metrics[f"{prefix}/{source}/flat_groups"] = sum(len(s) == 1 for s in groups.values()) / len(groups)
        metrics[f"{prefix}/{source}/responses_total"] = float(total)
    return metrics


def curriculum_groups(
    keys: list[str], data_sources: Iterable[Any], extra_infos: Iterable[Any], reward_infos: Iterable[Any]
) -> list[Group]:
    """The groups of curriculum puzzles among the responses, each with its share of right responses.

    A group is the responses of one prompt (key prefix ``{uid}_``); its task, level and puzzle come from the
    prompt's ``extra_info`` (``difficulty == "level_<k>"``); puzzles without a level (offline, presets) are left out.
    """
    right: dict[str, list[float]] = defaultdict(list)
    puzzle: dict[str, tuple[str, int, int, str]] = {}
    for key, source, extra, info in zip(keys, data_sources, extra_infos, reward_infos, strict=True):
        if not isinstance(extra, Mapping):
            continue
        level = parse_level(extra.get("difficulty"))
        acc = finite_number(info.get("acc")) if isinstance(info, Mapping) else None
        if level is None or acc is None:
            continue
        uid = key.split("_", 1)[0]
        task = str(extra.get("task") or str(source).removeprefix("ssl_"))
        puzzle[uid] = (task, level, int(extra.get("index", -1)), str(extra.get("content_id") or ""))
        right[uid].append(acc)
    return [
        Group(task, level, sum(accs) / len(accs), position, cid)
        for uid, accs in right.items()
        for task, level, position, cid in [puzzle[uid]]
    ]


class _TaskMetricsMixin:
    """Adds :func:`task_metrics` of every sampled training batch to the metrics ``sample()`` returns, and runs
    the adaptive curriculum's controller when ``sampler_kwargs.curriculum.enable`` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        sync = not isinstance(self, ReplayBufferAsync)
        sampler_kwargs = kwargs.get("sampler_kwargs")
        for name, value in filtering_kwargs(sampler_kwargs, sync).items():
            kwargs.setdefault(name, value)
        super().__init__(*args, **kwargs)
        self._metrics_failed = False
        # Groups classified by the group filter since the last sample(): data source -> [flat, all].
        self._generated: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self._counted: set[str] = set()
        self._curriculum = _controller(sampler_kwargs)
        self._flat_curriculum_groups: list[Group] = []  # filtered flat groups since sample()
        self._health, self._max_response_length = _health_monitor(sampler_kwargs)
        self._health_failed = False

    def sample(self, global_steps: int, partition_id: str, batch_size: int) -> tuple[Any, dict]:
        batch, metrics = super().sample(global_steps=global_steps, partition_id=partition_id, batch_size=batch_size)
        if partition_id == "train" and batch.keys:
            batch_metrics, groups = self._batch_task_metrics(batch)
            metrics = {**metrics, **batch_metrics}
            if self.filter_groups_metric is not None:
                # The sampled batch holds no flat group any more: report what was generated for the step.
                for source, (flat, total) in self._generated.items():
                    metrics[f"{METRIC_PREFIX}/{source}/flat_groups"] = flat / total
                    metrics[f"{METRIC_PREFIX}/{source}/filtered_groups"] = float(flat)
                self._generated.clear()
            if self._health is not None:
                metrics.update(self._watch_health(global_steps, batch, metrics))
            if self._curriculum is not None:
                # Not guarded like the metrics: a curriculum that silently stopped would train on wrong levels.
                groups += self._flat_curriculum_groups
                self._flat_curriculum_groups = []
                metrics.update(self._curriculum.step(global_steps, groups))
        return batch, metrics

    def _dapo_filtered_keys(self, partition_id: str) -> tuple[set[str], Any]:
        filtered, counts = super()._dapo_filtered_keys(partition_id)
        if partition_id == "train" and self.filter_groups_metric is not None:
            self._count_generated(partition_id)
        return filtered, counts

    def _count_generated(self, partition_id: str) -> None:
        """Add the groups the filter classified since the last call to the per-source counts."""
        import transfer_queue as tq

        classified = self._dapo_classification_cache[partition_id]
        self._counted &= classified.keys()  # evicted groups leave the cache
        new = classified.keys() - self._counted
        if not new:
            return
        one_key = {}
        for key in self.partitions[partition_id]:
            uid = key.split("_")[0]
            if uid in new and uid not in one_key:
                one_key[uid] = key
        try:
            uids = sorted(one_key)
            fields = ["data_source", "extra_info", "extra_fields"] if self._curriculum else ["data_source"]
            data = tq.kv_batch_get(keys=[one_key[u] for u in uids], partition_id=partition_id, select_fields=fields)
            sources = _as_list(data["data_source"])
            for uid, source in zip(uids, sources, strict=True):
                counts = self._generated[str(source)]
                counts[0] += classified[uid] is not None
                counts[1] += 1
            if self._curriculum is not None:
                # A filtered group never reaches sample(); its responses all scored alike, so one stands for all.
                flat = [i for i, uid in enumerate(uids) if classified[uid] is not None]
                extra_infos, extra = _as_list(data["extra_info"]), _as_list(data["extra_fields"])
                self._flat_curriculum_groups += curriculum_groups(
                    [uids[i] for i in flat],
                    [sources[i] for i in flat],
                    [extra_infos[i] for i in flat],
                    [extra[i].get("reward_extra_info") if isinstance(extra[i], Mapping) else None for i in flat],
                )
        except Exception as error:  # noqa: BLE001 - a metric must never stop training
            if self._curriculum is not None:
                raise  # ... but the curriculum must not miss the groups that say the most (see _batch_task_metrics)
            if not self._metrics_failed:
                self._metrics_failed = True
                logger.warning("per-task flat-group counts unavailable: %r", error)
        self._counted |= new

    def _batch_task_metrics(self, batch: Any) -> tuple[dict[str, float], list[Group]]:
        """The batch's per-task metrics, and its curriculum groups (empty with the curriculum off)."""
        import transfer_queue as tq

        try:
            positions = _final_positions(list(batch.keys))
            keys = [batch.keys[i] for i in positions]
            fields = ["data_source", "extra_fields"] + (["extra_info"] if self._curriculum else [])
            data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=fields)
            sources = _as_list(data["data_source"])
            extra = _as_list(data["extra_fields"])
            infos = [e.get("reward_extra_info") if isinstance(e, Mapping) else None for e in extra]
            groups = curriculum_groups(keys, sources, _as_list(data["extra_info"]), infos) if self._curriculum else []
            return task_metrics(keys, sources, infos), groups
        except Exception as error:  # noqa: BLE001 - a metric must never stop training
            if self._curriculum is not None:
                raise  # ... but the curriculum must never go blind: it would keep training on stale levels
            if not self._metrics_failed:
                self._metrics_failed = True
                logger.warning("per-task training metrics unavailable: %r", error)
            return {}, []

    def _watch_health(self, step: int, batch: Any, metrics: Mapping[str, float]) -> dict[str, float]:
        """The step's health figures; prints the warnings that start at this step."""
        import transfer_queue as tq

        try:
            data = tq.kv_batch_get(
                keys=batch.keys, partition_id=batch.partition_id, select_fields=["responses", "rollout_log_probs"]
            )
            figures = response_health(
                data["responses"].offsets().diff(), data["rollout_log_probs"].values(), self._max_response_length
            )
        except Exception as error:  # noqa: BLE001 - a metric must never stop training
            if not self._health_failed:
                self._health_failed = True
                logger.warning("training-health figures unavailable: %r", error)
            figures = {}
        logged = {f"{METRIC_PREFIX}/health/{name}": value for name, value in figures.items()}
        for warning in self._health.observe(step, health.step_figures({**metrics, **logged})):
            logger.warning("training health: %s", warning)
            print(f"WARNING training health: {warning}", flush=True)  # the run's console and log file
        return logged


def response_health(lengths: Any, log_probs: Any, max_response_length: int | None) -> dict[str, float]:
    """Health figures of a batch of responses: their lengths and the concatenated log-probabilities the rollout
    gave the tokens it sampled (see the module docstring)."""
    import torch

    lengths = torch.as_tensor(lengths, dtype=torch.float64)
    log_probs = torch.as_tensor(log_probs, dtype=torch.float64).reshape(-1)
    if lengths.numel() == 0:
        return {}
    figures = {"response_length": float(lengths.mean())}
    if log_probs.numel():
        figures["sampled_entropy"] = float(-log_probs.mean())
    if max_response_length:
        figures["clipped_share"] = float((lengths >= max_response_length).double().mean())
    return figures


def _health_monitor(sampler_kwargs: Mapping[str, Any] | None) -> tuple[health.HealthMonitor | None, int | None]:
    """The health monitor the configs ask for through ``sampler_kwargs.health`` (None when it is off)."""
    settings = _setting(sampler_kwargs, "health")
    if settings is None or not bool(_setting(settings, "enable", False)):
        return None, None
    thresholds = health.Thresholds.from_settings(dict(settings.items()))
    longest = _setting(settings, "max_response_length")
    return health.HealthMonitor(thresholds), int(longest) if longest else None


def _controller(sampler_kwargs: Mapping[str, Any] | None) -> CurriculumController | None:
    """The curriculum controller the configs ask for through ``sampler_kwargs`` (None when it is off)."""
    config = curriculum_config(_setting(sampler_kwargs, "curriculum"))
    if config is None:
        return None
    state_dir = _setting(sampler_kwargs, "curriculum_state_dir")
    if not state_dir:
        raise ValueError("the curriculum needs trainer.v1.sampler.sampler_kwargs.curriculum_state_dir")
    return CurriculumController(config, str(state_dir))


class TaskMetricsReplayBuffer(_TaskMetricsMixin, ReplayBuffer):
    """verl's synchronous replay buffer plus per-task training metrics (``trainer.v1.trainer_mode=sync``)."""


class TaskMetricsReplayBufferAsync(_TaskMetricsMixin, ReplayBufferAsync):
    """verl's asynchronous replay buffer plus per-task training metrics (async trainer modes)."""


__all__ = ["TaskMetricsReplayBuffer", "TaskMetricsReplayBufferAsync", "filtering_kwargs", "task_metrics"]
