"""The start-up phase table of scripts/bench_startup.sh (verl_ext/evaluation/startup.py)."""

from __future__ import annotations

import io

from verl_ext.evaluation.startup import main, phases, read_stamped, report, stamp

LOG = [
    (100.5, "train: train.parquet (40 puzzles)"),
    (104.0, "[run_grpo.sh] config grpo_cpu_tiny, model /m"),
    (110.0, "INFO worker.py:2038 -- Started a local Ray instance."),
    (125.0, "(WorkerDict pid=7) Monkey patch Qwen2_5_VLForConditionalGeneration model forward"),
    (131.0, "(vLLMHttpServer pid=8) WARNING ..."),
    (150.0, "(TaskRunnerV1 pid=6) LLMServerManager: ['192.0.2.2:45319']"),
    (151.0, "(TaskRunnerV1 pid=6) \rTraining Progress:   0%|          | 0/1"),  # tqdm redraws with \r
    (160.0, "(TaskRunnerV1 pid=6) step:1 - train/ssl_rotation/score:0.49"),
]


def test_phases_run_from_marker_to_marker_and_say_when_step_one_began():
    table, begun = phases(LOG, launched=100.0)
    assert [seconds for _, seconds in table] == [4.0, 6.0, 15.0, 6.0, 19.0, 1.0, 9.0]
    assert table[-1][0] == "step 1" and begun == 51.0
    assert "step 1 began 51.0 s after launch (within the 60 s target)" in report(LOG, launched=100.0)
    assert "(over the 60 s target)" in report(LOG, launched=80.0)


def test_a_missing_marker_is_reported_not_guessed():
    without_ray = [row for row in LOG if "Ray" not in row[1]]
    table, begun = phases(without_ray, launched=100.0)
    assert table[1][1] is None and table[2][1] == 21.0 and begun == 51.0
    assert "(marker not seen)" in report(without_ray, launched=100.0)
    assert "step 1 did not begin" in report(LOG[:5], launched=100.0)


def test_stamped_lines_read_back(tmp_path, capsys):
    out = io.StringIO()
    clock = iter([5.0, 6.5])
    stamp(["first line\n", "second line\n"], out=out, clock=lambda: next(clock))
    path = tmp_path / "log"
    path.write_text("unstamped\n" + out.getvalue())
    assert read_stamped(path) == [(5.0, "first line"), (6.5, "second line")]
    log = tmp_path / "run.log"
    log.write_bytes("".join(f"{when} {text}\n" for when, text in LOG).encode())
    assert main(["phases", str(log), "--launched", "100"]) == 0
    assert "step 1 began 51.0 s after launch" in capsys.readouterr().out  # the \r line is not split off
