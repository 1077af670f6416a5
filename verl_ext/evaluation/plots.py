"""PNG plots of a training run from its TensorBoard event files (or the ``metrics.jsonl`` of verl's file logger).

verl's TensorBoard logger writes every metric with ``add_scalar(name, value, step)``. The plots use these names:

* reward: ``critic/score/mean`` (band ``critic/score/min``…``max``) and per task ``train/<data_source>/score``
  (the per-task keys come from :class:`verl_ext.task_metrics.TaskMetricsReplayBuffer`)
* accuracy / partial credit / format rate / valid answers / flat groups per task:
  ``train/<data_source>/{acc,partial,format,answered,flat_groups}``
* response length: ``response_length/mean`` (band min…max), and the share cut at the length limit
  ``train/health/clipped_share`` (verl's ``response_length/clip_ratio`` when that is absent)
* entropy: ``actor/entropy`` (and ``train/health/sampled_entropy``); PPO clip fraction: ``actor/pg_clipfrac``
  (and ``actor/pg_clipfrac_lower``)
* KL: ``actor/kl_loss`` (and ``actor/ppo_kl`` when logged)
* validation: ``val-core/<data_source>/acc/mean@N`` and ``val-aux/<data_source>/format/mean@N``
* adaptive curriculum (online puzzles, :mod:`verl_ext.online.controller`): ``train/curriculum/<task>/frontier``
  and, per task, ``train/curriculum/<task>/level_<k>/{share,solve_rate}``: the share of a step's puzzles at each
  level and the controller's solve-rate estimate of each level

A series that is not in the log is skipped and noted (``plots.json`` lists what was drawn and what was not).
Training curves are drawn raw (faint) and smoothed with an exponential moving average. The run's health is
checked as it was while it trained (:mod:`verl_ext.health`) and its warnings printed and kept in ``plots.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from verl_ext.evaluation.run_log import Series, load_jsonl_scalars, validation_series  # noqa: E402
from verl_ext.health import check_logged_run  # noqa: E402

ALL_TASKS = "all tasks"

EVENT_GLOB = "events.out.tfevents.*"


def load_scalars(logdir: str | Path) -> dict[str, Series]:
    """Every scalar series under ``logdir`` (searched recursively), merged across event files.

    A resumed run writes a new event file that repeats some steps; the value written last wins. ``logdir`` may
    also be the ``metrics.jsonl`` of verl's file logger (the CPU demo logs there instead of TensorBoard).
    """
    logdir = Path(logdir)
    if logdir.suffix == ".jsonl":
        return load_jsonl_scalars(logdir)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not logdir.exists():
        raise FileNotFoundError(f"{logdir}: no such log folder")
    files = sorted(logdir.rglob(EVENT_GLOB)) if logdir.is_dir() else [logdir]
    if not files:
        raise FileNotFoundError(f"{logdir}: no TensorBoard event files ({EVENT_GLOB}) in it")
    points: dict[str, dict[int, tuple[float, float]]] = {}
    for path in files:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})  # 0 = keep every point
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            for event in acc.Scalars(tag):
                seen = points.setdefault(tag, {})
                previous = seen.get(event.step)
                if previous is None or event.wall_time >= previous[0]:
                    seen[event.step] = (event.wall_time, event.value)
    out = {}
    for tag, by_step in points.items():
        steps = np.array(sorted(by_step), dtype=float)
        out[tag] = (steps, np.array([by_step[int(s)][1] for s in steps], dtype=float))
    return out


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard-style exponential moving average (``weight`` 0 = raw), debiased at the start."""
    if weight <= 0 or len(values) < 3:
        return values
    out = np.empty_like(values)
    last, norm = 0.0, 0.0
    for i, v in enumerate(values):
        last = weight * last + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = last / norm
    return out


def _source_label(data_source: str) -> str:
    return data_source[4:] if data_source.startswith("ssl_") else data_source


def per_source(scalars: Mapping[str, Series], pattern: str) -> dict[str, Series]:
    """Series whose name matches ``pattern`` (a regex with one group: the data source), keyed by task label."""
    regex = re.compile(pattern)
    found = {}
    for tag, series in sorted(scalars.items()):
        m = regex.fullmatch(tag)
        if m:
            found[_source_label(m.group(1))] = series
    return found


def _val_series(scalars: Mapping[str, Series], section: str, key: str) -> dict[str, Series]:
    """Validation series per task label (the largest ``mean@N`` of each data source)."""
    return {_source_label(source): series for source, series in validation_series(scalars, section, key).items()}


@dataclass
class Panel:
    """One plot: named lines (and optional min-max bands) over steps."""

    name: str
    title: str
    ylabel: str
    lines: dict[str, Series] = field(default_factory=dict)
    bands: dict[str, tuple[Series, Series]] = field(default_factory=dict)
    percent: bool = False  # values in [0, 1] shown as percent
    smoothed: bool = True  # training curves are noisy; validation points are not smoothed
    missing: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.lines


def build_panels(scalars: Mapping[str, Series]) -> list[Panel]:
    """The standard set of panels for a GRPO puzzle run; empty panels say which series were missing."""
    panels: list[Panel] = []

    reward = Panel("reward", "Reward (training rollouts)", "score")
    # No min-max band here: with exact-match rewards every batch has a 0 and a 1, so the band says nothing.
    if "critic/score/mean" in scalars:
        reward.lines[ALL_TASKS] = scalars["critic/score/mean"]
    else:
        reward.missing.append("critic/score/mean")
    per_task = per_source(scalars, r"train/(.+)/score")
    if len(per_task) > 1 or (per_task and not reward.lines):
        reward.lines.update(per_task)
    elif not per_task:
        reward.missing.append("train/<task>/score")
    panels.append(reward)

    for key, title, ylabel in (
        ("acc", "Accuracy per task (training rollouts)", "exactly right (%)"),
        ("partial", "Partial credit per task (training rollouts)", "partial credit (%)"),
        ("format", "Format rate per task (training rollouts)", "well-formed (%)"),
        ("answered", "Valid answers per task (training rollouts)", "answer is a valid label (%)"),
        ("flat_groups", "Groups with no learning signal (all rollouts scored alike)", "prompts (%)"),
    ):
        panel = Panel(f"{key}_per_task", title, ylabel, percent=True)
        panel.lines = per_source(scalars, rf"train/(.+)/{key}")
        if panel.empty:
            panel.missing.append(f"train/<task>/{key}")
        panels.append(panel)

    length = Panel("response_length", "Response length (training rollouts)", "tokens")
    if "response_length/mean" in scalars:
        length.lines["mean (band: min-max)"] = scalars["response_length/mean"]
        if "response_length/min" in scalars and "response_length/max" in scalars:
            length.bands["mean (band: min-max)"] = (scalars["response_length/min"], scalars["response_length/max"])
    else:
        length.missing.append("response_length/mean")
    panels.append(length)

    clip = Panel("response_clip_ratio", "Responses cut at the length limit", "responses (%)", percent=True)
    # verl 0.9.1's response_length/clip_ratio counts responses as long as the padded batch (its longest one), not
    # those cut at data.max_response_length; the replay buffer's train/health/clipped_share counts those.
    if "train/health/clipped_share" in scalars:
        clip.lines["clipped"] = scalars["train/health/clipped_share"]
    elif "response_length/clip_ratio" in scalars:
        clip.lines["as long as the batch's longest (verl)"] = scalars["response_length/clip_ratio"]
    else:
        clip.missing.append("train/health/clipped_share")
    panels.append(clip)

    entropy = Panel("entropy", "Token entropy of the policy (a collapse warns)", "nats per token")
    rollout_entropy = ("rollout (sampled tokens)", "train/health/sampled_entropy")
    _tagged_lines(entropy, scalars, ("actor", "actor/entropy"), rollout_entropy)
    panels.append(entropy)

    clipfrac = Panel("pg_clipfrac", "PPO clip fraction (tokens whose ratio was clipped)", "tokens (%)", percent=True)
    lower = ("lower (dual clip)", "actor/pg_clipfrac_lower")
    _tagged_lines(clipfrac, scalars, ("upper/any", "actor/pg_clipfrac"), lower)
    panels.append(clipfrac)

    kl = Panel("kl", "KL to the reference policy", "KL")
    _tagged_lines(kl, scalars, ("kl_loss", "actor/kl_loss"), ("ppo_kl (old vs new policy)", "actor/ppo_kl"))
    panels.append(kl)

    val = Panel(
        "validation_accuracy",
        "Validation accuracy per task (greedy)",
        "exactly right (%)",
        percent=True,
        smoothed=False,
    )
    val.lines = _val_series(scalars, "val-core", "acc")
    if val.empty:
        val.missing.append("val-core/<task>/acc/mean@N")
    panels.append(val)

    val_fmt = Panel(
        "validation_format", "Validation format rate per task", "well-formed (%)", percent=True, smoothed=False
    )
    val_fmt.lines = _val_series(scalars, "val-aux", "format")
    if val_fmt.empty:
        val_fmt.missing.append("val-aux/<task>/format/mean@N")
    panels.append(val_fmt)
    panels += curriculum_panels(scalars)
    return panels


def _tagged_lines(panel: Panel, scalars: Mapping[str, Series], *lines: tuple[str, str]) -> None:
    """A line for each (label, tag) whose tag is in the log; the first tag is named as missing when none is."""
    for label, tag in lines:
        if tag in scalars:
            panel.lines[label] = scalars[tag]
    if panel.empty:
        panel.missing.append(lines[0][1])


def curriculum_panels(scalars: Mapping[str, Series]) -> list[Panel]:
    """The curriculum's hardest open level per task, then per task the level mix of each step and the solve-rate
    estimate of each level (only the first panel when the run had no curriculum, saying so)."""
    frontier = Panel("curriculum_frontier", "Curriculum: hardest open level per task", "level", smoothed=False)
    frontier.lines = per_source(scalars, r"train/curriculum/(.+)/frontier")
    if frontier.empty:
        frontier.missing.append("train/curriculum/<task>/frontier (a run without CURRICULUM=adaptive)")
        return [frontier]
    panels = [frontier]
    for task in sorted(frontier.lines):
        for key, title, ylabel in (
            ("share", f"Curriculum of {task}: puzzles per level", "puzzles of the step (%)"),
            ("solve_rate", f"Curriculum of {task}: solve-rate estimate per level", "estimated right (%)"),
        ):
            panel = Panel(f"curriculum_{task}_{key}", title, ylabel, percent=True, smoothed=key == "share")
            pattern = re.compile(rf"train/curriculum/{re.escape(task)}/level_(\d+)/{key}")
            levels = sorted((int(m.group(1)), tag) for tag in scalars if (m := pattern.fullmatch(tag)))
            panel.lines = {f"level {level}": scalars[tag] for level, tag in levels}
            if panel.empty:
                panel.missing.append(f"train/curriculum/{task}/level_<k>/{key}")
            panels.append(panel)
    return panels


def line_colors(panels: Sequence[Panel]) -> dict[str, str]:
    """One colour per line label across all panels, so a task has the same colour in every plot."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = sorted({label for p in panels for label in p.lines if label != ALL_TASKS})
    colors = {label: cycle[i % len(cycle)] for i, label in enumerate(labels)}
    colors[ALL_TASKS] = "black"
    return colors


def _draw(ax, panel: Panel, smoothing: float, colors: Mapping[str, str]) -> None:
    scale = 100.0 if panel.percent else 1.0
    for label, (steps, values) in panel.lines.items():
        color = colors.get(label, "tab:blue")
        if label in panel.bands:
            (lo_s, lo_v), (hi_s, hi_v) = panel.bands[label]
            if len(lo_s) == len(steps) and len(hi_s) == len(steps):
                ax.fill_between(steps, lo_v * scale, hi_v * scale, color=color, alpha=0.12, linewidth=0)
        few = len(steps) <= 25
        if panel.smoothed and smoothing > 0 and len(steps) >= 3:
            ax.plot(steps, values * scale, color=color, alpha=0.25, linewidth=1)
            ax.plot(steps, smooth(values, smoothing) * scale, color=color, linewidth=2, label=label)
        else:
            ax.plot(
                steps, values * scale, color=color, linewidth=2, marker="o" if few else None, markersize=4, label=label
            )
    ax.set_title(panel.title, fontsize=11)
    ax.set_xlabel("training step")
    ax.set_ylabel(panel.ylabel)
    ax.grid(True, alpha=0.3)
    if panel.percent:
        ax.set_ylim(-2, 102)
    if len(panel.lines) > 1 or panel.bands:
        ax.legend(fontsize=8, loc="best")


def plot_run(logdir: str | Path, out_dir: str | Path, smoothing: float = 0.6) -> dict:
    """Write one PNG per non-empty panel plus ``overview.png`` and ``plots.json``; returns the manifest."""
    scalars = load_scalars(logdir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    panels = build_panels(scalars)
    written, skipped = [], {}
    drawn = [p for p in panels if not p.empty]
    colors = line_colors(drawn)
    for panel in panels:
        if panel.empty:
            skipped[panel.name] = f"not in the log: {', '.join(panel.missing)}"
            continue
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        _draw(ax, panel, smoothing, colors)
        fig.tight_layout()
        path = out_dir / f"{panel.name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path.name)
    if drawn:
        cols = 2 if len(drawn) > 1 else 1
        rows = -(-len(drawn) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4 * rows), dpi=90, squeeze=False)
        for ax, panel in zip(axes.flat, drawn):
            _draw(ax, panel, smoothing, colors)
        for ax in list(axes.flat)[len(drawn) :]:
            ax.axis("off")
        run = Path(logdir).resolve()
        fig.suptitle(f"Run: {run.parent.name if run.is_file() else run.name}", fontsize=13)  # a metrics.jsonl: its run
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (4 * rows)))  # leave room for the title
        fig.savefig(out_dir / "overview.png")
        plt.close(fig)
        written.append("overview.png")
    warnings = check_logged_run(scalars)
    manifest = {
        "logdir": str(logdir),
        "series": len(scalars),
        "written": written,
        "skipped": skipped,
        "health_warnings": warnings,
    }
    (out_dir / "plots.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: Sequence[str] | None = None, echo: Callable[[str], None] = print) -> int:
    """Command line of ``scripts/plot_run.py``."""
    parser = argparse.ArgumentParser(prog="plot_run.py", description="PNG plots of a run's logged metrics.")
    parser.add_argument(
        "logdir", type=Path, help="TensorBoard folder of the run (searched recursively), or its metrics.jsonl"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument("--smooth", type=float, default=0.6, help="EMA weight for training curves (0 = raw)")
    args = parser.parse_args(argv)
    if not 0 <= args.smooth < 1:
        parser.error("--smooth must lie in [0, 1)")
    try:
        manifest = plot_run(args.logdir, args.out, args.smooth)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    echo(f"{manifest['series']} series in {args.logdir}; wrote {len(manifest['written'])} plots to {args.out}")
    for name in manifest["written"]:
        echo(f"  {name}")
    for name, why in manifest["skipped"].items():
        echo(f"  skipped {name}: {why}")
    for warning in manifest["health_warnings"]:
        echo(f"WARNING training health: {warning}")
    if not manifest["health_warnings"]:
        echo("training health: no collapse of entropy or response length, no long run of flat groups")
    return 0
