"""Per-step summaries of verl's file-logger output: phase times and the learning verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verl_ext.evaluation import plots, run_log


def write_metrics(path: Path, scores: list[float], formats: list[float] | None = None) -> Path:
    """A metrics.jsonl as verl's file logger writes it: one {"step", "data"} line per step."""
    with path.open("w") as out:
        for i, score in enumerate(scores):
            data = {
                "critic/score/mean": score,
                "critic/score/min": 0.0,
                "critic/score/max": 1.0,
                "timing_s/gen": 4.0 + i,
                "timing_s/update_actor": 30.0 if i == 0 else 1.0 + 0.1 * i,
                "timing_s/step": 40.0 if i == 0 else 6.0 + 0.1 * i,
                "timing_s/old_log_prob": 0.7,
                "train/ssl_rotation/score": score,
                "train/ssl_rotation/acc": score,
                "train/ssl_rotation/answered": 1.0,
                "note": "text values are ignored",
            }
            if formats is not None:
                data["train/ssl_rotation/format"] = formats[i]
            out.write(json.dumps({"step": i + 1, "data": data}) + "\n")
    return path


def test_times_table_orders_phases_and_takes_the_steady_state_median(tmp_path: Path) -> None:
    scalars = run_log.load_jsonl_scalars(write_metrics(tmp_path / "m.jsonl", [0.1, 0.2, 0.3, 0.4]))
    assert run_log.phase_names(scalars) == ["gen", "old_log_prob", "update_actor", "step"]
    medians = run_log.steady_medians(scalars)
    assert medians["update_actor"] == pytest.approx(1.2)  # steps 2..4: 1.1, 1.2, 1.3; step 1 (30 s) left out
    assert medians["step"] == pytest.approx(6.2)
    table = run_log.times_table(scalars)
    assert table.splitlines()[0].split() == ["step", "gen", "old_log_prob", "update_actor", "step"]
    assert "median of steps >= 2" in table


def test_learning_compares_the_first_and_last_third(tmp_path: Path) -> None:
    scores = [0.1] * 3 + [0.2] * 3 + [0.35] * 3
    formats = [0.5] * 6 + [0.95] * 3
    result = run_log.learning(run_log.load_jsonl_scalars(write_metrics(tmp_path / "m.jsonl", scores, formats)))
    assert (result.steps, result.score_first, result.score_last) == (9, pytest.approx(0.1), pytest.approx(0.35))
    assert result.gain == pytest.approx(0.25) and result.format_last == pytest.approx(0.95)


def test_curve_command_says_when_a_run_did_not_learn(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    flat = write_metrics(tmp_path / "flat.jsonl", [0.1] * 6, [0.5] * 6)
    assert run_log.main(["curve", str(flat), "--min-gain", "0.1", "--min-format", "0.9"]) == 1
    out = capsys.readouterr().out
    assert "step   6: score 0.100" in out and "not learned: score gain +0.000 < 0.1; late format rate 0.500" in out
    rising = write_metrics(tmp_path / "rising.jsonl", [0.0, 0.1, 0.3, 0.4, 0.5, 0.6], [0.4, 0.6, 0.9, 0.9, 1, 1])
    assert run_log.main(["curve", str(rising), "--min-gain", "0.1", "--min-format", "0.9"]) == 0


def test_a_repeated_step_keeps_its_last_value_and_bad_lines_are_named(tmp_path: Path) -> None:
    path = write_metrics(tmp_path / "m.jsonl", [0.1, 0.2])
    with path.open("a") as out:
        out.write(json.dumps({"step": 2, "data": {"critic/score/mean": 0.9}}) + "\n")
    steps, values = run_log.load_jsonl_scalars(path)["critic/score/mean"]
    assert steps.tolist() == [1, 2] and values.tolist() == [0.1, 0.9]
    with path.open("a") as out:
        out.write("{not json\n")
    with pytest.raises(ValueError, match=r"m\.jsonl:4: not a verl file-logger line"):
        run_log.load_jsonl_scalars(path)
    assert run_log.main(["times", str(tmp_path / "missing.jsonl")]) == 2


def test_plot_run_draws_a_metrics_jsonl(tmp_path: Path) -> None:
    path = write_metrics(tmp_path / "metrics.jsonl", [0.1, 0.2, 0.3], [0.5, 0.7, 0.9])
    manifest = plots.plot_run(path, tmp_path / "plots")
    assert {"reward.png", "acc_per_task.png", "format_per_task.png", "answered_per_task.png"} <= set(
        manifest["written"]
    )
    assert (tmp_path / "plots" / "overview.png").stat().st_size > 0


def test_heldout_reports_first_and_last_against_chance_and_the_constant_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    metrics = tmp_path / "metrics.jsonl"
    with metrics.open("w") as out:
        for step, acc in ((0, 0.5), (20, 0.55), (40, 0.7)):
            data = {"val-core/ssl_rotation/acc/mean@1": acc, "val-core/ssl_rotation/acc/mean@4": acc - 0.1}
            out.write(json.dumps({"step": step, "data": data}) + "\n")
    params = json.dumps({"angles": [0, 180], "form": "single"})
    rows = [
        {"reward_model": {"ground_truth": truth}, "extra_info": {"task": "rotation", "params": params}}
        for truth in ("0", "180", "180", "180")
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "val.parquet")
    assert run_log.main(["heldout", str(metrics), "--val-data", str(tmp_path / "val.parquet")]) == 0
    out = capsys.readouterr().out
    assert "step 0: 0.400, step 20: 0.450, step 40: 0.600" in out  # the largest N (mean@4) is the one shown
    assert "first 0.400 (step 0) -> last 0.600 (step 40)" in out
    assert "bars: chance 0.500; always the most common answer 0.750" in out


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = run_log.wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    low, high = run_log.wilson_interval(0, 10)
    assert low == 0.0 and round(high, 3) == 0.278
    with pytest.raises(ValueError):
        run_log.wilson_interval(0, 0)


@pytest.mark.parametrize(
    ("last", "expect", "status", "verdict"),
    [
        (0.9, "learned", 0, "learned (the interval is above"),
        (0.6, "learned", 1, "not learned"),  # 24 of 40: the interval reaches below 0.5
        (0.55, "baseline", 0, "not learned"),  # a control within 0.05 of the bar
        (0.7, "baseline", 1, "the answer leaks without pixels"),
    ],
)
def test_heldout_verdict_needs_the_interval_above_the_constant_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture, last: float, expect: str, status: int, verdict: str
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    metrics = tmp_path / "metrics.jsonl"
    with metrics.open("w") as out:
        for step, acc in ((0, 0.5), (20, last)):
            out.write(json.dumps({"step": step, "data": {"val-core/ssl_rotation/acc/mean@1": acc}}) + "\n")
    params = json.dumps({"angles": [0, 180], "form": "single"})
    rows = [
        {"reward_model": {"ground_truth": truth}, "extra_info": {"task": "rotation", "params": params}}
        for truth in ("0", "180") * 20
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "val.parquet")
    args = ["heldout", str(metrics), "--val-data", str(tmp_path / "val.parquet"), "--expect", expect]
    assert run_log.main(args) == status
    out = capsys.readouterr().out
    assert f"last: {last:.3f} on 40 held-out puzzles, 95% interval" in out
    assert verdict in out
