"""How fast online puzzles are made, per loader worker, against what a step of the GPU recipe consumes.

For each task: builds the demo source (real photographs) offline, writes its picture index, then

* makes puzzles in this process, as one loader worker does (picture decoded, puzzle made, fitted to the prompt
  budget, images encoded: the whole ``PuzzleStream[i]``), and prints puzzles per second;
* loads them through verl's loader (``OnlinePuzzleDataset`` in a ``StatefulDataLoader`` built as verl's trainer
  builds it, the tiny model's processor) with 0 and 2 workers, and prints prompts per second;
* prints how long the configured workers need for one step of the GPU recipe (512 prompts with 8 workers,
  ``configs/grpo_qwen2_5_vl.yaml``): the loader prefetches while the step runs, so it keeps up when that time is
  far below a step's.

    python scripts/bench_online.py [--tasks rotation,jigsaw,...] [--puzzles 200] [--curriculum]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

STEP_PROMPTS = 512  # data.train_batch_size of configs/grpo_qwen2_5_vl.yaml
RECIPE_WORKERS = 8  # verl's data.dataloader_num_workers default, kept by the GPU recipe
TASKS = "rotation,jigsaw,position,flip,contrastive,inpainting,correspondence"


def stream_rate(data_dir: Path, puzzles: int, curriculum: bool) -> tuple[float, int]:
    from verl_ext.curriculum import CurriculumConfig
    from verl_ext.online.dataset import OnlineSettings, PuzzleStream
    from verl_ext.online.pictures import PICTURES_FILE, read_pictures

    settings = OnlineSettings(
        pictures=data_dir / PICTURES_FILE,
        epochs=1000,
        curriculum=CurriculumConfig(group_size=5) if curriculum else None,
        state_dir=data_dir / "curriculum" if curriculum else None,
    )
    stream = PuzzleStream(read_pictures(settings.pictures), settings, {"train_batch_size": STEP_PROMPTS})
    stream[0]  # first-call costs (probe picture, caches) are paid once per worker, not per puzzle
    started = time.perf_counter()
    for position in range(1, puzzles + 1):
        stream[position]
    return puzzles / (time.perf_counter() - started), len(stream.pictures)


def loader_rate(data_dir: Path, model: Path, workers: int, prompts: int) -> float:
    from omegaconf import OmegaConf
    from torchdata.stateful_dataloader import StatefulDataLoader
    from transformers import AutoProcessor
    from verl.trainer.ppo.utils import create_rl_sampler
    from verl.utils.dataset.rl_dataset import collate_fn

    from verl_ext.online.dataset import ONLINE_FILES, OnlinePuzzleDataset
    from verl_ext.online.pictures import PICTURES_FILE

    processor = AutoProcessor.from_pretrained(str(model))
    config = OmegaConf.create(
        {
            "shuffle": False,
            "train_batch_size": 16,
            "dataloader_num_workers": workers,
            "online": {"pictures": str(data_dir / PICTURES_FILE), "epochs": 1000},
        }
    )
    with contextlib.redirect_stdout(io.StringIO()):
        dataset = OnlinePuzzleDataset(ONLINE_FILES, processor.tokenizer, config, processor)
    loader = StatefulDataLoader(
        dataset, batch_size=16, num_workers=workers, collate_fn=collate_fn, sampler=create_rl_sampler(config, dataset)
    )
    batches = iter(loader)
    next(batches)  # worker start-up
    started = time.perf_counter()
    for _ in range(prompts // 16):
        next(batches)
    return (prompts // 16) * 16 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=TASKS)
    parser.add_argument("--puzzles", type=int, default=200, help="puzzles timed per task")
    parser.add_argument("--curriculum", action="store_true", help="draw levels from a curriculum state")
    args = parser.parse_args()

    from verl_ext.builder import BuildConfig, build
    from verl_ext.cpu.torchvision_fix import ensure_torchvision_importable
    from verl_ext.online.pictures import write_pictures
    from verl_ext.tiny_model import save_tiny_model

    ensure_torchvision_importable()
    cores = os.cpu_count() or 1
    print(f"{cores} CPU cores; one step of the GPU recipe: {STEP_PROMPTS} prompts, {RECIPE_WORKERS} loader workers")
    print(f"{'task':<15} {'pictures':>8} {'index s':>8} {'puzzles/s/worker':>17} {'s per step (8 workers)':>23}")
    with tempfile.TemporaryDirectory() as tmp:
        rotation_dir = None
        for task in args.tasks.split(","):
            data_dir = Path(tmp) / task
            with contextlib.redirect_stdout(io.StringIO()):  # the builder's summary; the table is what matters here
                build(BuildConfig(task=task, source="demo", output=data_dir, workers=1, progress=False))
            started = time.perf_counter()
            write_pictures(data_dir, progress=False)
            index_s = time.perf_counter() - started
            rate, pictures = stream_rate(data_dir, args.puzzles, args.curriculum)
            step_s = STEP_PROMPTS / (rate * RECIPE_WORKERS)
            print(f"{task:<15} {pictures:>8} {index_s:>8.1f} {rate:>17.1f} {step_s:>23.2f}")
            rotation_dir = rotation_dir or data_dir
        with contextlib.redirect_stdout(io.StringIO()):
            model = save_tiny_model(Path(tmp) / "tiny", size="tiny")
        for workers in (0, min(2, cores)):
            rate = loader_rate(rotation_dir, model, workers, args.puzzles)
            print(f"verl loader, {args.tasks.split(',')[0]}, {workers} worker(s): {rate:.1f} prompts/s")


if __name__ == "__main__":
    main()
