"""The seqmeta trajectory dataset: a Hugging Face ``datasets`` folder, one row per step.

On disk (``datasets.load_from_disk(folder)`` opens it)::

    folder/
      data-*.arrow, dataset_info.json, state.json    the steps (``Dataset.save_to_disk``)
      seqmeta.json                                   family, task table, qualities, normalization stats
      README.md                                      dataset card

Columns: episode_index, task_index, timestep, observation, action, reward, terminated, truncated,
return_to_go, quality. Episodes are contiguous and in order, so an episode is a row range.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import datasets
import jinja2
import numpy as np
import pyarrow as pa

from seqmeta import __version__
from seqmeta.data.episodes import Episodes
from seqmeta.data.meta import META_FILE, DatasetMeta
from seqmeta.errors import DatasetFormatError, DatasetNotFoundError, TaskSelectionError
from seqmeta.io import atomic_directory, atomic_write_json
from seqmeta.tasks import TaskFamily, TaskSet, get_family

logger = logging.getLogger(__name__)

COLUMNS = (
    "episode_index",
    "task_index",
    "timestep",
    "observation",
    "action",
    "reward",
    "terminated",
    "truncated",
    "return_to_go",
    "quality",
)


_EXTRA_COLUMN_MEANINGS = {
    "reward_predicted": "true where `reward` is a prediction (the model's reward head), not the environment's",
    "success": "the env's info['success'] at this step (Meta-World: the task is solved; an episode succeeds if any "
    "step does)",
    "trial_episode": "the episode's place in its trial: consecutive episodes in one env by a behavior that "
    "remembers the earlier ones (0: a trial's first episode; 0 everywhere for behaviors without memory)",
}


def features(obs_dim: int, act_dim: int) -> datasets.Features:
    vector = lambda n: datasets.List(datasets.Value("float32"), length=n)  # noqa: E731
    return datasets.Features(
        {
            "episode_index": datasets.Value("int64"),
            "task_index": datasets.Value("int64"),
            "timestep": datasets.Value("int64"),
            "observation": vector(obs_dim),
            "action": vector(act_dim),
            "reward": datasets.Value("float32"),
            "terminated": datasets.Value("bool"),
            "truncated": datasets.Value("bool"),
            "return_to_go": datasets.Value("float32"),
            "quality": datasets.Value("string"),
        }
    )


def to_hf_dataset(episodes: Episodes, extra_columns: dict[str, np.ndarray] | None = None) -> datasets.Dataset:
    """Columns straight from numpy into Arrow (no per-row Python); ``extra_columns`` are per-step
    bool, integer or float columns added after the standard ones (e.g. ``reward_predicted``)."""
    n_steps, obs_dim = episodes.observations.shape
    act_dim = episodes.actions.shape[1]
    episode_index = np.repeat(np.arange(episodes.num_episodes), episodes.lengths)
    timestep = np.arange(n_steps) - np.repeat(episodes.starts, episodes.lengths)
    quality = np.repeat(episodes.quality.astype(str), episodes.lengths)
    table = pa.table(
        {
            "episode_index": episode_index,
            "task_index": np.repeat(episodes.task_index, episodes.lengths),
            "timestep": timestep,
            "observation": pa.FixedSizeListArray.from_arrays(episodes.observations.ravel(), obs_dim),
            "action": pa.FixedSizeListArray.from_arrays(episodes.actions.ravel(), act_dim),
            "reward": episodes.rewards.astype(np.float32),
            "terminated": episodes.terminated,
            "truncated": episodes.truncated,
            "return_to_go": episodes.returns_to_go(),
            "quality": pa.array(quality, pa.string()),
        }
    )
    wanted = features(obs_dim, act_dim)
    for name, values in (extra_columns or {}).items():
        values = np.asarray(values)
        if values.shape != (n_steps,):
            raise ValueError(f"extra column {name!r} has shape {values.shape}; it needs one value per step ({n_steps})")
        dtype = "bool" if values.dtype == bool else "int64" if values.dtype.kind in "iu" else "float32"
        table = table.append_column(name, pa.array(values.astype(dtype)))
        wanted[name] = datasets.Value(dtype)
    ds = datasets.Dataset(datasets.table.InMemoryTable(table))
    return ds.cast(wanted) if ds.features != wanted else ds


def normalization_stats(episodes: Episodes) -> dict[str, Any]:
    obs = episodes.observations.astype(np.float64)
    returns = episodes.episode_returns
    return {
        "observation_mean": obs.mean(0).tolist(),
        "observation_std": np.maximum(obs.std(0), 1e-6).tolist(),
        "action_min": episodes.actions.min(0).tolist(),
        "action_max": episodes.actions.max(0).tolist(),
        "reward_mean": float(episodes.rewards.mean()),
        "reward_std": float(episodes.rewards.std()),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
        "return_mean": float(returns.mean()),
        "return_scale": float(max(np.abs(returns).max(), 1e-6)),
        "episode_length_mean": float(episodes.lengths.mean()),
    }


def _training_part(episodes: Episodes, task_set: TaskSet) -> Episodes:
    """The episodes of the task set's training tasks (all episodes when none are): normalization
    stats come from them, so nothing a model is evaluated on leaks into how it sees its inputs."""
    train = np.isin(episodes.task_index, list(task_set.train_indices))
    return episodes.take(np.flatnonzero(train)) if train.any() else episodes


def write_dataset(
    episodes: Episodes,
    family: TaskFamily,
    out: str | os.PathLike,
    task_set: str | TaskSet | None = None,
    behavior: dict[str, str] | None = None,
    command: str = "",
    overwrite: bool = False,
    extra_columns: dict[str, np.ndarray] | None = None,
    behavior_sees_task: bool | None = None,
) -> Path:
    """Validate ``episodes`` and write them as a seqmeta dataset folder, atomically.

    ``behavior`` maps each quality to a description of the policy that produced it, and
    ``behavior_sees_task`` says whether that policy saw the task parameter (None: unknown);
    ``extra_columns`` adds per-step columns (see ``to_hf_dataset``). ``task_set`` is the name of one of
    the family's task lists, or a ``TaskSet`` of the user's own (its parameters and split are stored).
    """
    task_set_obj = task_set if isinstance(task_set, TaskSet) else family.task_set(task_set)
    episodes.validate(family, len(task_set_obj))
    if episodes.trial_episode.any():  # trials (a behavior with memory) are kept: prompts may be cut from them
        extra_columns = {**(extra_columns or {}), "trial_episode": np.repeat(episodes.trial_episode, episodes.lengths)}
    if episodes.success is not None:
        extra_columns = {**(extra_columns or {}), "success": episodes.success.astype(bool)}
    ds = to_hf_dataset(episodes, extra_columns)
    counts = np.bincount(episodes.task_index, minlength=len(task_set_obj))
    returns = episodes.episode_returns
    qualities = {}
    for q in dict.fromkeys(episodes.quality.tolist()):
        mask = episodes.quality == q
        qualities[q] = {
            "behavior": (behavior or {}).get(q, "imported"),
            "episodes": int(mask.sum()),
            "mean_return": float(returns[mask].mean()),
        }
    meta = DatasetMeta(
        family=family.name,
        task_set=task_set_obj.name,
        task_set_description=task_set_obj.description,
        env_id=family.env_id,
        horizon=family.horizon,
        observation_dim=int(episodes.observations.shape[1]),
        action_dim=int(episodes.actions.shape[1]),
        action_low=family.action_space.low.tolist(),
        action_high=family.action_space.high.tolist(),
        num_episodes=episodes.num_episodes,
        num_steps=int(episodes.lengths.sum()),
        tasks=[
            {"task_index": i, "split": task_set_obj.split_of(i), "num_episodes": int(counts[i]), "params": p}
            for i, p in enumerate(task_set_obj.params)
        ],
        qualities=qualities,
        extra_columns={
            name: {"type": str(ds.features[name].dtype), "meaning": _EXTRA_COLUMN_MEANINGS.get(name, "")}
            for name in extra_columns or {}
        },
        stats=normalization_stats(_training_part(episodes, task_set_obj)),
        collection={"command": command, "seqmeta_version": __version__, "behavior_sees_task": behavior_sees_task},
    )
    meta.check(str(out))
    with atomic_directory(out, overwrite=overwrite) as tmp:
        save_dataset_folder(ds, meta, tmp)
        (tmp / "README.md").write_text(render_dataset_card(meta))
    logger.info("wrote %d episodes (%d steps) to %s", meta.num_episodes, meta.num_steps, out)
    return Path(out)


def save_dataset_folder(ds: datasets.Dataset, meta: DatasetMeta, folder: Path) -> None:
    """The steps (``save_to_disk``), then ``seqmeta.json`` with each data file's sha256: a file that
    changes afterwards (bit rot, a partial copy, an edit) is refused when the dataset is loaded."""
    ds.save_to_disk(str(folder))
    meta.checksums = {
        p.name: _sha256(p)
        for p in sorted(Path(folder).iterdir())
        if p.is_file() and p.name != META_FILE and not p.name.startswith(".")  # the folder's marker is not data
    }
    atomic_write_json(Path(folder) / META_FILE, meta.to_json())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_checksums(path: Path, meta: DatasetMeta) -> None:
    for name, expected in meta.checksums.items():
        file = path / name
        if not file.is_file():
            raise DatasetFormatError(f"{path}: data file {name} is missing; the copy is incomplete, re-create it")
        if _sha256(file) != expected:
            raise DatasetFormatError(
                f"{path}: data file {name} changed since it was written (its sha256 differs from seqmeta.json): the "
                "data is damaged or was edited; re-create or re-download the dataset"
            )


def render_dataset_card(meta: DatasetMeta) -> str:
    template = (resources.files("seqmeta") / "templates" / "dataset_card.md.j2").read_text()
    family = get_family(meta.family)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["fmt"] = lambda x: f"{x:.4g}" if isinstance(x, float) else str(x)
    return env.from_string(template).render(meta=meta, family=family, task_set=stored_task_set(meta), columns=COLUMNS)


def stored_task_set(meta: DatasetMeta) -> TaskSet:
    """The task list a dataset was collected on, from its own task table (parameters and split)."""
    tasks = meta.tasks
    description = meta.task_set_description
    if description is None:  # written before the table carried it: the family's own list of that name
        own = get_family(meta.family).task_sets.get(meta.task_set)
        description = own.description if own is not None else ""
    return TaskSet(
        name=meta.task_set,
        params=tuple(t["params"] for t in tasks),
        test_indices=tuple(t["task_index"] for t in tasks if t["split"] == "test"),
        description=description,
    )


@dataclass
class TrajectoryDataset:
    """A loaded seqmeta dataset: the HF dataset, its metadata, and numpy views for fast sampling."""

    hf: datasets.Dataset
    meta: DatasetMeta
    path: Path

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrajectoryDataset:
        path = Path(path)
        if not (path / META_FILE).is_file() or not (path / "state.json").is_file():
            raise DatasetNotFoundError(
                f"{path} is not a complete seqmeta dataset (no {META_FILE} or state.json); create one "
                f"with `seqmeta collect ... --output-dir {path}` or an importer"
            )
        meta = DatasetMeta.load(path)
        _verify_checksums(path, meta)
        try:
            hf = datasets.load_from_disk(str(path))
        except (OSError, pa.ArrowInvalid, ValueError) as e:
            raise DatasetFormatError(
                f"{path}: the Arrow data cannot be read ({e}); the folder is truncated or corrupt, re-create it"
            ) from e
        missing = [c for c in COLUMNS if c not in hf.column_names]
        if missing:
            raise DatasetFormatError(
                f"{path}: missing columns {missing}; a seqmeta dataset has {list(COLUMNS)}. Re-create "
                f"it with `seqmeta collect` or one of the importers"
            )
        dataset = cls(hf=hf, meta=meta, path=path)
        dataset._check_episodes()
        return dataset

    @cached_property
    def family(self) -> TaskFamily:
        return get_family(self.meta.family)

    @cached_property
    def task_set(self) -> TaskSet:
        """The tasks of this dataset (parameters and train/test split), from its task table."""
        return stored_task_set(self.meta)

    def reference_returns(self) -> dict[str, list[float | None]]:
        """Per-task random and expert reference returns of the family, where the dataset's tasks are
        the family's own task list of that name (else None: a user's task list has no references)."""
        own = self.family.task_sets.get(self.meta.task_set)
        if own is None or list(own.params) != list(self.task_set.params):
            return {level: [None] * len(self.task_set) for level in ("random", "expert")}
        return self.family.reference_returns(self.meta.task_set)

    @property
    def stats(self) -> dict[str, Any]:
        return self.meta.stats

    def column(self, name: str) -> np.ndarray:
        """One column as a numpy array (fixed-size list columns as (N, width)); copied once."""
        return self._columns[name]

    @cached_property
    def _columns(self) -> dict[str, np.ndarray]:
        table = self.hf.data.table
        out = {}
        for name in COLUMNS:
            if name == "quality":
                continue
            chunked = table.column(name)
            array = chunked.combine_chunks() if chunked.num_chunks != 1 else chunked.chunk(0)
            if pa.types.is_fixed_size_list(array.type):
                width = array.type.list_size
                out[name] = array.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
            else:
                out[name] = array.to_numpy(zero_copy_only=False)
        return out

    @cached_property
    def episodes(self) -> dict[str, np.ndarray]:
        """Per-episode table: start row, length, task index, return, quality, trial_episode (see
        ``Episodes``; zeros where the dataset has no trials)."""
        episode_index = self.column("episode_index")
        starts = np.flatnonzero(np.diff(episode_index, prepend=-1))
        lengths = np.diff(np.append(starts, len(episode_index)))
        rewards = self.column("reward").astype(np.float64)
        return {
            "start": starts.astype(np.int64),
            "length": lengths.astype(np.int64),
            "task_index": self.column("task_index")[starts],
            "return": np.add.reduceat(rewards, starts) if len(starts) else np.zeros(0),
            "quality": np.asarray(self.hf.data.table.column("quality").take(starts).to_pylist(), dtype=object),
            "trial_episode": self._trial_episode(starts),
        }

    def _trial_episode(self, starts: np.ndarray) -> np.ndarray:
        if "trial_episode" not in self.hf.column_names:
            return np.zeros(len(starts), np.int64)
        values = self.hf.data.table.column("trial_episode").take(starts).to_numpy().astype(np.int64)
        # A trial's episodes are contiguous and numbered 0, 1, ...: episode e at place k > 0 follows place k - 1.
        task = self.column("task_index")[starts]
        follows = values[1:] == 0
        follows |= (values[1:] == values[:-1] + 1) & (task[1:] == task[:-1])
        if len(values) and (values[0] != 0 or not follows.all() or (values < 0).any()):
            raise DatasetFormatError(
                f"{self.path}: the trial_episode column does not number contiguous trials 0, 1, ... of one "
                "task; re-create the dataset with `seqmeta collect`"
            )
        return values

    def best_training_return(self) -> float:
        """The best episode return among the training tasks' episodes (all episodes when none are)."""
        returns = self.episodes["return"]
        train = np.isin(self.episodes["task_index"], list(self.task_set.train_indices))
        return float(returns[train].max() if train.any() else returns.max())

    def first_episodes(self, task: int, n: int, quality: str | None = None, asked_by: str = "") -> list[int]:
        """Rows of ``episodes``: the first ``n`` episodes of ``task`` (of one quality level, if given);
        ``asked_by`` names the option that set ``n``, for the message when there are fewer."""
        ep = self.episodes
        match = ep["task_index"] == task
        if quality is not None:
            match &= ep["quality"] == quality
        rows = np.flatnonzero(match)[:n].tolist()
        if len(rows) < n:
            what = f"{quality} episodes" if quality else "episodes"
            raise TaskSelectionError(
                f"task {task} has {len(rows)} {what} in {self.path}; asked for {n}: ask for fewer"
                f"{f' ({asked_by} {len(rows)})' if asked_by and rows else ''} or collect more "
                f"(`seqmeta collect --tasks {task} --episodes-per-task {n}`)"
            )
        return rows

    def task_episodes(self, task: int, n: int = 1, quality: str | None = "expert") -> list[dict[str, np.ndarray]]:
        """The first ``n`` episodes of ``task`` (of one quality level; None: any) as demos for
        ``seqmeta.evaluate_env`` and ``seqmeta.prompts_from_episodes``: dicts of observations, actions, rewards."""
        out = []
        for row in self.first_episodes(task, n, quality):
            rows = slice(self.episodes["start"][row], self.episodes["start"][row] + self.episodes["length"][row])
            names = (("observations", "observation"), ("actions", "action"), ("rewards", "reward"))
            out.append({key: self.column(column)[rows] for key, column in names})
        return out

    def _check_episodes(self) -> None:
        episode_index = self.column("episode_index")
        if len(episode_index) == 0:
            raise DatasetFormatError(f"{self.path}: the dataset has no steps; re-create it")
        ep = self.episodes
        expected = np.arange(len(episode_index)) - np.repeat(ep["start"], ep["length"])
        ids = episode_index[ep["start"]]
        if (np.diff(ids) <= 0).any() or not np.array_equal(self.column("timestep"), expected):
            raise DatasetFormatError(
                f"{self.path}: episodes are not stored as contiguous, ordered row ranges with timesteps "
                f"0..T-1; re-create the dataset with seqmeta (do not shuffle or filter its rows)"
            )
        meta = self.meta
        widths = {"observation": meta.observation_dim, "action": meta.action_dim}
        for name in ("observation", "action", "reward", "return_to_go"):
            values = self.column(name)
            if name in widths and values.shape[1:] != (widths[name],):
                raise DatasetFormatError(
                    f"{self.path}: {name}s are {values.shape[1:]} wide but seqmeta.json says {widths[name]}; "
                    "re-create it"
                )
            finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
            if not finite.all():
                row = int(np.flatnonzero(~finite)[0])
                raise DatasetFormatError(
                    f"{self.path}: {name} holds NaN or inf at row {row} (episode {int(episode_index[row])}); the data "
                    "is damaged: re-create the dataset, or drop that episode and write it again with seqmeta"
                )
        tasks = self.column("task_index")
        if tasks.min() < 0 or tasks.max() >= len(meta.tasks):
            raise DatasetFormatError(
                f"{self.path}: task index {int(tasks.max() if tasks.max() >= len(meta.tasks) else tasks.min())} is not "
                f"in the task table of {len(meta.tasks)} tasks; re-create the dataset"
            )

    def __len__(self) -> int:
        return len(self.hf)

    def __repr__(self) -> str:
        return (
            f"TrajectoryDataset({self.meta.family}, {self.meta.num_episodes} episodes, "
            f"{self.meta.num_steps} steps, qualities={list(self.meta.qualities)}, path={self.path})"
        )


def load_trajectories(path: str | os.PathLike) -> TrajectoryDataset:
    """Open a seqmeta dataset folder (the output of ``seqmeta collect`` or an importer)."""
    return TrajectoryDataset.load(path)
