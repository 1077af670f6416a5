"""Checks scripts/run_grpo.sh runs before it starts verl, so that a bad setup ends with a message, not a trace.

Run as ``python -m verl_ext.launch.preflight SUBCOMMAND ...``. Subcommands (each prints its result on stdout and
any problem on stderr, exit status 2 on a problem):

* ``data-files DATA_DIR --task T --source S [--allow-eval-images] [--max-prompt-length N]``: reads the
  builder's ``manifest.json``, checks that the folder is whole (every split it names exists with that many rows,
  and no build is writing it), that the train and val files hold rows and that the puzzles were built for at
  most N prompt tokens, and prints two lines: the Hydra values for ``data.train_files`` and
  ``data.val_files``.
* ``config-value CONFIG_DIR CONFIG_NAME KEY [OVERRIDE ...]``: composes the config exactly as verl will and
  prints one value (used for the prompt-token budget the builder must respect).
* ``resume SAVE_DIR [--dry-run]``: prints the step a ``resume_mode=auto`` run restarts from, or nothing, after
  making ``SAVE_DIR`` say so to verl (:mod:`verl_ext.launch.resume`: newest complete checkpoint, tracker
  rewritten, half-written checkpoints moved aside); ``--dry-run`` only tells.
* ``settings CONFIG_DIR CONFIG_NAME --device D --train-files LIST [--cluster KEY=N ...] [--smoke] -- OVERRIDE ...``:
  composes the config with the launcher's cluster shape and the user's overrides, applies the rules of
  :mod:`verl_ext.launch.settings` (attention without flash-attn, batch size against the data, tensor parallel,
  one-GPU memory, vLLM context length, row order of stratified builds), runs verl's own config validation, and
  prints the overrides the launcher adds, one per line; the reason for each goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from verl_ext.launch.errors import PreflightError
from verl_ext.online import ONLINE_FILES


def hydra_list(paths: list[Path]) -> str:
    """A Hydra override value for a list of paths: ``['/a/train.parquet','/b/x.parquet']``."""
    for path in paths:
        if any(char in str(path) for char in "'\\"):
            raise PreflightError(f"path {path} contains a quote or backslash; move the data to a plainer path")
    return "[" + ",".join(f"'{path}'" for path in paths) + "]"


def parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path).num_rows
    except Exception as error:  # a truncated or non-parquet file: say which one
        raise PreflightError(f"cannot read {path} as parquet ({error}); {_rebuild_hint(path.parent)}") from None


def read_manifest(data_dir: Path) -> dict:
    manifest_path = data_dir / "manifest.json"
    if not manifest_path.is_file():
        raise PreflightError(f"no puzzles in DATA_DIR={data_dir} (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise PreflightError(f"{manifest_path} is not valid JSON ({error}); delete it and build again") from None
    for key in ("train_split", "val_split"):
        if not manifest.get(key):
            raise PreflightError(f"{manifest_path} has no '{key}'; it was not written by build_benchmarks/build.py")
    return manifest


def _rebuild_hint(data_dir: Path) -> str:
    return (
        f"delete the folder (rm -r {data_dir}) and run the same command again: run_grpo.sh builds the puzzles "
        "when DATA_DIR has none (set INPUT to the source's files), or build them with build_benchmarks/build.py"
    )


def check_whole(data_dir: Path, manifest: dict) -> None:
    """Every split the manifest names exists with exactly the rows it names, and no build is writing the folder."""
    from verl_ext.folder_lock import writer_of

    writer = writer_of(data_dir)
    if writer is not None:
        raise PreflightError(f"DATA_DIR={data_dir} is being written by {writer}; wait for it to end, then run again")
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise PreflightError(f"{data_dir / 'manifest.json'} names no splits; {_rebuild_hint(data_dir)}")
    problems = []
    for split, expected in splits.items():
        path = data_dir / f"{split}.parquet"
        if not path.is_file():
            problems.append(f"{path.name} is missing (the manifest names {expected} rows)")
            continue
        rows = parquet_rows(path)
        if rows != expected:
            problems.append(f"{path.name} holds {rows} rows, the manifest names {expected}")
    if problems:
        raise PreflightError(
            f"DATA_DIR={data_dir} is not whole: {'; '.join(problems)}. It was changed after its build or the build "
            f"was interrupted; {_rebuild_hint(data_dir)}"
        )


def split_file(data_dir: Path, manifest: dict, split: str) -> Path:
    path = data_dir / f"{split}.parquet"
    if not path.is_file():
        raise PreflightError(f"{path} is missing although manifest.json names split '{split}'; build again")
    rows = parquet_rows(path)
    if rows == 0:
        skips = manifest.get("skips") or {}
        reasons = ", ".join(f"{reason}: {count}" for reason, count in skips.items()) or "none recorded"
        raise PreflightError(
            f"{path} holds no puzzles (0 rows). Images the builder skipped, by reason: {reasons}. "
            "Check the builder's input, or relax its knobs (e.g. a larger --max-prompt-tokens)."
        )
    return path


def data_files(
    data_dir: Path, task: str, source: str, allow_eval_images: bool, max_prompt_length: int | None = None
) -> tuple[list[Path], list[Path]]:
    """Train and val parquet files of a built dataset, after checking that they exist, are not empty, and were
    built for a prompt budget no larger than ``max_prompt_length`` (verl's ``data.max_prompt_length``).

    By default the model validates on puzzles made from images it never trains on (the manifest's val split).
    ``allow_eval_images`` adds the val split's puzzles to the training files as well (SSL4RL's transductive
    setting): the caller must warn about it.
    """
    manifest = read_manifest(data_dir)
    check_whole(data_dir, manifest)
    built = (manifest.get("task"), manifest.get("source"))
    if built != (task, source):
        raise PreflightError(
            f"DATA_DIR={data_dir} holds puzzles for task={built[0]} source={built[1]}, not task={task} "
            f"source={source}; use another DATA_DIR (or leave it unset for the default per task and source)"
        )
    budget = manifest.get("max_prompt_tokens")
    if max_prompt_length is not None and isinstance(budget, int) and budget > max_prompt_length:
        raise PreflightError(
            f"the puzzles in {data_dir} were built for prompts of up to {budget} tokens, but data.max_prompt_length "
            f"is {max_prompt_length}, so verl would drop the longer ones. Delete {data_dir} to rebuild them for "
            f"{max_prompt_length} tokens, or set data.max_prompt_length={budget}."
        )
    train_split, val_split = manifest["train_split"], manifest["val_split"]
    if train_split == val_split:
        raise PreflightError(f"manifest.json names the same split '{train_split}' for training and validation")
    train = [split_file(data_dir, manifest, train_split)]
    val = [split_file(data_dir, manifest, val_split)]
    if allow_eval_images:
        train.append(val[0])
    return train, val


def verl_config_dir() -> Path:
    """verl's own config folder, found without importing verl (which would pull in torch)."""
    import importlib.util

    spec = importlib.util.find_spec("verl")
    if spec is None or not spec.submodule_search_locations:
        raise PreflightError("verl is not installed for this Python; see README.md, 'Install'")
    return Path(next(iter(spec.submodule_search_locations))) / "trainer" / "config"


def compose(config_dir: Path, config_name: str, overrides: list[str]):
    """The config exactly as ``main_ppo --config-dir=CONFIG_DIR --config-name=CONFIG_NAME OVERRIDES`` composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if not (config_dir / f"{config_name}.yaml").is_file():
        raise PreflightError(f"no config {config_name}.yaml in {config_dir}")
    searchpath = f"hydra.searchpath=[file://{verl_config_dir()}]"
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            return hydra_compose(config_name, overrides=[searchpath, *overrides])
    except (HydraException, OmegaConfBaseException) as error:
        raise PreflightError(f"config {config_name} does not compose with overrides {overrides}: {error}") from None


def config_values(config_dir: Path, config_name: str, keys: list[str], overrides: list[str]) -> list[str]:
    """Keys of the composed config (composed once: each launcher call is a Python start and a Hydra compose)."""
    from omegaconf import OmegaConf

    config = compose(config_dir, config_name, overrides)
    return [str(OmegaConf.select(config, key)) for key in keys]


def parse_hydra_list(value: str) -> list[Path]:
    """The paths of a value written by :func:`hydra_list`."""
    inner = value.strip().removeprefix("[").removesuffix("]")
    return [Path(part.strip().strip("'")) for part in inner.split(",") if part.strip()]


def launch_settings(
    config_dir: Path,
    config_name: str,
    user_overrides: list[str],
    *,
    device: str,
    train_files: list[Path],
    cluster: list[str],
    smoke: bool,
    print_only: bool = False,
    verl_validation: bool = True,
) -> list[str]:
    """The overrides the launcher adds between its own (``cluster``: GPUs per node, nodes) and the user's.

    First the smoke settings (when asked), then the decisions of :mod:`verl_ext.launch.settings`. Keys the user
    set are never changed. Raises PreflightError when a rule or verl's own validation refuses the configuration;
    with ``print_only`` (the user passed ``--cfg``) the data and batch refusals are printed as warnings instead.

    ``verl_validation=False`` leaves verl's batch-layout validation to verl: its ``main_ppo`` runs the same check
    first thing, before Ray starts, and importing verl's config classes for it here costs a launch 5-9 s on 2
    cores (tensordict imports torch's compiler stack). The launcher asks for it only when verl will not run: the
    config is only printed, or DRY_RUN.
    """
    import importlib.util
    import os

    from verl_ext.cpu import import_hooks
    from verl_ext.launch import settings

    import_hooks.install()  # verl's config classes import torchvision, which needs the fix on CPU-only machines
    user_overrides = [o for o in user_overrides if settings.override_key(o)]  # not Hydra flags such as --cfg
    explicit = settings.user_keys(user_overrides)
    # Online puzzles (data.train_files=online): a stream of pictures x epochs, made by the code the builder uses;
    # there is no file to count or check before the run.
    online = [str(path) for path in train_files] == [ONLINE_FILES]
    train_value = ONLINE_FILES if online else hydra_list(train_files)
    fixed = [*cluster, *([f"data.train_files={train_value}"] if train_files else [])]
    added: list[str] = []
    if smoke:
        world = settings.world_size(compose(config_dir, config_name, [*fixed, *user_overrides]))
        added = [o for o in settings.smoke_overrides(world) if settings.override_key(o) not in explicit]
        print("smoke run: one step, small batch, short responses, no validation, no checkpoint", file=sys.stderr)
    config = compose(config_dir, config_name, [*fixed, *added, *user_overrides])
    if train_files and not online:
        refuse_or_warn(
            lambda: settings.batch_fits_data(config, sum(parquet_rows(path) for path in train_files)), print_only
        )
    decisions = settings.decide(
        config,
        explicit,
        device=device,
        flash_attn_installed=importlib.util.find_spec("flash_attn") is not None,
        ray_address=os.environ.get("RAY_ADDRESS") or None,
    )
    decisions += settings.keep_row_order(config, explicit, [] if online else stratified_folders(train_files))
    for decision in decisions:
        added += decision.overrides
        print(f"setting {' '.join(decision.overrides)}: {decision.reason}", file=sys.stderr)
    if decisions:  # otherwise the config composed above is already the final one
        config = compose(config_dir, config_name, [*fixed, *added, *user_overrides])
    if verl_validation:
        refuse_or_warn(lambda: settings.validate_with_verl(config), print_only)
    refuse_or_warn(lambda: check_rows(config), print_only)
    return added


def stratified_folders(train_files: list[Path]) -> list[str]:
    """The folders of ``train_files`` whose build wrote its rows in stratified order (manifest ``args.order``
    stratified, or balanced: stratified after equalising the answers)."""
    folders = []
    for folder in dict.fromkeys(Path(path).parent for path in train_files):
        try:
            order = json.loads((folder / "manifest.json").read_text()).get("args", {}).get("order")
        except (OSError, ValueError, AttributeError):
            continue  # not a build folder of ours: nothing says how its rows are ordered
        # verl_ext.builder.order.WRITTEN_ORDERS, spelt out: importing the builder package would cost every launch
        # about half a second (PIL and the tasks), for one tuple.
        if order in ("stratified", "balanced"):
            folders.append(str(folder))
    return folders


def refuse_or_warn(check: Callable[[], None], print_only: bool) -> None:
    """Run a check that raises PreflightError. When the user only prints the config (``--cfg job``), a refusal
    is a warning: they asked to read the config, not to run it, and a real launch with it still refuses."""
    try:
        check()
    except PreflightError as error:
        if not print_only:
            raise
        print(f"WARNING: a launch with this config would stop here: {error}", file=sys.stderr)


def _config_files(value) -> list[Path]:
    from omegaconf import ListConfig

    if value is None:
        return []
    if isinstance(value, (list, tuple, ListConfig)):
        return [Path(str(v)) for v in value]
    return parse_hydra_list(str(value)) if str(value).startswith("[") else [Path(str(value))]


def check_rows(config) -> None:
    """Every row of the files verl will train and validate on, as composed (the user's overrides included).

    Raises PreflightError naming file, row and problem (:mod:`verl_ext.launch.rows_check`), before Ray starts.
    """
    import os
    import time

    from verl_ext.launch.rows_check import check_file, describe

    files = _config_files(config.data.get("train_files")) + _config_files(config.data.get("val_files"))
    files = [path for path in files if str(path) != ONLINE_FILES]  # online puzzles: no file
    reports = []
    started = time.perf_counter()
    for path in dict.fromkeys(files):  # a file listed twice (ALLOW_EVAL_IMAGES) is checked once
        if not path.is_file():
            raise PreflightError(f"data file {path} does not exist")
        try:
            reports.append(check_file(path, workers=min(8, os.cpu_count() or 1)))
        except (OSError, ValueError) as error:
            raise PreflightError(f"cannot read {path} as parquet ({error})") from None
    message = describe(reports)
    if message:
        raise PreflightError(
            "rows the run cannot train on (verl would stop at the first of them, possibly hours in):\n"
            f"{message}\nFix or drop those rows, or rebuild the puzzles with build_benchmarks/build.py."
        )
    rows = sum(report.rows for report in reports)
    seconds = time.perf_counter() - started
    print(f"checked {rows} rows of {len(reports)} data file(s) in {seconds:.1f} s", file=sys.stderr)


def resume(save_dir: Path, dry_run: bool) -> int | None:
    """The step the run restarts from (see :mod:`verl_ext.launch.resume`); repairs ``save_dir`` unless dry_run."""
    from verl_ext.launch import resume as resuming

    plan = resuming.plan_resume(save_dir)
    for warning in plan.warnings:
        print(f"WARNING: {save_dir}: {warning}", file=sys.stderr)
    if not dry_run:
        resuming.apply(save_dir, plan)
    return plan.step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    files = commands.add_parser("data-files")
    files.add_argument("data_dir", type=Path)
    files.add_argument("--task", required=True)
    files.add_argument("--source", required=True)
    files.add_argument("--allow-eval-images", action="store_true")
    files.add_argument("--max-prompt-length", type=int, help="verl's data.max_prompt_length, to check the build budget")
    value = commands.add_parser("config-value")
    value.add_argument("config_dir", type=Path)
    value.add_argument("config_name")
    value.add_argument("key", help="a config key, or several separated by commas (one value per line)")
    value.add_argument("overrides", nargs="*")
    resumed = commands.add_parser("resume")
    resumed.add_argument("save_dir", type=Path)
    resumed.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    decide = commands.add_parser("settings")
    decide.add_argument("config_dir", type=Path)
    decide.add_argument("config_name")
    decide.add_argument("--device", choices=("gpu", "cpu"), required=True)
    decide.add_argument("--train-files", default="", help="Hydra list of the training parquet files")
    decide.add_argument("--smoke", action="store_true")
    decide.add_argument("--print-only", action="store_true", help="the config is only printed: refusals warn")
    decide.add_argument("--cluster", action="append", default=[], help="the launcher's trainer.* overrides")
    decide.add_argument(
        "--no-verl-validation", action="store_true", help="leave verl's config validation to verl's main_ppo"
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" is the user's Hydra overrides, flags such as --cfg included (argparse's subparsers
    # would try to read those).
    passthrough = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    args = parser.parse_args(argv)

    try:
        if args.command == "data-files":
            train, val = data_files(
                args.data_dir, args.task, args.source, args.allow_eval_images, args.max_prompt_length
            )
            print(hydra_list(train))
            print(hydra_list(val))
            for label, paths in (("train", train), ("val", val)):
                described = ", ".join(f"{path.name} ({parquet_rows(path)} puzzles)" for path in paths)
                print(f"{label}: {described}", file=sys.stderr)
        elif args.command == "config-value":
            keys = [key for key in args.key.split(",") if key]
            print("\n".join(config_values(args.config_dir.resolve(), args.config_name, keys, args.overrides)))
        elif args.command == "settings":
            added = launch_settings(
                args.config_dir.resolve(),
                args.config_name,
                passthrough,
                device=args.device,
                train_files=parse_hydra_list(args.train_files),
                cluster=args.cluster,
                smoke=args.smoke,
                print_only=args.print_only,
                verl_validation=not args.no_verl_validation,
            )
            print("\n".join(added))
        else:
            step = resume(args.save_dir, args.dry_run)
            if step is not None:
                print(step)
    except PreflightError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
