"""The Hugging Face Hub: publish models with a card made from their measured results; datasets by config.

    seqmeta push --model outputs/train/model --repo-id you/cheetah-vel-prompt-dt
    seqmeta push --dataset data/cheetah-vel-expert --repo-id you/cheetah-vel-expert
    seqmeta pull --dataset you/cheetah-vel-expert --output-dir data/cheetah-vel-expert

    model = seqmeta.load_model("you/cheetah-vel-prompt-dt", revision="main")

A model push is one commit of a staging copy: ``config.json``, ``model.safetensors``, the resolved
run config(s), ``eval_results.json`` files, plots, and a ``README.md`` rendered from
``templates/model_card.md.j2`` through ``huggingface_hub.ModelCard``; the card's metadata (model-index
included) is checked before anything is uploaded. A dataset push is one commit too: one Parquet
config per quality level (``load_dataset(repo, "expert")``), ``seqmeta.json`` and the dataset card.
The local folders are only read: a failed push leaves them as they were, and pushing again is safe.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from seqmeta.errors import SeqmetaError

MODEL_FILE_PATTERNS = (
    "config.json",
    "model.safetensors",
    "*_config.yaml",
    "finetune_data.json",
    "train_data.json",
    "eval_results.json",
    "demos/*",
    "*.png",
    "*.mp4",
)
RESULTS_FILE = "eval_results.json"
PLOT_TITLES = {
    "adaptation_curve.png": "Score vs. number of prompt trajectories, held-out tasks",
    "per_task.png": "Return per held-out task",
    "training_curve.png": "Training and held-out losses",
}
CONFIG_FILES = ("train_config.yaml", "finetune_config.yaml", "self_supervise_config.yaml")


class HubError(SeqmetaError, RuntimeError):
    """A push or pull that the Hub (or the network) did not complete; local files are unchanged."""


class CardError(SeqmetaError, ValueError):
    """A model card whose metadata would not validate on the Hub; it is refused before any upload."""


# ---- model cards --------------------------------------------------------------------------------


def _results_entry(path: Path, name: str) -> dict[str, Any]:
    from seqmeta.results import load_results
    from seqmeta.tasks.family import index_ranges

    r = load_results(path)
    p = r["protocol"]
    own = p["prompt_source"] == "own"
    source = {
        "own": "the agent's own earlier episodes in the task (round r is prompted with rounds < r)",
        "ood": "expert episodes of *another* task (a misleading prompt)",
    }.get(p["prompt_source"], f"{p['prompt_source']} episodes of the task from the offline data")
    shape = p.get("prompt_shape", [None, None])
    tasks = [t["task"] for t in r["settings"][0]["per_task"]]
    prompts = f"prompts from {source}; each episode's prompt is {shape[0]} segment(s) of {shape[1]} steps cut from them"
    if [s["prompt_trajectories"] for s in r["settings"]] == [0]:
        prompts = "no prompt"
    text = (
        f"{prompts}; "
        f"target return rule `{p['target_return']}`; {p['episodes']} episodes per task and setting; "
        f"evaluation seed {p['seed']}; tasks `{p['tasks']}` ({index_ranges(tasks)})."
    )
    flags = [
        f"--tasks {p['tasks']}",
        f"--prompt-source {p['prompt_source']}",
        f"--prompt-trajectories {','.join(str(s['prompt_trajectories']) for s in r['settings'])}",
        f"--target-return {p['target_return']}",
        f"--episodes {p['episodes']}",
        f"--seed {p['seed']}",
    ]
    return r | {
        "file": name,
        "eval_flags": " ".join(flags),
        "most_demos": max(s["prompt_trajectories"] for s in r["settings"]) if p["prompt_source"] != "own" else 0,
        "title": f"{r['family']}, held-out tasks, "
        + ("own exploration" if own else "no prompt" if prompts == "no prompt" else f"{p['prompt_source']} prompts"),
        "protocol_text": text,
        "setting_header": "exploration round" if own else "prompt trajectories",
        "tasks": tasks,
        "has_success": any(st.get("success_rate") is not None for st in r["settings"]),
    }


def _model_index(results: list[dict[str, Any]], family, task_set) -> list:
    from huggingface_hub import EvalResult

    from seqmeta.tasks.family import index_ranges

    entries = []
    for r in results:
        what = "round" if r["protocol"]["prompt_source"] == "own" else "prompt trajectories"
        for s in r["settings"]:
            common = dict(
                task_type="reinforcement-learning",
                task_name="In-context adaptation to held-out tasks",
                dataset_type=family.env_id,
                dataset_name=f"{family.name} ({task_set.name}), held-out tasks {index_ranges(r['tasks'])}",
                dataset_config=task_set.name,
                dataset_split="test",
            )
            label = f"{r['protocol']['prompt_source']} prompts, {what} {s['prompt_trajectories']}"
            if s["prompt_trajectories"] == 0 and r["protocol"]["prompt_source"] != "own":
                label = "no prompt"
            entries.append(
                EvalResult(
                    **common,
                    metric_type="mean_reward",
                    metric_name=f"mean return, {label}",
                    metric_value=round(s["mean_return"], 3),
                )
            )
            if s["normalized"] is not None:
                entries.append(
                    EvalResult(
                        **common,
                        metric_type="normalized_score",
                        metric_name=f"normalized score, {label}",
                        metric_value=round(s["normalized"], 2),
                    )
                )
            if s.get("success_rate") is not None:
                entries.append(
                    EvalResult(
                        **common,
                        metric_type="success_rate",
                        metric_name=f"success rate (%), {label}",
                        metric_value=round(100 * s["success_rate"], 1),
                    )
                )
    return entries


def render_model_card(folder: str | Path, repo_id: str, dataset_repo: str | None = None):
    """The ``huggingface_hub.ModelCard`` for the model in ``folder`` (results from its eval_results.json files)."""
    from huggingface_hub import ModelCard, ModelCardData

    from seqmeta import __version__
    from seqmeta.configs import read_yaml
    from seqmeta.models import load_model_config
    from seqmeta.tasks import get_family
    from seqmeta.tasks.family import index_ranges

    folder = Path(folder)
    cfg = load_model_config(folder)
    family = get_family(cfg.family)
    task_set = family.task_set(cfg.task_set or None)
    results = [_results_entry(p, p.relative_to(folder).as_posix()) for p in sorted(folder.rglob(RESULTS_FILE))]
    plots = [
        {"file": p.relative_to(folder).as_posix(), "title": PLOT_TITLES.get(p.name, p.stem.replace("_", " "))}
        for p in sorted(folder.rglob("*.png"))
    ]
    run_config_file = next((name for name in CONFIG_FILES if (folder / name).exists()), None)
    run_config = (folder / run_config_file).read_text() if run_config_file else ""
    run_values = read_yaml(folder / run_config_file) if run_config else {}
    reproduce = _reproduce_commands(folder, run_config_file, run_values)
    tags = ["seqmeta", "decision-transformer", "offline-meta-rl", "in-context-rl", family.name]
    if cfg.use_prompt:
        tags.insert(2, "prompt-dt")
    card_data = ModelCardData(
        library_name="seqmeta",
        pipeline_tag="reinforcement-learning",
        license="apache-2.0",
        tags=tags,
        datasets=[dataset_repo] if dataset_repo else None,
        model_name=repo_id.split("/")[-1],
        eval_results=_model_index(results, family, task_set) or None,
    )
    template = resources.files("seqmeta") / "templates" / "model_card.md.j2"
    num_parameters = _count_parameters(folder / "model.safetensors")
    train_data = json.loads((folder / "train_data.json").read_text()) if (folder / "train_data.json").is_file() else {}
    if train_data.get("family") != family.name or train_data.get("task_set") != task_set.name:
        train_data = {}  # written for another family or task set than config.json names: not this model's
    train_tasks = train_data.get("train_tasks") or list(task_set.train_indices)
    seen = _what_the_model_saw(folder, task_set, train_tasks)
    demos_needed = max(r["most_demos"] for r in results) if results else 4 if cfg.use_prompt else 0
    target = "float(demos.episodes['return'].max())" if cfg.use_prompt else "0.0"
    if results and not cfg.use_prompt:  # the target the evaluation used
        target = f"{results[0]['settings'][0]['per_task'][0]['target_return']:.4g}"
    card = ModelCard.from_template(
        card_data,
        template_str=template.read_text(),
        repo_id=repo_id,
        model_name=repo_id.split("/")[-1],
        family=family,
        task_set=task_set,
        cfg=cfg,
        num_parameters=f"{num_parameters:,}",
        dataset_repo=dataset_repo,
        results=results,
        plots=plots,
        reproduce=reproduce,
        run_config=run_config,
        run_config_file=run_config_file,
        target_return=target,
        seen=seen,
        train_tasks=train_tasks,
        ranges=index_ranges,
        task_rows=lambda indices: [{"index": t, "text": task_set.describe(t)} for t in indices],
        train_data=train_data,
        learned_from=_learned_from(run_values),
        demos_needed=demos_needed,
        has_demos=(folder / "demos" / "seqmeta.json").is_file(),
        version=__version__,
    )
    check_card(card, folder)
    return card


def _learned_from(run_values: dict[str, Any]) -> str:
    """Which of the training episodes the model learned its actions and its prompts from, when a quality
    option of its run narrowed them (else every training episode served for both)."""
    parts = []
    if run_values.get("segment_quality"):
        parts.append(f"actions learned from its {run_values['segment_quality']} episodes only (`segment_quality`)")
    if run_values.get("use_prompt", True) and run_values.get("prompt_quality"):
        parts.append(f"prompts cut from its {run_values['prompt_quality']} episodes (`prompt_quality`)")
    if run_values.get("use_prompt", True) and run_values.get("no_prompt_quality"):
        parts.append(
            f"with its prompt hidden, it imitates its {run_values['no_prompt_quality']} episodes (`no_prompt_quality`)"
        )
    return "; ".join(parts)


def _what_the_model_saw(folder: Path, task_set, train_tasks) -> str:
    """What the card may say of the held-out tasks: unseen, or which of them training saw."""
    test = list(task_set.test_indices)
    overlap = sorted(set(test) & set(train_tasks))
    notes = []
    if overlap:
        notes.append(
            f"tasks {', '.join(map(str, overlap))} are also training tasks (this task set trains and tests on them)"
        )
    finetune_file = folder / "finetune_data.json"
    if finetune_file.is_file():
        tuned = sorted(int(t) for t in json.loads(finetune_file.read_text()).get("episodes", {}))
        notes.append(
            f"the model was fine-tuned on episodes of tasks {', '.join(map(str, tuned))} (`finetune_data.json`)"
        )
    return "; ".join(notes) if notes else "never seen in training"


def _count_parameters(path: Path) -> int:
    """Parameters in a safetensors file, from its header (no weights are read)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())  # noqa: SIM118 (a safe_open, not a dict)


def _reproduce_commands(folder: Path, config_file: str | None, config: dict[str, Any]) -> list[str]:
    """The commands that made the model: the data's collection command (when known) and the run."""
    if not config_file:
        return []
    lines = []
    seen_file, meta_file = folder / "train_data.json", Path(str(config.get("data", ""))) / "seqmeta.json"
    if seen_file.is_file():  # written by the trainer: the data need not be on this machine
        command = json.loads(seen_file.read_text()).get("collection_command")
    elif meta_file.is_file():
        command = json.loads(meta_file.read_text()).get("collection", {}).get("command")
    else:
        command = None
    if command:
        lines.append(command)
    verb = {"train_config.yaml": "train", "finetune_config.yaml": "finetune"}.get(config_file, "self-supervise")
    lines.append(f"seqmeta {verb} --config {config_file}  # this repository's file; set --data to your copy")
    return lines


def check_card(card, folder: Path | None = None) -> None:
    """Refuse a card the Hub would reject (or that cites files it does not ship): raises ``CardError``."""
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    try:
        parsed = ModelCard(str(card))
    except Exception as e:  # the YAML header does not parse
        raise CardError(f"the card's metadata does not parse: {e}") from e
    data = parsed.data.to_dict()
    problems = []
    if data.get("library_name") != "seqmeta":
        problems.append("library_name must be seqmeta")
    if data.get("pipeline_tag") != "reinforcement-learning":
        problems.append("pipeline_tag must be reinforcement-learning")
    if "model-index" in data:
        try:
            _, results = model_index_to_eval_results(data["model-index"])
        except (KeyError, TypeError, ValueError) as e:
            problems.append(f"model-index is malformed ({e})")
            results = []
        for r in results:
            value = r.metric_value
            if not isinstance(value, int | float) or not math.isfinite(value):
                problems.append(f"model-index metric {r.metric_name!r} is {value!r}, not a finite number")
    if folder is not None:
        for line in str(card).splitlines():
            if line.startswith("![") and "](" in line:
                target = line.split("](", 1)[1].rstrip(")")
                if not (Path(folder) / target).is_file():
                    problems.append(f"the card shows {target}, which is not in {folder}")
    if problems:
        raise CardError("the model card would not validate: " + "; ".join(problems) + " (nothing was uploaded)")


# ---- pushing ------------------------------------------------------------------------------------


def _stage_model(folder: Path, stage: Path) -> None:
    """Copy what a model repository holds (see ``MODEL_FILE_PATTERNS``) from ``folder`` to ``stage``.

    A symbolic link among those files (or on the way to them) is refused: a push publishes the
    folder's own files, never what a link points to."""
    chosen = [path for pattern in MODEL_FILE_PATTERNS for path in folder.glob(pattern)]
    for path in folder.rglob(RESULTS_FILE):  # results in subfolders come with their plots
        if path.parent != folder:
            chosen += [path, *path.parent.glob("*.png"), *path.parent.glob("*.mp4")]
    for path in chosen:
        relative = path.relative_to(folder)
        links = [
            p for p in (folder / Path(*relative.parts[: i + 1]) for i in range(len(relative.parts))) if p.is_symlink()
        ]
        if links or not path.is_file():
            raise HubError(
                f"{path} is {'a symbolic link' if links else 'not a regular file'}; a push publishes the folder's own "
                "files only: replace it with the file itself, or move it out of the folder (nothing was uploaded)"
            )
        (stage / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, stage / relative)


def push_model(
    folder,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    dataset_repo: str | None = None,
    token: str | None = None,
    model=None,
) -> str:
    """Publish the model folder (``save_pretrained`` output with its configs, results, plots) in one commit.

    With ``model`` (or a model given as ``folder``), its in-memory weights and config are published
    instead of the folder's (the folder, default the one the model was loaded from, still gives the
    run config, results and plots). Returns the commit URL.
    """
    loaded_revision = None
    if folder is not None and not isinstance(folder, str | Path):  # a model object
        model, loaded_from = folder, getattr(folder, "name_or_path", "")
        folder = loaded_from or None
        loaded_revision = getattr(model, "hub_revision", None)  # set by seqmeta.load_model
    if folder is not None:
        from seqmeta.pretrained import names_hub_repo, resolve_shipped

        folder = resolve_shipped(str(folder))  # a shipped model, by name
        if not Path(folder).expanduser().exists() and not names_hub_repo(folder):
            raise HubError(
                f"no model folder at {folder}: give a `seqmeta train` model/ folder, a Hub id org/name or a shipped "
                "model's name (`seqmeta families` names them)"
            )
    with tempfile.TemporaryDirectory(prefix="seqmeta-push-") as tmp:
        stage = Path(tmp) / "stage"
        stage.mkdir()
        if folder is not None and not Path(folder).expanduser().is_dir() and names_hub_repo(str(folder)):
            # A Hub model: its results and plots come along, from the commit it was loaded from.
            folder = pull_model(str(folder), Path(tmp) / "pulled", revision=loaded_revision)
        folder = Path(folder) if folder else None
        if model is None and (folder is None or not (folder / "config.json").is_file()):
            raise HubError(f"{folder} is not a model folder (no config.json): pass a `seqmeta train` model/ folder")
        if folder is not None:
            _stage_model(folder, stage)
        if model is not None:
            model.save_pretrained(stage)
        if not (stage / "model.safetensors").is_file():
            raise HubError(f"{folder} holds no model.safetensors: only safetensors weights are published")
        render_model_card(stage, repo_id, dataset_repo).save(stage / "README.md")
        message = commit_message or f"Upload {repo_id} with seqmeta"
        return _upload(stage, repo_id, "model", private, revision, message, token, source=folder or "the model")


def _upload(stage: Path, repo_id: str, repo_type: str, private, revision, message, token, source) -> str:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(stage), repo_id=repo_id, repo_type=repo_type, revision=revision, commit_message=message
        )
    except Exception as e:  # network errors, HTTP errors: the local folder was only read
        raise HubError(
            f"pushing {source} to {repo_id} failed: {type(e).__name__}: {e}. {source} is unchanged; "
            f"run the same push again (it is idempotent)"
        ) from e
    return str(getattr(info, "commit_url", info))


def push_dataset(
    path: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Publish a seqmeta dataset folder: one Parquet config per quality level, seqmeta.json, the card."""
    from seqmeta.data.dataset import META_FILE, load_trajectories

    data = load_trajectories(path)
    with tempfile.TemporaryDirectory(prefix="seqmeta-push-") as tmp:
        stage = Path(tmp)
        qualities = list(data.meta.qualities)
        column = np.asarray(data.hf.data.table.column("quality").to_pylist(), dtype=object)
        for q in qualities:
            rows = np.flatnonzero(column == q)
            data.hf.select(rows).to_parquet(str(stage / q / "train-00000-of-00001.parquet"))
        shutil.copy2(Path(path) / META_FILE, stage / META_FILE)
        (stage / "README.md").write_text(_dataset_card(Path(path) / "README.md", qualities))
        message = commit_message or f"Upload {data.meta.family} dataset with seqmeta"
        return _upload(stage, repo_id, "dataset", private, revision, message, token, source=Path(path))


def _dataset_card(local_card: Path, qualities: list[str]) -> str:
    """The folder's card with a ``configs:`` entry per quality level added to its metadata."""
    from huggingface_hub import DatasetCard

    card = DatasetCard(local_card.read_text())
    card.data.configs = [
        {"config_name": q, "data_files": [{"split": "train", "path": f"{q}/*.parquet"}], "default": i == 0}
        for i, q in enumerate(qualities)
    ]
    return str(card)


def pull_model(repo_id: str, out: str | Path, *, revision: str | None = None, overwrite: bool = False) -> Path:
    """Download a pushed model repository into a local model folder: the same files, byte for byte
    (``overwrite`` replaces a folder seqmeta wrote, only once the new one is complete)."""
    from huggingface_hub import snapshot_download

    from seqmeta.io import atomic_directory

    try:
        snapshot = Path(snapshot_download(repo_id, revision=revision))
    except Exception as e:
        raise HubError(
            f"downloading {repo_id} failed: {type(e).__name__}: {e}; {out} is unchanged: check the repository id "
            "and the connection and run the same command again (files already downloaded are reused)"
        ) from e
    if not (snapshot / "config.json").is_file():
        raise HubError(f"{repo_id} holds no config.json: it is not a model repository (a dataset? use --dataset)")
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for path in sorted(snapshot.rglob("*")):
            if path.is_file() and not path.relative_to(snapshot).as_posix().startswith("."):
                (tmp / path.relative_to(snapshot)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, tmp / path.relative_to(snapshot))  # the cache links to blobs: copy their bytes
    return Path(out)


def pull_dataset(
    repo_id: str,
    out: str | Path,
    *,
    qualities: list[str] | None = None,
    revision: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Download a pushed seqmeta dataset (all quality levels, or some) into a local dataset folder
    (``overwrite`` replaces one that seqmeta wrote, only once the new one is complete)."""
    import datasets
    from huggingface_hub import hf_hub_download

    from seqmeta.data.dataset import META_FILE, TrajectoryDataset, save_dataset_folder
    from seqmeta.data.meta import DatasetMeta
    from seqmeta.io import atomic_directory

    try:
        meta = DatasetMeta.load(
            Path(hf_hub_download(repo_id, META_FILE, repo_type="dataset", revision=revision)).parent
        )
        chosen = qualities or list(meta.qualities)
        unknown = [q for q in chosen if q not in meta.qualities]
        if unknown:
            raise HubError(f"{repo_id} has no quality level {unknown}; it has {list(meta.qualities)}")
        parts = [datasets.load_dataset(repo_id, q, split="train", revision=revision) for q in chosen]
    except HubError:
        raise
    except Exception as e:
        raise HubError(
            f"downloading {repo_id} failed: {type(e).__name__}: {e}; {out} is unchanged: check the "
            "connection and run the same command again (files already downloaded are reused)"
        ) from e
    ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    ds = ds.sort("episode_index")  # qualities interleave in episode order in the original
    if qualities:  # a subset: its counts, not the whole repository's
        meta.qualities = {q: meta.qualities[q] for q in chosen}
        episodes = np.asarray(ds["episode_index"])
        starts = np.flatnonzero(np.diff(episodes, prepend=-1))
        meta.num_episodes, meta.num_steps = len(starts), len(ds)
        counts = np.bincount(np.asarray(ds["task_index"])[starts], minlength=len(meta.tasks))
        for t in meta.tasks:
            t["num_episodes"] = int(counts[t["task_index"]])
    with atomic_directory(out, overwrite=overwrite) as tmp:
        save_dataset_folder(ds, meta, tmp)
        card = hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=revision)
        shutil.copy2(card, tmp / "README.md")
    TrajectoryDataset.load(out)  # checks what arrived
    return Path(out)
