"""Where a training run's start-up goes: phases from launch to the first step, read from a timestamped log.

``scripts/bench_startup.sh`` runs one CPU training step with every console line stamped by the time it arrived
(``python -m verl_ext.evaluation.startup stamp``) and then prints the phases (``... phases LOG``). A phase ends
at the first line that matches its marker, in order; the markers are lines verl, Ray and the launcher print
anyway. Ray forwards its workers' lines with a small delay, so a boundary may lie up to a fraction of a second
late; a phase whose marker never appeared is reported as missing rather than guessed.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

TARGET_SECONDS = 60.0  # the first step should begin within this long of launch on 2 cores


@dataclass(frozen=True)
class Phase:
    name: str
    ends_at: re.Pattern[str]  # the first line of the next phase (or the phase's own last line)


PHASES = (
    Phase("launcher checks (config, data, leakage guard)", re.compile(r"\[run_grpo\.sh\] config ")),
    Phase("verl imports, Ray starts", re.compile(r"Started a local Ray instance")),
    Phase("trainer: config, datasets, worker groups", re.compile(r"\(WorkerDict pid=")),
    Phase("actor (and reference) models under FSDP", re.compile(r"\(vLLMHttpServer pid=")),
    Phase("vLLM engine and server", re.compile(r"LLMServerManager:")),
    Phase("agent loop workers, first batch", re.compile(r"Training Progress:\s+0%")),
)
FIRST_STEP = re.compile(r"step:1 ")


def stamp(lines: Iterable[str], out=sys.stdout, clock=time.time) -> None:
    """Copy ``lines`` to ``out``, each prefixed with the time it arrived (seconds since the epoch)."""
    for line in lines:
        out.write(f"{clock():.3f} {line}")
        out.flush()


def read_stamped(path: Path) -> list[tuple[float, str]]:
    rows = []
    # Lines end at "\n" only (no universal newlines): progress bars redraw themselves with "\r" inside one line.
    for line in path.read_bytes().decode("utf-8", errors="replace").split("\n"):
        when, _, text = line.partition(" ")
        try:
            rows.append((float(when), text))
        except ValueError:
            continue  # a line without a stamp (e.g. written before the stamping started)
    return rows


def phases(rows: Sequence[tuple[float, str]], launched: float) -> tuple[list[tuple[str, float | None]], float | None]:
    """Each phase's seconds (None when its marker never appeared), and when step 1 began (seconds after launch)."""
    out: list[tuple[str, float | None]] = []
    previous, position = launched, 0
    for phase in PHASES:
        hit = next((i for i in range(position, len(rows)) if phase.ends_at.search(rows[i][1])), None)
        if hit is None:
            out.append((phase.name, None))
            continue
        out.append((phase.name, rows[hit][0] - previous))
        previous, position = rows[hit][0], hit
    begun = previous - launched if out and out[-1][1] is not None else None
    done = next((when for when, text in rows[position:] if FIRST_STEP.search(text)), None)
    if done is not None:
        out.append(("step 1", done - previous))
    return out, begun


def report(rows: Sequence[tuple[float, str]], launched: float) -> str:
    table, begun = phases(rows, launched)
    lines = ["| phase | seconds | since launch |", "|---|---|---|"]
    elapsed = 0.0
    for name, seconds in table:
        if seconds is None:
            lines.append(f"| {name} | (marker not seen) | |")
            continue
        elapsed += seconds
        lines.append(f"| {name} | {seconds:.1f} | {elapsed:.1f} |")
    if begun is None:
        lines.append("step 1 did not begin (see the log)")
    else:
        verdict = "within" if begun <= TARGET_SECONDS else "over"
        lines.append(f"step 1 began {begun:.1f} s after launch ({verdict} the {TARGET_SECONDS:.0f} s target)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verl_ext.evaluation.startup", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stamp", help="copy standard input to standard output, each line prefixed with its arrival time")
    shown = sub.add_parser("phases", help="the phases of a stamped log")
    shown.add_argument("log", type=Path)
    shown.add_argument("--launched", type=float, required=True, help="launch time, seconds since the epoch")
    args = parser.parse_args(argv)
    if args.command == "stamp":
        stamp(sys.stdin)
        return 0
    print(report(read_stamped(args.log), args.launched))
    return 0


if __name__ == "__main__":
    sys.exit(main())
