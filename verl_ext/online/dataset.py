"""``OnlinePuzzleDataset``: verl's dataset class for puzzles made on the fly (``data.custom_cls``).

Enable it (``ONLINE=1 bash scripts/run_grpo.sh ...`` sets all of this)::

    data.custom_cls.path=pkg://verl_ext.online.dataset
    data.custom_cls.name=OnlinePuzzleDataset
    data.train_files=online                      # the marker; validation files stay offline parquet files
    data.online.pictures=DATA_DIR/online/pictures.parquet
    data.shuffle=false                           # the dataset orders itself, a new permutation per epoch

verl builds the validation set with the same class: given parquet files it is verl's ``RLHFDataset``, unchanged.
verl's agent-loop workers import the class too (for ``process_vision_info``), which it inherits.

What a position serves. The dataset is a stream of ``epochs x pictures`` positions. Position ``i`` is picture
``order_e[i mod N]`` of epoch ``e = i // N``, where ``order_e`` is a permutation drawn from ``(seed, e)``; its
puzzle is puzzle ``k = e`` of that picture, made by the offline builder's code (:class:`verl_ext.builder.worker.
Worker`) with the offline build's task mix, knobs, prompt-token budget and seed. So every (seed, epoch,
picture) gives one fixed puzzle, a new epoch a new puzzle of each picture, and epoch 0 asks the same puzzles an
offline build's ``k = 0`` rows do (from the index's re-encoded copy of the picture). verl's loader walks the
positions in order (``data.shuffle=false``) and saves how far it got in its checkpoint, so a resumed run serves
exactly the positions an uninterrupted one would have.

With the curriculum on (``data.online.curriculum.enable``), a position's difficulty is a level of its task's
ladder drawn from the controller's state (see :mod:`verl_ext.online.state` for which state), with a generator
seeded by the position: the same state gives the same level in any process. ``extra_info["difficulty"]`` is
then ``level_<k>``, which is how the controller learns each group's level.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from verl.utils.dataset.rl_dataset import RLHFDataset

from verl_ext.builder.plan import BuildPlan, TaskPlan, make_plan, parse_options
from verl_ext.builder.worker import NEAR_DUPLICATE, Unit, Worker, thumbnail
from verl_ext.curriculum import CurriculumConfig, curriculum_config
from verl_ext.online import ONLINE_FILES
from verl_ext.online.pictures import Pictures, build_config, read_pictures
from verl_ext.online.state import StateDir, TaskCurricula, level_name, version_for
from verl_ext.sources.base import TRAIN, RawItem
from verl_ext.tasks import get_task
from verl_ext.tasks.base import PuzzleSkip

# Pictures tried, in the epoch's order, when a picture cannot make its puzzle (too small for the level, ...).
MAX_TRIES = 16
PARTNER_TRIES = 16


@dataclass(frozen=True)
class OnlineSettings:
    """``data.online``: where the pictures are and how the stream is laid out."""

    pictures: Path
    epochs: int = 1
    seed: int | None = None  # None: the offline build's seed
    state_dir: Path | None = None  # the curriculum's folder (required with the curriculum)
    curriculum: CurriculumConfig | None = None  # None: every puzzle at the build's difficulty

    @classmethod
    def from_config(cls, online: Mapping[str, Any] | None) -> OnlineSettings:
        if not online or not online.get("pictures"):
            raise ValueError(
                "data.train_files=online needs data.online.pictures, the picture index "
                "(python -m verl_ext.online.pictures DATA_DIR writes DATA_DIR/online/pictures.parquet)"
            )
        epochs = int(online.get("epochs") or 1)
        if epochs < 1:
            raise ValueError(f"data.online.epochs must be at least 1, got {epochs}")
        curriculum = curriculum_config(online.get("curriculum"))
        state_dir = online.get("state_dir")
        if curriculum is not None and not state_dir:
            raise ValueError("data.online.curriculum.enable=true needs data.online.state_dir (a folder of the run)")
        seed = online.get("seed")
        return cls(
            pictures=Path(str(online["pictures"])),
            epochs=epochs,
            seed=None if seed is None else int(seed),
            state_dir=Path(str(state_dir)) if state_dir else None,
            curriculum=curriculum,
        )


class PuzzleStream:
    """The rows of the online stream, made on demand (``stream[i]`` is a verl row as the offline files hold)."""

    def __init__(self, pictures: Pictures, settings: OnlineSettings, data_config: Mapping[str, Any] | None = None):
        self.pictures = pictures
        self.settings = settings
        self.data_config = data_config if data_config is not None else {}
        config = build_config(pictures.build)
        if settings.seed is not None:
            config = replace(config, seed=settings.seed)
        self.plan: BuildPlan = make_plan(config, pictures.build["source"])
        self.overrides = parse_options(config.options, [t.name for t in self.plan.tasks])
        self.worker = Worker(self.plan)
        self.ladders = {t.name: get_task(t.name).levels() for t in self.plan.tasks}
        self.state_dir = StateDir(settings.state_dir) if settings.state_dir else None
        self.curriculum = settings.curriculum
        self._states: dict[int, TaskCurricula] = {}
        self._orders: dict[int, np.ndarray] = {}
        self.skips: Counter = Counter()

    def __len__(self) -> int:
        return len(self.pictures) * self.settings.epochs

    # ---- where a position lands

    def locate(self, position: int) -> tuple[int, int]:
        """``(epoch, picture)`` of a stream position."""
        if not 0 <= position < len(self):
            raise IndexError(f"position {position} outside the stream of {len(self)}")
        epoch, slot = divmod(position, len(self.pictures))
        return epoch, int(self._order(epoch)[slot])

    def _order(self, epoch: int) -> np.ndarray:
        """The pictures of ``epoch`` in the order it shows them (kept for the epoch at hand)."""
        if epoch not in self._orders:
            self._orders = {epoch: self.plan.rng("online", "order", epoch).permutation(len(self.pictures))}
        return self._orders[epoch]

    def level(self, position: int, task: str) -> int | None:
        """The curriculum level of the puzzle at ``position`` (None with the curriculum off)."""
        if self.curriculum is None:
            return None
        state = self._state(self._version(position))
        return state.sample(task, self.plan.rng("online", "level", position))

    def _version(self, position: int) -> int:
        cfg = self.data_config
        train_batch = int(cfg.get("train_batch_size") or 1)
        gen_batch = int(cfg.get("gen_batch_size") or train_batch)
        workers = int(cfg.get("dataloader_num_workers") or 0)
        return version_for(position, workers=workers, gen_batch=gen_batch, train_batch=train_batch)

    def _state(self, version: int) -> TaskCurricula:
        assert self.curriculum is not None
        if version == 0 or self.state_dir is None:
            return TaskCurricula(self.curriculum)
        if version in self._states:  # a written version never changes while it can be asked for
            return self._states[version]
        state = self.state_dir.read(version, self.curriculum)
        if state is not None:
            self._states = {version: state}  # consecutive positions mostly share a version
            return state
        # Group filtering (positions run ahead of steps): the newest version written below the target, not kept,
        # as the target's own file comes later (see verl_ext.online.state).
        older = [v for v in self.state_dir.versions() if v < version]
        state = self.state_dir.read(older[-1], self.curriculum) if older else None
        return state or TaskCurricula(self.curriculum)

    # ---- rows

    def __getitem__(self, position: int) -> dict[str, Any]:
        epoch, picture = self.locate(int(position))
        n = len(self.pictures)
        reasons = []
        for attempt in range(MAX_TRIES):
            index = picture if attempt == 0 else int(self._order(epoch)[(position + attempt) % n])
            try:
                return self._row(position, epoch, index)
            except PuzzleSkip as skip:
                reason = str(skip)
                if not self.skips[reason]:  # once per reason and process: which pictures a setting cannot use
                    print(
                        f"online puzzles: a picture was skipped ({reason}) at position {position}; the next picture "
                        "of the epoch is served in its place (later skips for this reason are only counted)",
                        flush=True,
                    )
                self.skips[reason] += 1
                reasons.append(reason)
        raise RuntimeError(
            f"no puzzle could be made at stream position {position} from {MAX_TRIES} pictures in a row "
            f"(reasons: {Counter(reasons)}); the pictures are too small or too plain for these task settings"
        )

    def _row(self, position: int, epoch: int, index: int) -> dict[str, Any]:
        unit = self._unit(index, epoch)
        task = self.worker.tasks[unit.task.name]
        level = self.level(position, unit.task.name)
        if level is not None:
            knobs = {**self.ladders[unit.task.name][level], **self.overrides[unit.task.name]}
            unit.task = TaskPlan(unit.task.name, level_name(level), knobs, unit.task.weight, unit.task.needs_partner)
        partner, role_knobs = None, {}
        if unit.task.needs_partner:
            roles = task.pair_roles(self.plan.rng(unit.task.name, "pair", epoch, unit.item.source_id).random())
            role = roles[int(self.plan.rng(unit.task.name, "role", epoch, unit.item.source_id).random() < 0.5)]
            role_knobs = dict(role.knobs)
            if role.with_partner:
                partner = self._partner(unit, epoch)
        row = self.worker.row(unit, partner, role_knobs)
        row["extra_info"]["index"] = position
        return row

    def _unit(self, index: int, epoch: int) -> Unit:
        source_id = self.pictures.source_ids[index]
        item = RawItem(source_id, None, b"", group=self.pictures.groups[index] or None)
        task = self.plan.task_for(source_id, epoch)
        return Unit(item, _decode(self.pictures.images[index]), self.pictures.content_ids[index], TRAIN, epoch, task)

    def _partner(self, unit: Unit, epoch: int) -> Unit:
        """Another picture for a two-picture puzzle: drawn from (seed, epoch, picture), never the same picture,
        a crop of the same original, or a near-duplicate (the builder's rules)."""
        rng = self.plan.rng(unit.task.name, "partner", epoch, unit.item.source_id)
        thumb = thumbnail(unit.image)
        for _ in range(PARTNER_TRIES):
            other = int(rng.integers(len(self.pictures)))
            if self.pictures.content_ids[other] == unit.content_id:
                continue
            if unit.item.group and self.pictures.groups[other] == unit.item.group:
                continue
            candidate = self._unit(other, epoch)
            if float(np.abs(thumbnail(candidate.image) - thumb).mean()) >= NEAR_DUPLICATE:
                return candidate
        raise PuzzleSkip("no partner picture")


class OnlinePuzzleDataset(RLHFDataset):
    """verl's ``RLHFDataset`` whose rows, for ``data_files == "online"``, are made on the fly (module docstring)."""

    @property
    def online(self) -> bool:
        files = [str(f) for f in self.original_data_files]
        return files == [ONLINE_FILES]

    def _download(self, use_origin_parquet: bool = False) -> None:
        if not self.online:
            super()._download(use_origin_parquet)

    def _read_files_and_tokenize(self) -> None:
        if not self.online:
            super()._read_files_and_tokenize()
            return
        if self.config.get("shuffle", False):
            raise ValueError(
                "online puzzles come in the dataset's own order (a new permutation per epoch, fixed by the seed); "
                "set data.shuffle=false"
            )
        settings = OnlineSettings.from_config(self.config.get("online"))
        self.dataframe = PuzzleStream(read_pictures(settings.pictures), settings, self.config)
        print(
            f"online puzzles: {len(self.dataframe.pictures)} pictures x {settings.epochs} epochs, "
            f"curriculum {'on' if settings.curriculum else 'off'}"
        )

    def __getstate__(self) -> dict[str, Any]:
        # verl drops its dataframe when pickled (it can be read again from the files); the stream is the data.
        return self.__dict__.copy()


def _decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")
