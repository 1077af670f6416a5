"""Online puzzles: the picture index, the stream's determinism and variety, the ground truth of every served
puzzle, verl's loader with and without workers (and resumed), and the curriculum state's path to the loader."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from verl_ext.builder import BuildConfig, build
from verl_ext.curriculum import Curriculum, CurriculumConfig, Level
from verl_ext.evaluation.leakage import check_leakage
from verl_ext.online.controller import CurriculumController
from verl_ext.online.dataset import ONLINE_FILES, OnlineSettings, PuzzleStream
from verl_ext.online.pictures import PICTURES_FILE, is_current, read_pictures, write_pictures
from verl_ext.online.pictures import main as pictures_main
from verl_ext.online.state import Group, StateDir, TaskCurricula, level_name, parse_level, version_for
from verl_ext.reward import compute_score
from verl_ext.task_metrics import curriculum_groups
from verl_ext.tasks import get_task


def built(tmp_path_factory: pytest.TempPathFactory, task: str, **options) -> Path:
    out = tmp_path_factory.mktemp(f"online_{task}")
    tasks = options.pop("tasks", None)
    build(BuildConfig(task=task, tasks=tasks, source="demo", output=out, workers=1, progress=False, **options))
    write_pictures(out, progress=False)
    return out


@pytest.fixture(scope="module")
def rotation_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built(tmp_path_factory, "rotation")


def stream(data_dir: Path, epochs: int = 2, **settings) -> PuzzleStream:
    pictures = read_pictures(data_dir / PICTURES_FILE)
    data_config = settings.pop("data_config", None)
    return PuzzleStream(
        pictures, OnlineSettings(pictures=data_dir / PICTURES_FILE, epochs=epochs, **settings), data_config
    )


def content_ids(path: Path) -> set[str]:
    return {row["content_id"] for row in pq.read_table(path, columns=["extra_info"]).column("extra_info").to_pylist()}


def right_answer(row: dict) -> float:
    truth = row["reward_model"]["ground_truth"]
    return compute_score(row["data_source"], f"<think>.</think><answer>{truth}</answer>", truth, row["extra_info"])[
        "acc"
    ]


# ---- the picture index


def test_the_index_holds_the_training_pictures_and_no_validation_picture(rotation_dir: Path) -> None:
    index = rotation_dir / PICTURES_FILE
    pictures = read_pictures(index)
    assert set(pictures.content_ids) == content_ids(rotation_dir / "train.parquet")
    assert not set(pictures.content_ids) & content_ids(rotation_dir / "val.parquet")
    assert len(set(pictures.content_ids)) == len(pictures)
    # The leakage guard reads an index as it reads puzzles.
    assert not check_leakage([index], rotation_dir / "val.parquet").leaked
    assert check_leakage([index], rotation_dir / "train.parquet").leaked


def test_the_index_is_kept_while_the_build_is_the_same_and_rewritten_after_a_rebuild(tmp_path: Path) -> None:
    build(BuildConfig(task="rotation", source="demo", output=tmp_path, limit=6, workers=1, progress=False))
    assert not is_current(tmp_path)
    assert pictures_main([str(tmp_path), "--if-missing", "--workers", "2"]) == 0
    # The build's --limit holds for the index too: the same training pictures as the offline train split.
    assert set(read_pictures(tmp_path / PICTURES_FILE).content_ids) == content_ids(tmp_path / "train.parquet")
    stamp = (tmp_path / PICTURES_FILE).stat().st_mtime_ns
    assert is_current(tmp_path) and pictures_main([str(tmp_path), "--if-missing"]) == 0
    assert (tmp_path / PICTURES_FILE).stat().st_mtime_ns == stamp
    build(BuildConfig(task="rotation", source="demo", output=tmp_path, limit=6, seed=3, workers=1, progress=False))
    assert not is_current(tmp_path)
    assert pictures_main([str(tmp_path), "--if-missing"]) == 0
    assert read_pictures(tmp_path / PICTURES_FILE).build["args"]["seed"] == 3


def test_the_index_is_the_same_whatever_the_number_of_decoding_processes(rotation_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(rotation_dir, copy)
    write_pictures(copy, progress=False, workers=2)
    one, two = (pq.read_table(d / PICTURES_FILE) for d in (rotation_dir, copy))
    assert one.equals(two) and one.schema.metadata == two.schema.metadata


def test_an_index_needs_a_build(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert pictures_main([str(tmp_path)]) == 2
    assert "build the puzzles first" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="verl_ext.online.pictures"):
        read_pictures(tmp_path / "missing.parquet")


# ---- the stream


def row_key(row: dict) -> tuple:
    info = row["extra_info"]
    images = tuple(image["bytes"] for image in row["images"])
    return info["content_id"], info["params"], row["reward_model"]["ground_truth"], row["prompt"][0]["content"], images


def test_same_seed_same_puzzles_and_each_epoch_shows_every_picture_once(rotation_dir: Path) -> None:
    first, second = stream(rotation_dir), stream(rotation_dir)
    n = len(first.pictures)
    assert len(first) == 2 * n
    rows = [first[i] for i in range(len(first))]
    # Another process (another object) and any order of access: the same puzzles.
    assert [row_key(second[i]) for i in reversed(range(len(second)))] == [row_key(r) for r in reversed(rows)]
    for epoch in range(2):
        shown = [r["extra_info"]["content_id"] for r in rows[epoch * n : (epoch + 1) * n]]
        assert sorted(shown) == sorted(first.pictures.content_ids)
        assert {r["extra_info"]["puzzle_k"] for r in rows[epoch * n : (epoch + 1) * n]} == {epoch}
    assert [r["extra_info"]["index"] for r in rows] == list(range(2 * n))


def test_a_new_epoch_gives_a_new_order_and_new_puzzles(rotation_dir: Path) -> None:
    s = stream(rotation_dir)
    n = len(s.pictures)
    by_epoch = [{s[i]["extra_info"]["content_id"]: s[i] for i in range(e * n, (e + 1) * n)} for e in range(2)]
    assert [s.locate(i)[1] for i in range(n)] != [s.locate(i)[1] for i in range(n, 2 * n)]
    changed = sum(by_epoch[0][c]["extra_info"]["params"] != by_epoch[1][c]["extra_info"]["params"] for c in by_epoch[0])
    assert changed > n // 2
    # Another seed, other puzzles.
    other = stream(rotation_dir, seed=7)
    assert [row_key(other[i]) for i in range(n)] != [row_key(s[i]) for i in range(n)]


def test_online_puzzles_are_the_offline_builds_puzzles_of_the_same_picture(rotation_dir: Path) -> None:
    """One implementation: epoch 0 draws what the offline build drew for puzzle k=0 of each picture."""
    offline = {r["extra_info"]["source_id"]: r for r in pq.read_table(rotation_dir / "train.parquet").to_pylist()}
    s = stream(rotation_dir, epochs=1)
    for i in range(len(s)):
        row = s[i]
        twin = offline[row["extra_info"]["source_id"]]
        assert row["reward_model"] == twin["reward_model"]
        assert row["prompt"] == twin["prompt"]
        assert row["extra_info"]["difficulty"] == twin["extra_info"]["difficulty"]
        assert row["extra_info"]["prompt_tokens"] <= 1024


@pytest.mark.parametrize(
    ("task", "options"),
    [
        ("rotation", {}),
        ("jigsaw", {}),
        ("position", {}),
        ("flip", {}),
        ("contrastive", {}),
        ("mix", {"tasks": "rotation,jigsaw,contrastive,inpainting,correspondence"}),
    ],
)
def test_every_served_puzzle_at_every_level_is_scored_right_by_the_reward(
    tmp_path_factory: pytest.TempPathFactory, task: str, options: dict
) -> None:
    data_dir = built(tmp_path_factory, task, **options)
    state_dir = data_dir / "curriculum"
    config = CurriculumConfig(group_size=4)
    # Every level of every task open: positions draw from the whole ladder.
    state = TaskCurricula(config)
    for name in (options.get("tasks") or task).split(","):
        levels = len(get_task(name).levels())
        state.curricula[name] = Curriculum(levels, config, frontier=levels - 1)
    StateDir(state_dir).write(1, state)
    s = stream(
        data_dir,
        epochs=3,
        curriculum=config,
        state_dir=state_dir,
        data_config={"train_batch_size": 1, "dataloader_num_workers": 0},
    )
    seen: Counter = Counter()
    for i in range(1, len(s)):
        row = s[i]
        assert right_answer(row) == 1.0, row["extra_info"]
        assert row["prompt"][0]["content"].count("<image>") == len(row["images"])
        assert row["extra_info"]["prompt_tokens"] <= 1024
        seen[row["extra_info"]["task"], parse_level(row["extra_info"]["difficulty"])] += 1
    for name in (options.get("tasks") or task).split(","):
        assert {level for t, level in seen if t == name} == set(range(len(get_task(name).levels()))), seen


def test_contrastive_serves_positives_and_negatives_with_a_partner_of_another_picture(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    s = stream(built(tmp_path_factory, "contrastive"), epochs=2)
    rows = [s[i] for i in range(len(s))]
    partners = [r["extra_info"]["partner_content_id"] for r in rows]
    assert 0.3 < sum(bool(p) for p in partners) / len(rows) < 0.7
    for row in rows:
        assert row["extra_info"]["partner_content_id"] != row["extra_info"]["content_id"]


# ---- verl's dataset class and loader


def verl_data_config(data_dir: Path, **extra) -> OmegaConf:
    return OmegaConf.create(
        {
            "max_prompt_length": 1024,
            "filter_overlong_prompts": True,
            "filter_overlong_prompts_workers": None,
            "prompt_key": "prompt",
            "image_key": "images",
            "shuffle": False,
            "train_batch_size": 4,
            "dataloader_num_workers": 0,
            "online": {"pictures": str(data_dir / PICTURES_FILE), "epochs": 3, "state_dir": None, "curriculum": None},
            **extra,
        }
    )


def online_dataset(data_dir: Path, processor, **extra):
    from verl_ext.online.dataset import OnlinePuzzleDataset

    config = verl_data_config(data_dir, **extra)
    return OnlinePuzzleDataset(
        data_files=ONLINE_FILES, tokenizer=processor.tokenizer, config=config, processor=processor
    )


def loader(dataset, workers: int):
    """The training loader exactly as verl 0.9.1's trainer builds it."""
    from torchdata.stateful_dataloader import StatefulDataLoader
    from verl.trainer.ppo.utils import create_rl_sampler
    from verl.utils.dataset.rl_dataset import collate_fn

    return StatefulDataLoader(
        dataset=dataset,
        batch_size=4,
        num_workers=workers,
        drop_last=True,
        collate_fn=collate_fn,
        sampler=create_rl_sampler(dataset.config, dataset),
    )


def batch_keys(batch: dict) -> list[tuple]:
    return [(e["index"], e["content_id"], e["params"]) for e in batch["extra_info"]]


def test_verl_loads_the_same_puzzles_whatever_the_worker_count_and_after_a_resume(
    rotation_dir: Path, processor
) -> None:
    dataset = online_dataset(rotation_dir, processor)
    assert len(dataset) == 3 * len(dataset.dataframe.pictures)
    first = dataset[0]
    assert (
        any(c["type"] == "image" for c in first["raw_prompt"][0]["content"]) and first["data_source"] == "ssl_rotation"
    )

    def take(load, n):
        it = iter(load)
        return [batch_keys(next(it)) for _ in range(n)]

    plain = take(loader(dataset, 0), 6)
    assert take(loader(online_dataset(rotation_dir, processor), 2), 6) == plain
    # Stop after 3 batches, save the loader as verl does (data.pt), load it into a fresh one: batches 4-6.
    interrupted = loader(online_dataset(rotation_dir, processor), 2)
    it = iter(interrupted)
    for _ in range(3):
        next(it)
    state = interrupted.state_dict()
    resumed = loader(online_dataset(rotation_dir, processor), 2)
    resumed.load_state_dict(state)
    assert take(resumed, 3) == plain[3:]


def test_verl_validation_files_stay_plain_parquet_rows(rotation_dir: Path, processor) -> None:
    from verl_ext.online.dataset import OnlinePuzzleDataset

    config = verl_data_config(rotation_dir, cache_dir=str(rotation_dir / "cache"))
    val = OnlinePuzzleDataset(
        data_files=[str(rotation_dir / "val.parquet")],
        tokenizer=processor.tokenizer,
        config=config,
        processor=processor,
    )
    assert len(val) == pq.read_metadata(rotation_dir / "val.parquet").num_rows
    assert val[0]["extra_info"]["split"] == "val"


def test_a_shuffled_loader_or_a_missing_index_is_refused_with_the_fix(rotation_dir: Path, processor) -> None:
    with pytest.raises(ValueError, match="data.shuffle=false"):
        online_dataset(rotation_dir, processor, shuffle=True)
    with pytest.raises(ValueError, match="data.online.pictures"):
        online_dataset(rotation_dir, processor, online={"pictures": None})
    with pytest.raises(ValueError, match="state_dir"):
        OnlineSettings.from_config({"pictures": "x", "curriculum": {"enable": True}})


# ---- the curriculum's state on its way to the loader


def test_the_version_a_position_uses_was_written_before_the_loader_asks_for_it() -> None:
    # No workers: batch b (positions b*B ..) is fetched at the start of step b+1, after step b's update.
    assert [version_for(p, workers=0, gen_batch=4, train_batch=4) for p in (0, 3, 4, 11, 12)] == [0, 0, 1, 2, 3]
    # Two workers prefetch 2*2 batches: batch b is asked for after the update of step b-4.
    assert [version_for(b * 4, workers=2, gen_batch=4, train_batch=4) for b in range(7)] == [0, 0, 0, 0, 0, 1, 2]


def state_with(rates: list[float], frontier: int) -> TaskCurricula:
    config = CurriculumConfig(group_size=4)
    return TaskCurricula(config, {"rotation": Curriculum(len(rates), config, frontier, [Level(r) for r in rates])})


def test_served_levels_follow_the_state_the_controller_wrote(rotation_dir: Path, tmp_path: Path) -> None:
    config = CurriculumConfig(group_size=4)
    states = StateDir(tmp_path / "curriculum")
    states.write(1, state_with([0.99, 0.99, 0.5, 0.5], frontier=2))
    s = stream(
        rotation_dir,
        epochs=5,
        curriculum=config,
        state_dir=states.path,
        data_config={"train_batch_size": 8, "dataloader_num_workers": 0},
    )
    levels = Counter(parse_level(s[i]["extra_info"]["difficulty"]) for i in range(8, len(s)))
    assert set(levels) <= {0, 1, 2} and levels[2] > 0.6 * sum(levels.values())
    # Before any update (version 0): the easiest level only.
    assert {s[i]["extra_info"]["difficulty"] for i in range(8)} == {level_name(0)}


def test_the_controller_starts_writes_and_resumes_from_the_checkpoint_step(tmp_path: Path) -> None:
    config = CurriculumConfig(group_size=4, min_groups=2)
    controller = CurriculumController(config, tmp_path)
    groups = [Group("rotation", 0, 1.0, position, "c") for position in range(4)]
    metrics = controller.step(1, groups)
    assert metrics["train/curriculum/rotation/level_0/share"] == 1.0
    assert metrics["train/curriculum/rotation/level_0/accuracy"] == 1.0
    controller.step(2, groups)
    controller.step(3, groups)
    states = StateDir(tmp_path)
    assert states.versions() == [1, 2, 3] and states.groups(3) == groups
    # A crash after step 3, resumed from the checkpoint of step 2: step 3 is redone from state 2.
    resumed = CurriculumController(config, tmp_path)
    resumed.step(3, groups[:2])
    expected = states.read(2, config)
    expected.update(groups[:2])
    assert states.read(3, config).state_dict() == expected.state_dict()
    assert states.versions() == [1, 2, 3]
    # Resuming at step 5 while state 4 was never written: a clear error.
    with pytest.raises(FileNotFoundError, match="step 4"):
        CurriculumController(config, tmp_path).step(5, groups)


def test_a_run_that_trained_without_the_curriculum_starts_it_afresh_on_resume(tmp_path: Path) -> None:
    controller = CurriculumController(CurriculumConfig(group_size=4), tmp_path / "none")
    controller.step(11, [Group("rotation", 0, 0.5)])
    assert StateDir(tmp_path / "none").versions() == [11]


def test_groups_come_from_each_prompts_extra_info_and_rewards() -> None:
    keys = ["u1_0_0", "u1_1_0", "u2_0_0", "u2_1_0", "u3_0_0"]
    sources = ["ssl_rotation"] * 4 + ["ssl_jigsaw"]
    extra = (
        [{"task": "rotation", "difficulty": "level_2", "index": 7, "content_id": "a"}] * 2
        + [{"task": "rotation", "difficulty": "level_0", "index": 8, "content_id": "b"}] * 2
        + [{"task": "jigsaw", "difficulty": "easy", "index": 9}]
    )
    rewards = [{"acc": 1.0}, {"acc": 0.0}, {"acc": 1.0}, {"acc": 1.0}, {"acc": 1.0}]
    assert curriculum_groups(keys, sources, extra, rewards) == [
        Group("rotation", 2, 0.5, 7, "a"),
        Group("rotation", 0, 1.0, 8, "b"),
    ]


def test_state_files_are_whole_json_with_their_groups(tmp_path: Path) -> None:
    states = StateDir(tmp_path)
    states.write(4, state_with([0.5, 0.5, 0.5, 0.5], 1), [Group("rotation", 1, 0.25, 3, "x")])
    data = json.loads(states.file(4).read_text())
    assert data["version"] == 4 and data["groups"][0]["position"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert states.drop_after(3) == [4] and states.versions() == []
