"""The ``seqmeta`` command line: one verb per step of the data flow.

seqmeta families                      list task families, task sets, splits and behavior levels
seqmeta recipes                       list the shipped training recipes (--config NAME takes them)
seqmeta collect ...                   roll out behavior policies into a dataset
seqmeta import-hdf5 ...               D4RL-style HDF5 files (one per task) into a dataset
seqmeta import-minari ...             Minari datasets into a dataset
seqmeta info DIR                      summarize a dataset
seqmeta train --config RECIPE ...     meta-train (also: accelerate launch -m seqmeta train ...)
seqmeta finetune --model DIR ...      adapt a trained model to new tasks (full, lora, awr)
seqmeta self-supervise --model DIR ...  explore training tasks reward-free, label, meta-train on it
seqmeta eval --model DIR ...          evaluate in-context adaptation on held-out tasks
seqmeta push --model DIR --repo-id ID  publish a model (with its card) or --dataset DIR to the Hub
seqmeta pull --model|--dataset ID --output-dir DIR  download a published model or dataset
seqmeta demo                          the main job on its embedded default
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Collection, Sequence
from importlib import import_module
from pathlib import Path

import seqmeta
from seqmeta.configs import add_config_options
from seqmeta.errors import ConfigError, SeqmetaError
from seqmeta.io import check_writable

logger = logging.getLogger("seqmeta")


def _command_line(argv: Sequence[str] | None) -> str:
    return "seqmeta " + shlex.join(list(argv if argv is not None else sys.argv[1:]))


def cmd_families(args: argparse.Namespace) -> None:
    import json

    from seqmeta.behavior.policies import available_qualities
    from seqmeta.pretrained import list_pretrained
    from seqmeta.tasks import get_family, list_families
    from seqmeta.tasks.family import index_ranges

    shipped: dict[str, list[str]] = {}
    for model_name, folder in list_pretrained().items():
        shipped.setdefault(json.loads((folder / "config.json").read_text())["family"], []).append(model_name)
    for name in list_families():
        family = get_family(name)
        print(f"{name}: {family.description}")
        print(f"  env {family.env_id}, horizon {family.horizon}, behavior: {', '.join(available_qualities(family))}")
        if name in shipped:
            print(f"  shipped model: {', '.join(shipped[name])} (seqmeta.load_model(NAME), seqmeta eval --model NAME)")
        for set_name, ts in family.task_sets.items():
            default = " (default)" if set_name == family.default_task_set else ""
            test = index_ranges(ts.test_indices)
            print(f"  task set {set_name}{default}: {len(ts)} tasks, test {test}; {ts.description}")


def cmd_recipes(args: argparse.Namespace) -> None:
    from seqmeta.recipes import find_recipe, list_recipes, recipe_summary, recipes_dir

    if args.path:
        print(find_recipe(args.path))
        return
    recipes = list_recipes()
    width = max(map(len, recipes))
    for name, path in recipes.items():
        print(f"{name:<{width}}  {recipe_summary(path)}")
    print(f"\n(files in {recipes_dir()}; `seqmeta recipes --path NAME` prints one's path)")


def cmd_collect(args: argparse.Namespace) -> None:
    from seqmeta.data.collect import collect_dataset

    task_set = _task_params_file(args.task_params) if args.task_params else args.task_set
    qualities = [q.strip() for q in args.quality.split(",")]
    corrected = [q for q in qualities if q.endswith("-corrections")]
    if corrected and not args.acting_model:
        raise ConfigError(f"{corrected[0]} is a model's own trials: name the model with --acting-model DIR")
    if args.acting_model and not corrected:
        raise ConfigError("--acting-model is for a corrections quality, e.g. --quality search,search-corrections")
    more = None
    if corrected:
        from seqmeta.corrections import corrections_of
        from seqmeta.models import load_model
        from seqmeta.tasks import get_family

        model = load_model(args.acting_model)
        more = corrections_of(model, args.acting_model, get_family(args.family), corrected, args.episodes_per_task)

    dataset = collect_dataset(
        args.family,
        [q for q in qualities if q not in corrected],
        args.out,
        tasks=args.tasks,
        episodes_per_task=args.episodes_per_task,
        task_set=task_set,
        seed=args.seed,
        overwrite=args.overwrite,
        command=args.command_line,
        more=more,
    )
    _print_summary(dataset)


def _task_params_file(path: str):
    """A task list of your own from JSON: {"name": ..., "params": [{...}, ...], "test": [indices]}."""
    import json

    from seqmeta.errors import ConfigError
    from seqmeta.tasks import TaskSet

    try:
        spec = json.loads(Path(path).read_text())
        params, test = tuple(dict(p) for p in spec["params"]), tuple(int(i) for i in spec.get("test", ()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f"--task-params {path}: {type(e).__name__}: {e}; give a JSON file like "
            '{"name": "fast", "params": [{"goal_velocity": 3.2}, {"goal_velocity": 3.6}], "test": [1]}'
        ) from None
    if not params or any(not 0 <= i < len(params) for i in test):
        raise ConfigError(f"--task-params {path}: give at least one task, and test indices among 0..{len(params) - 1}")
    return TaskSet(str(spec.get("name", "custom")), params, test, f"tasks from {Path(path).name}")


def cmd_import_hdf5(args: argparse.Namespace) -> None:
    from seqmeta.data.importers import import_hdf5

    files = []  # (task, path) pairs: a task may have several files, none is dropped
    for item in args.file:
        task, sep, path = item.partition("=")
        if not sep or not task.strip().isdigit() or not path:
            raise ConfigError(f"--file takes TASK_INDEX=PATH (e.g. --file 3=task3.hdf5), got {item!r}")
        files.append((int(task), path))
    dataset = import_hdf5(files, args.family, args.out, args.task_set, args.quality, args.overwrite, args.command_line)
    _print_summary(dataset)


def cmd_import_minari(args: argparse.Namespace) -> None:
    from seqmeta.data.importers import import_minari

    dataset = import_minari(
        args.dataset,
        args.family,
        args.out,
        args.task_set,
        args.task_index,
        args.quality,
        args.overwrite,
        args.command_line,
    )
    _print_summary(dataset)


def cmd_info(args: argparse.Namespace) -> None:
    from seqmeta.data.dataset import load_trajectories

    _print_summary(load_trajectories(args.path))


def cmd_run(args: argparse.Namespace) -> None:
    """train / finetune / self-supervise: a recipe (``--config``) with flags over it, handed to the run function."""
    from seqmeta.configs import load_config, overrides_from_args

    config = load_config(args.config_class, args.config, overrides_from_args(args, args.config_class))
    check_writable(config.output_dir)
    saved = args.run(config, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under DDP every process gets here; one says it
        print(f"model saved to {saved}")


def cmd_eval(args: argparse.Namespace) -> None:
    from seqmeta.configs import load_config, overrides_from_args
    from seqmeta.evaluation import EvalProtocol, evaluate
    from seqmeta.models import load_model
    from seqmeta.results import format_table, load_results

    given = overrides_from_args(args, EvalProtocol)
    protocol = load_config(EvalProtocol, args.config, given)
    baselines = {}
    for item in args.baseline:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--baseline takes NAME=eval_results.json, got {item!r}")
        first = load_results(path)["settings"][0]
        baselines[name] = first["normalized"] if first["normalized"] is not None else first["mean_return"]
    model = load_model(args.model)
    shipped_demos = Path(str(model.name_or_path)) / "demos"
    if not protocol.data and (shipped_demos / "seqmeta.json").is_file():  # a model folder that carries its demos
        protocol.data = str(shipped_demos)
        if "prompt_trajectories" not in given and not args.config:  # they hold one episode of each task
            protocol.prompt_trajectories = "0,1" if model.config.use_prompt else "0"
        print(f"data: the model's own demos, {shipped_demos} (prompt trajectories {protocol.prompt_trajectories})")
    results = evaluate(model, protocol, args.output_dir, args.training_log, baselines=baselines, videos=args.video)
    print(format_table(results))
    print(f"results and plots in {args.output_dir}")


def cmd_push(args: argparse.Namespace) -> None:
    from seqmeta.hub import push_dataset, push_model

    common = dict(private=args.private, revision=args.revision, commit_message=args.commit_message)
    if args.model:
        url = push_model(args.model, args.repo_id, dataset_repo=args.dataset_repo, **common)
    else:
        url = push_dataset(args.dataset, args.repo_id, **common)
    print(f"pushed: {url}")


def cmd_pull(args: argparse.Namespace) -> None:
    from seqmeta.hub import pull_dataset, pull_model

    if args.model:
        if args.quality:
            raise ConfigError("--quality picks quality levels of a dataset; a model is pulled whole (drop --quality)")
        folder = pull_model(args.model, args.out, revision=args.revision, overwrite=args.overwrite)
        print(f"model saved to {folder} (the repository's files as published)")
        return
    qualities = [q.strip() for q in args.quality.split(",")] if args.quality else None
    folder = pull_dataset(args.dataset, args.out, qualities=qualities, revision=args.revision, overwrite=args.overwrite)
    print(f"dataset saved to {folder}")


def cmd_demo(args: argparse.Namespace) -> None:
    from seqmeta.demo import run_demo

    run_demo(args.output_dir, scale=args.scale)


def _print_summary(dataset) -> None:
    meta = dataset.meta
    print(
        f"{dataset.path}: {meta.family} (task set {meta.task_set}), {meta.num_episodes} episodes, "
        f"{meta.num_steps} steps"
    )
    for name, q in meta.qualities.items():
        print(f"  {name:>8}: {q['episodes']:5d} episodes, mean return {q['mean_return']:9.2f}  ({q['behavior']})")


# Verbs whose options come from config classes in modules that import torch: their options are built only
# when the verb is the one run, so that `seqmeta --help`, `--version` and the light verbs start at once.
CONFIG_VERBS = ("train", "finetune", "self-supervise", "eval")


def _verb_of(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(options_of: Collection[str] = CONFIG_VERBS) -> argparse.ArgumentParser:
    """The full parser; ``options_of`` limits which of the ``CONFIG_VERBS`` get their options."""
    parser = argparse.ArgumentParser(
        prog="seqmeta", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--debug", action="store_true", help="on an error, show the full Python traceback")
    parser.add_argument("--version", action="version", version=f"seqmeta {seqmeta.__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("families", help="list task families, task sets, splits and behavior levels")
    p.set_defaults(func=cmd_families)

    p = verbs.add_parser("recipes", help="list the shipped recipes (train --config NAME runs one)")
    p.add_argument("--path", metavar="NAME", default=None, help="print the file of one recipe (e.g. accelerate/ddp)")
    p.set_defaults(func=cmd_recipes)

    def dataset_target(p: argparse.ArgumentParser) -> None:
        p.add_argument("--family", required=True, help="task family, e.g. cheetah-vel (see `seqmeta families`)")
        p.add_argument("--task-set", default=None, help="named task list of the family (default: its default)")
        p.add_argument("--output-dir", dest="out", required=True, help="the dataset folder to write (atomically)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")

    p = verbs.add_parser("collect", help="roll out behavior policies into a dataset")
    dataset_target(p)
    p.add_argument(
        "--quality",
        default="expert",
        help="a behavior level (expert, medium, mixed, random, explore, sweep, perturbed, search; `seqmeta "
        "families` lists each family's) or a comma list",
    )
    p.add_argument("--tasks", default="all", help="train, test, all, or task indices like 0,3,7")
    p.add_argument(
        "--task-params",
        default=None,
        help='a JSON task list of your own instead of --task-set: {"name", "params": [{...}], "test": [indices]}',
    )
    p.add_argument("--episodes-per-task", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--acting-model",
        default=None,
        help="a model folder that acts for the <behavior>-corrections qualities, each step labeled by the behavior",
    )
    p.set_defaults(func=cmd_collect)

    p = verbs.add_parser("import-hdf5", help="D4RL-style HDF5 files (one per task) into a dataset")
    dataset_target(p)
    p.add_argument("--file", action="append", required=True, help="TASK_INDEX=PATH; repeat per task")
    p.add_argument("--quality", default="imported", help="quality label of the imported episodes")
    p.set_defaults(func=cmd_import_hdf5)

    p = verbs.add_parser("import-minari", help="Minari datasets into a dataset")
    dataset_target(p)
    p.add_argument("--dataset", action="append", required=True, help="Minari dataset id; repeat per task")
    p.add_argument(
        "--task-index",
        type=int,
        action="append",
        default=None,
        help="task of each --dataset, in order (default: read from the recorded env kwargs)",
    )
    p.add_argument("--quality", default=None, help="quality label (default: the dataset name, e.g. expert)")
    p.set_defaults(func=cmd_import_minari)

    p = verbs.add_parser("info", help="summarize a dataset folder")
    p.add_argument("path")
    p.set_defaults(func=cmd_info)

    for verb, module, config_name, run_name, what in (
        ("train", "seqmeta.trainer", "TrainConfig", "train", "meta-train a model on a dataset"),
        (
            "finetune",
            "seqmeta.finetune",
            "FinetuneConfig",
            "finetune",
            "adapt a trained model to new tasks from a few trajectories",
        ),
        (
            "self-supervise",
            "seqmeta.selfsupervise",
            "SelfSuperviseConfig",
            "self_supervise",
            "explore the training tasks without rewards, label with the reward head, meta-train on it",
        ),
    ):
        p = verbs.add_parser(verb, help=f"{what} (recipes: `seqmeta recipes`; checkpoints, --resume)")
        p.set_defaults(func=cmd_run)
        if verb in options_of:
            source = import_module(module)
            cls, run = getattr(source, config_name), getattr(source, run_name)
            p.add_argument(
                "--config",
                default=None,
                help="a YAML recipe: a file or a shipped recipe's name (`seqmeta recipes`); flags override it",
            )
            add_config_options(p, cls)
            p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output-dir")
            p.set_defaults(config_class=cls, run=run)

    p = verbs.add_parser("eval", help="evaluate in-context adaptation on held-out tasks (eval_results.json + plots)")
    p.set_defaults(func=cmd_eval)
    if "eval" in options_of:
        _eval_options(p)

    p = verbs.add_parser("push", help="publish a model (config, weights, results, plots, card) or a dataset to the Hub")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--model", help="a model folder (`seqmeta train` model/, with eval_results.json), a shipped model or a Hub id"
    )
    what.add_argument("--dataset", help="a dataset folder (`seqmeta collect` output)")
    p.add_argument("--repo-id", required=True, help="the Hub repository, e.g. you/cheetah-vel-prompt-dt")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--revision", default=None, help="branch to push to (created if missing; default main)")
    p.add_argument("--commit-message", default=None)
    p.add_argument("--dataset-repo", default=None, help="the Hub dataset the model was trained on (named in the card)")
    p.set_defaults(func=cmd_push)

    p = verbs.add_parser("pull", help="download a published model or dataset into a local folder")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="the Hub model repository (its files, byte for byte)")
    what.add_argument("--dataset", help="the Hub dataset repository")
    p.add_argument("--output-dir", dest="out", required=True, help="the local folder to create")
    p.add_argument("--quality", default=None, help="quality levels (configs) to take, comma-separated (default: all)")
    p.add_argument("--revision", default=None)
    p.add_argument("--overwrite", action="store_true", help="replace --output-dir if it is a folder seqmeta wrote")
    p.set_defaults(func=cmd_pull)

    p = verbs.add_parser("demo", help="the main job: collect, meta-train, evaluate in-context adaptation")
    p.add_argument("--output-dir", default="outputs/demo", help="data/, models/ (with results and plots) go here")
    p.add_argument("--scale", type=float, default=1.0, help="shrink every stage (steps, episodes) by this factor")
    p.set_defaults(func=cmd_demo)
    return parser


def _eval_options(p: argparse.ArgumentParser) -> None:
    from seqmeta.evaluation import EvalProtocol

    p.add_argument("--model", required=True, help="a trained model folder")
    p.add_argument("--output-dir", required=True, help="eval_results.json and the plots go here")
    p.add_argument("--config", default=None, help="a YAML protocol; flags given here override it")
    p.add_argument("--training-log", default=None, help="a train_log.jsonl to plot the training curves from")
    p.add_argument("--video", type=int, default=0, help="also render N episodes as MP4s into --output-dir (MuJoCo)")
    p.add_argument(
        "--baseline",
        action="append",
        default=[],
        help="NAME=eval_results.json of another model (e.g. one trained without prompts): a line on the curve",
    )
    add_config_options(p, EvalProtocol)


# Verbs that step envs in worker threads between model calls. Idle OpenMP threads (torch's, MKL's) spin for
# milliseconds after each parallel region by default, on the cores the env workers need; told to sleep at once,
# a 400-env evaluation runs faster (README, Benchmarks). OpenMP reads the setting when torch loads, so it is set
# before any import of torch.
ROLLOUT_VERBS = ("eval", "collect", "self-supervise", "demo")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if _verb_of(argv) in ROLLOUT_VERBS:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # a user's own setting wins
    parser = build_parser(options_of={_verb_of(argv)} & set(CONFIG_VERBS))
    args = parser.parse_args(argv)
    args.command_line = _command_line(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    if not args.verbose:  # accelerate reports every file it saves at INFO; transformers bars every load
        logging.getLogger("accelerate").setLevel(logging.WARNING)
        for noisy in ("httpx", "httpcore", "httpx2", "httpcore2"):  # one INFO line per HTTP request
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # Its retries: a failure is ours to report. The variable holds when huggingface_hub is imported later
        # (its import sets its logger's level from it), the level when it already is.
        os.environ.setdefault("HF_HUB_VERBOSITY", "error")
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    try:
        output = getattr(args, "out", None) or getattr(args, "output_dir", None)
        if output:  # refused before any work, not after it (the run verbs check their config's)
            check_writable(output)
        args.func(args)
    except (SeqmetaError, FileExistsError) as e:  # bad input: the message names the cause and the fix
        if args.debug:
            raise
        print(f"seqmeta {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"seqmeta {args.verb}: interrupted; outputs are written atomically: nothing half-written is left",
            file=sys.stderr,
        )
        return 130
    except Exception as e:  # not foreseen: one line, and how to see more
        if args.debug:
            raise
        print(
            f"seqmeta {args.verb}: error: {type(e).__name__}: {e} (rerun with --debug for the traceback; if the "
            "input looks right, please report it)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
