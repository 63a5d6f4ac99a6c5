"""Importers: Minari datasets and D4RL-style HDF5 files become seqmeta datasets.

Both produce ``Episodes`` and go through the same validation and atomic writer as collection.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seqmeta.data.dataset import TrajectoryDataset, load_trajectories, write_dataset
from seqmeta.data.episodes import Episodes
from seqmeta.errors import ConfigError, DatasetFormatError, DatasetNotFoundError, TaskSelectionError, import_extra
from seqmeta.tasks import TaskFamily, get_family

# D4RL names first; MACAW's per-task files use the aliases on the right.
HDF5_KEYS = {
    "observations": ("observations", "obs"),
    "actions": ("actions",),
    "rewards": ("rewards",),
    "terminals": ("terminals", "dones"),
}


def _read_hdf5(path: Path) -> dict[str, np.ndarray]:
    h5py = import_extra("h5py", "hdf5", "reading HDF5 files (seqmeta import-hdf5)")

    if not path.is_file():
        raise DatasetNotFoundError(f"HDF5 file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            arrays = {}
            for key, names in HDF5_KEYS.items():
                name = next((n for n in names if n in f), None)
                if name is None:
                    raise DatasetFormatError(
                        f"{path}: no {key!r} dataset (looked for {list(names)}; the file has "
                        f"{sorted(f.keys())}). D4RL-style files need observations, actions, rewards, "
                        f"terminals and optionally timeouts"
                    )
                arrays[key] = f[name][()]
            arrays["timeouts"] = f["timeouts"][()] if "timeouts" in f else np.zeros(len(arrays["rewards"]), bool)
    except OSError as e:
        raise DatasetFormatError(
            f"{path}: cannot be read as HDF5 ({e}); the file is truncated or not HDF5, download or write it again"
        ) from e
    return arrays


def hdf5_episodes(path: str | os.PathLike, task_index: int) -> list[dict[str, Any]]:
    """Split one task's flat D4RL arrays into episodes at terminals | timeouts.

    Steps after the last boundary form a final episode marked truncated.
    """
    path = Path(path)
    a = _read_hdf5(path)
    n = len(a["rewards"])
    if n == 0:
        raise DatasetFormatError(f"{path}: the file holds no steps")
    for key in ("observations", "actions", "terminals", "timeouts"):
        if len(a[key]) != n:
            raise DatasetFormatError(
                f"{path}: {key} has {len(a[key])} rows but rewards has {n}; every step needs one of "
                f"each (the file is truncated or inconsistent)"
            )
    terminals = a["terminals"].astype(bool).reshape(n)
    timeouts = a["timeouts"].astype(bool).reshape(n)
    ends = np.flatnonzero(terminals | timeouts) + 1
    if len(ends) == 0 or ends[-1] != n:
        ends = np.append(ends, n)
        timeouts = timeouts.copy()
        timeouts[-1] = True  # the data stops mid-episode: a truncation, not a terminal state
    starts = np.concatenate([[0], ends[:-1]])
    return [
        {
            "observations": a["observations"][s:e],
            "actions": a["actions"][s:e],
            "rewards": a["rewards"].reshape(n)[s:e],
            "terminated": terminals[s:e],
            "truncated": timeouts[s:e] & ~terminals[s:e],
            "task_index": task_index,
        }
        for s, e in zip(starts, ends, strict=True)
    ]


def import_hdf5(
    files: Mapping[int, str | os.PathLike] | Sequence[tuple[int, str | os.PathLike]],
    family: str | TaskFamily,
    out: str | os.PathLike,
    task_set: str | None = None,
    quality: str = "imported",
    overwrite: bool = False,
    command: str = "",
) -> TrajectoryDataset:
    """D4RL-style HDF5 files of known tasks (``{task_index: path}``, or ``(task_index, path)`` pairs
    when a task has several files) into one seqmeta dataset."""
    family = get_family(family) if isinstance(family, str) else family
    pairs = sorted(files.items() if isinstance(files, Mapping) else [(int(t), p) for t, p in files])
    paths = [str(p) for _, p in pairs]
    if len(set(paths)) != len(paths):
        twice = sorted({p for p in paths if paths.count(p) > 1})
        raise ConfigError(f"{twice[0]} is given twice; name each file once (with the task it belongs to)")
    family.task_set(task_set).select(sorted({t for t, _ in pairs}))  # validates the task indices
    episodes = []
    for task_index, path in pairs:
        task_episodes = hdf5_episodes(path, task_index)
        Episodes.from_list(task_episodes, quality).validate(family, len(family.task_set(task_set)), str(path))
        episodes += task_episodes
    write_dataset(
        Episodes.from_list(episodes, quality),
        family,
        out,
        task_set,
        behavior={quality: f"imported from HDF5 ({len(pairs)} files)"},
        command=command,
        overwrite=overwrite,
    )
    return load_trajectories(out)


def _match_task(family: TaskFamily, task_set: str | None, kwargs: dict[str, Any]) -> int | None:
    """Index of the task whose params equal the env kwargs a Minari dataset recorded."""
    for i, params in enumerate(family.task_set(task_set).params):
        if set(params) <= set(kwargs) and all(
            np.allclose(np.asarray(v, dtype=float), np.asarray(kwargs[k], dtype=float)) for k, v in params.items()
        ):
            return i
    return None


def import_minari(
    dataset_ids: Sequence[str],
    family: str | TaskFamily,
    out: str | os.PathLike,
    task_set: str | None = None,
    task_indices: Sequence[int] | None = None,
    quality: str | None = None,
    overwrite: bool = False,
    command: str = "",
) -> TrajectoryDataset:
    """Minari datasets (one task each) into one seqmeta dataset.

    A dataset recorded on a seqmeta env id keeps its task parameters in ``env_spec.kwargs``; its
    task is found from them. Otherwise give ``task_indices``, one per dataset. ``quality`` defaults
    to the dataset name without its version (``.../expert-v0`` -> ``expert``).
    """
    minari = import_extra("minari", "minari", "importing Minari datasets")

    family = get_family(family) if isinstance(family, str) else family
    if task_indices is not None and len(task_indices) != len(dataset_ids):
        raise TaskSelectionError(
            f"{len(task_indices)} task indices for {len(dataset_ids)} Minari datasets; give one per dataset"
        )
    episodes, qualities, behavior = [], [], {}
    for k, dataset_id in enumerate(dataset_ids):
        try:
            ds = minari.load_dataset(dataset_id)
        except (FileNotFoundError, ValueError) as e:
            raise DatasetNotFoundError(
                f"Minari dataset {dataset_id!r} is not available locally ({e}); list local ones with "
                f"`minari list local`"
            ) from e
        spec = ds.spec.env_spec
        if task_indices is not None:
            task = int(task_indices[k])
        else:
            task = _match_task(family, task_set, spec.kwargs) if spec and spec.id == family.env_id else None
            if task is None:
                raise TaskSelectionError(
                    f"Minari dataset {dataset_id!r} was recorded on {spec.id if spec else 'an unknown env'} "
                    f"with kwargs {spec.kwargs if spec else {}}, which match no {family.name} task; pass "
                    f"task_indices (--task-index) to say which task it is"
                )
        q = quality or dataset_id.rsplit("/", 1)[-1].rsplit("-v", 1)[0]
        behavior[q] = f"imported from Minari {dataset_id}"
        for ep in ds.iterate_episodes():
            obs = np.asarray(ep.observations)
            episodes.append(
                {
                    "observations": obs[: len(ep.actions)],  # Minari stores T+1 observations
                    "actions": ep.actions,
                    "rewards": ep.rewards,
                    "terminated": ep.terminations,
                    "truncated": ep.truncations,
                    "task_index": task,
                }
            )
            qualities.append(q)
    write_dataset(
        Episodes.from_list(episodes, qualities),
        family,
        out,
        task_set,
        behavior=behavior,
        command=command,
        overwrite=overwrite,
    )
    return load_trajectories(out)
