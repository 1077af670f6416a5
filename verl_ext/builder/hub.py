"""A build folder in the Hugging Face Hub's form: picture features in the parquet files, and a dataset card.

Two things make a folder of puzzles open as a dataset of pictures, locally with ``datasets.load_dataset`` and on
the Hub's viewer, without changing a byte of what verl reads:

* **Features.** ``datasets`` reads a parquet file's column types from the JSON stored under the schema metadata key
  ``huggingface``. Without it, ``images`` (a list of ``{bytes, path}`` structs) loads as dicts of bytes; with it,
  as a list of ``Image`` features, decoded to PIL pictures on access. The Arrow columns are the same, and verl's
  ``RLHFDataset`` (which loads through ``datasets``) passes PIL pictures or the dicts to the same
  ``qwen_vl_utils.fetch_image``, so the pixels reaching the processor are identical. Lists are written in the
  ``[feature]`` form, which every ``datasets`` release reads (the ``List`` type name exists only from 4.0).
* **A dataset card.** ``README.md`` with YAML front matter declaring one config whose splits are the build's
  parquet files, so ``load_dataset(folder)`` (or the folder uploaded as a Hub repository) gets those splits
  and ignores the rest of the folder (manifest, online picture index, locks). The card says what the task asks,
  where the pictures come from and under which licence, how to rebuild it, and the manifest's counts.
"""

from __future__ import annotations

import inspect
import json
import shlex
from dataclasses import fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from verl_ext.builder.plan import BuildConfig
from verl_ext.sources import get_source
from verl_ext.tasks import TASKS

HF_METADATA_KEY = b"huggingface"
CARD = "README.md"
IMAGE_COLUMNS = ("images",)
# Build arguments that are local paths: the card names only their last part.
PATH_ARGS = ("input", "output", "tokenizer")

_VALUE_TYPES = {
    pa.string(): "string",
    pa.int64(): "int64",
    pa.float64(): "float64",
    pa.bool_(): "bool",
    pa.binary(): "binary",
}


def _feature(arrow_type: pa.DataType) -> Any:
    if pa.types.is_struct(arrow_type):
        return {arrow_type.field(i).name: _feature(arrow_type.field(i).type) for i in range(arrow_type.num_fields)}
    if pa.types.is_list(arrow_type):
        return [_feature(arrow_type.value_type)]
    if arrow_type not in _VALUE_TYPES:
        raise TypeError(f"no Hugging Face feature is declared for the Arrow type {arrow_type}")
    return {"dtype": _VALUE_TYPES[arrow_type], "_type": "Value"}


def hub_features(schema: pa.Schema) -> dict[str, Any]:
    """The ``datasets`` features of ``schema`` as JSON: image columns as lists of ``Image``, the rest as stored."""
    return {
        field.name: [{"_type": "Image"}] if field.name in IMAGE_COLUMNS else _feature(field.type) for field in schema
    }


def with_hub_features(schema: pa.Schema) -> pa.Schema:
    """``schema`` carrying its ``datasets`` features, so the files load as pictures (columns unchanged)."""
    info = json.dumps({"info": {"features": hub_features(schema)}})
    return schema.with_metadata({**(schema.metadata or {}), HF_METADATA_KEY: info.encode()})


def build_command(args: dict[str, Any]) -> str:
    """The ``build_benchmarks/build.py`` command line of a build, from its manifest's ``args`` (defaults left out)."""
    defaults = BuildConfig(task="", output=Path())
    words = ["python", "build_benchmarks/build.py"]
    for item in fields(BuildConfig):
        name, value = item.name, args.get(item.name)
        if name in ("progress", "workers", "limits") or value is None:
            continue  # how the build ran, not what it built
        default = getattr(defaults, name)
        if name == "options":
            for option in value:
                words += ["--option", option]
        elif isinstance(default, bool):
            if value:
                words.append(f"--{name.replace('_', '-')}")
        elif name in ("task", "output") or value != (str(default) if isinstance(default, Path) else default):
            settings = name == "input" and args.get("source") and get_source(args["source"]).input_is_settings
            if name in PATH_ARGS and not settings:
                value = Path(str(value)).name  # a local path says nothing to the card's readers
            words += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join(words)


def _summary(task: str) -> str:
    """First line of the task module's docstring: the question the task asks."""
    doc = inspect.getmodule(type(TASKS[task])).__doc__ or task
    first = doc.strip().splitlines()[0]
    name, _, question = first.partition(": ")  # "Rotation: by how many degrees ...?"
    return question[:1].upper() + question[1:] if question and name.lower() == task else first


def _size_category(total: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if total < bound:
            return label
    return "1M<n<10M"


def _example(output: Path, split: str) -> tuple[str, str] | None:
    """The user text and ground truth of the first puzzle of ``split`` (images shown as ``<image>``)."""
    path = output / f"{split}.parquet"
    if not path.is_file():
        return None
    table = pq.ParquetFile(path).read_row_group(0, columns=["prompt", "reward_model"]).slice(0, 1).to_pylist()
    if not table:
        return None
    turns = table[0]["prompt"]
    text = next((t["content"] for t in turns if t["role"] == "user"), turns[-1]["content"])
    return text, table[0]["reward_model"]["ground_truth"]


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _yaml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML scalar, quotes and all


def dataset_card(manifest: dict[str, Any], output: Path) -> str:
    """The ``README.md`` of a build folder (``output``), from its manifest and first training puzzle."""
    spec = get_source(manifest["source"])
    splits: dict[str, int] = manifest["splits"]
    tasks = list(manifest["tasks"])
    title = f"{manifest['task']} puzzles from {manifest['source']}"
    front = [
        "---",
        f"license: {spec.licence}",
        f"pretty_name: {_yaml_string(title)}",
        "task_categories:",
        "- image-text-to-text",
        "tags:",
        *(f"- {tag}" for tag in ("self-supervised", "visual-puzzles", "reinforcement-learning", "grpo", "verl")),
        *(f"- {task}" for task in tasks),
        "size_categories:",
        f"- {_size_category(sum(splits.values()))}",
        "configs:",
        "- config_name: default",
        "  data_files:",
    ]
    for split, file in manifest["files"].items():
        front += [f"  - split: {split}", f"    path: {file}"]
    front.append("---")

    role = {manifest["train_split"]: "training", manifest["val_split"]: "validation"}
    body = [f"# {title}", ""]
    if manifest.get("control"):
        body += [
            f"**Control build ({manifest['control']}):** every picture a puzzle shows is replaced by a flat grey one "
            "of the same size; prompts and answers are unchanged. It measures what a model learns without the "
            "pictures. Do not train a model on it.",
            "",
        ]
    body += [
        "Self-supervised visual puzzles: the answer is computed from the pictures, so no human label is needed. "
        "Each row is one puzzle in verl's RL dataset schema; a verifiable reward scores the model's answer "
        "against `reward_model.ground_truth` (`verl_ext.reward.compute_score`).",
        "",
        "## What the task asks",
        "",
    ]
    for task in tasks:
        weight = f" (share {manifest['tasks'][task]:g})" if len(tasks) > 1 else ""
        knobs = json.dumps(manifest["knobs"].get(task, {}), sort_keys=True)
        difficulty = manifest["difficulty"][task]
        body.append(f"- **{task}**{weight}: {_summary(task)} Difficulty `{difficulty}`, knobs `{knobs}`.")
    example = _example(output, manifest["train_split"] or next(iter(splits)))
    if example:
        body += ["", "The first training puzzle asks (each `<image>` is one picture of `images`):", ""]
        body += ["```text", example[0].strip(), "```", "", f"Its answer: `{example[1]}`."]
    body += ["", "## Splits", ""]
    body += _table(
        ("split", "role", "puzzles", "by task"),
        [
            (split, role.get(split, "-"), rows, json.dumps(manifest["rows_by_task"].get(split, {}), sort_keys=True))
            for split, rows in splits.items()
        ],
    )
    body += ["", "## Pictures", "", f"Source `{spec.name}`: {spec.description}.", "", spec.licence_note, ""]
    if spec.attribution is not None:
        body += _table(("picture", "author", "licence"), spec.attribution()) + [""]
    body += [
        "## Columns",
        "",
        "- `prompt`: the chat messages; the user turn holds one `<image>` per picture.",
        "- `images`: the pictures, in the order of the `<image>` markers (JPEG or PNG bytes; `Image` features).",
        "- `reward_model.ground_truth`: the answer; `extra_info`: task, split, source and content ids, difficulty, "
        "the puzzle's parameters (JSON), prompt tokens.",
        "- `data_source` (`ssl_<task>`) and `ability`: verl's keys for per-task metrics.",
        "",
        "## Loading and training",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'puzzles = load_dataset("path/to/this/folder")  # or the Hub repository it was uploaded to',
        f'puzzles["{manifest["train_split"] or next(iter(splits))}"][0]["images"][0]  # a PIL picture',
        "```",
        "",
        "Training with this toolkit: `DATA_DIR=path/to/this/folder bash scripts/run_grpo.sh TASK SOURCE`.",
        "",
        "## How it was built",
        "",
        "```bash",
        build_command(manifest["args"]),
        "```",
        "",
        f"Seed {manifest['seed']}, prompt budget {manifest['max_prompt_tokens']} tokens "
        f"({'counted with the model tokenizer' if manifest['prompt_tokens_exact'] else 'an upper bound'}), "
        f"{manifest['image_format']} pictures, {manifest['puzzles_per_image']} puzzle(s) per picture, "
        f"toolkit version {manifest['version']}.",
        "",
    ]
    body += _table(
        ("split", "prompt tokens (max)", "prompt tokens (mean)"),
        [(split, t["max"], t["mean"]) for split, t in manifest["prompt_tokens"].items()],
    )
    skipped = manifest["skips"]
    body += [
        "",
        f"Pictures skipped: {sum(skipped.values())}"
        + (f" ({', '.join(f'{reason}: {n}' for reason, n in skipped.items())})" if skipped else "")
        + ". `manifest.json` holds every count and setting.",
        "",
    ]
    return "\n".join(front + body)
