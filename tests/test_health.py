"""Training-health warnings (verl_ext/health.py) and the figures the replay buffer feeds them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from verl_ext.evaluation.plots import main as plot_main
from verl_ext.health import (
    CLIPPED,
    ENTROPY,
    FLAT_PREFIX,
    LENGTH,
    HealthMonitor,
    Thresholds,
    check_logged_run,
)
from verl_ext.task_metrics import _health_monitor, response_health


def feed(monitor: HealthMonitor, name: str, values: list[float]) -> list[str]:
    out = []
    for step, value in enumerate(values, start=1):
        out += monitor.observe(step, {name: value})
    return out


def test_a_collapsing_entropy_warns_once_when_the_window_falls_under_a_tenth_of_the_start():
    values = [0.5] * 5 + [0.3, 0.1, 0.02, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01]
    warnings = feed(HealthMonitor(), ENTROPY, values)
    assert len(warnings) == 1 and "entropy collapse" in warnings[0]
    # The warning comes at the first step whose 5-step mean is under a tenth of the first five steps' mean.
    means = [np.mean(values[max(0, i - 4) : i + 1]) for i in range(len(values))]
    first = next(i for i, m in enumerate(means) if i >= 5 and m < 0.05) + 1
    assert warnings[0].startswith(f"step {first}:")


def test_a_healthy_run_gives_no_warning_and_noise_alone_does_not_warn():
    rng = np.random.default_rng(0)
    monitor = HealthMonitor()
    warnings = []
    for step in range(1, 200):
        warnings += monitor.observe(
            step,
            {
                ENTROPY: 0.4 + 0.05 * rng.standard_normal(),
                LENGTH: 300 + 20 * rng.standard_normal(),
                CLIPPED: 0.02,
                FLAT_PREFIX + "ssl_rotation": float(rng.uniform(0.2, 0.6)),
            },
        )
    assert warnings == []
    one_bad_step = feed(HealthMonitor(), ENTROPY, [0.5] * 10 + [0.0] + [0.5] * 10)
    assert one_bad_step == []


def test_a_condition_warns_again_only_after_it_cleared():
    values = [1.0] * 5 + [0.01] * 6 + [1.0] * 6 + [0.01] * 6
    warnings = feed(HealthMonitor(), ENTROPY, values)
    assert len(warnings) == 2


def test_shrinking_cut_off_and_flat_responses_each_warn_with_their_cause():
    assert "responses shrinking" in feed(HealthMonitor(), LENGTH, [400] * 5 + [100] * 6)[0]
    cut = feed(HealthMonitor(), CLIPPED, [0.9] * 6)
    assert len(cut) == 1 and "max_response_length" in cut[0] and cut[0].startswith("step 5:")
    flat = feed(HealthMonitor(), FLAT_PREFIX + "ssl_jigsaw", [0.5] * 3 + [1.0] * 8)
    assert len(flat) == 1 and "no learning signal for ssl_jigsaw" in flat[0]
    assert feed(HealthMonitor(), FLAT_PREFIX + "ssl_jigsaw", [0.85] * 20) == []


def test_thresholds_come_from_the_config_and_bad_ones_are_refused():
    monitor, longest = _health_monitor({"health": {"enable": True, "max_response_length": 64, "window": 3}})
    assert longest == 64 and monitor.thresholds == Thresholds(window=3)
    assert _health_monitor({"health": {"enable": False}}) == (None, None)
    assert _health_monitor(None) == (None, None)
    for bad, message in (({"window": 0}, "window"), ({"flat_share": 1.5}, "flat_share"), ({"typo": 1}, "unknown")):
        with pytest.raises(ValueError, match=message):
            Thresholds.from_settings(bad)


def test_response_figures_estimate_entropy_from_the_sampled_tokens():
    # Tokens sampled from a known distribution: the mean surprisal converges to its entropy.
    probs = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    tokens = torch.multinomial(probs, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    figures = response_health(torch.tensor([10, 64, 64, 30]), probs.log()[tokens], max_response_length=64)
    entropy = float(-(probs * probs.log()).sum())
    assert math.isclose(figures["sampled_entropy"], entropy, rel_tol=0.01)
    assert figures["response_length"] == 42.0 and figures["clipped_share"] == 0.5
    assert response_health(torch.tensor([]), torch.tensor([]), 64) == {}


def test_plot_run_draws_entropy_and_clipping_and_prints_the_runs_warnings(tmp_path):
    log = tmp_path / "metrics.jsonl"
    with log.open("w") as handle:
        for step in range(1, 21):
            data = {
                "actor/entropy": 0.5 if step <= 8 else 0.005,
                "actor/pg_clipfrac": 0.01,
                "response_length/mean": 50.0,
                "response_length/clip_ratio": 1.0,  # verl's: as long as the batch's longest, not cut off
                "train/health/clipped_share": 0.0,
                "train/ssl_rotation/flat_groups": 0.3 if step <= 8 else 1.0,
                "critic/score/mean": 0.5,
            }
            handle.write(json.dumps({"step": step, "data": data}) + "\n")
    printed: list[str] = []
    assert plot_main([str(log), "--out", str(tmp_path / "plots")], echo=printed.append) == 0
    assert (tmp_path / "plots" / "entropy.png").is_file() and (tmp_path / "plots" / "pg_clipfrac.png").is_file()
    warnings = [line for line in printed if line.startswith("WARNING training health")]
    assert len(warnings) == 2 and any("entropy collapse" in w for w in warnings)
    assert any("no learning signal for ssl_rotation" in w for w in warnings)
    saved = json.loads((tmp_path / "plots" / "plots.json").read_text())["health_warnings"]
    assert saved == [w.removeprefix("WARNING training health: ") for w in warnings]
    steady = {"actor/entropy": (np.arange(1.0, 30.0), np.full(29, 0.4))}
    assert check_logged_run(steady) == []
