"""A dataset's metadata (``seqmeta.json``) as one typed record with one loader, which checks it.

Every module reads a dataset's family, task table, qualities and normalization stats through
``DatasetMeta`` (``TrajectoryDataset.meta``), never by string key. ``DatasetMeta.load`` refuses a file
that is not well formed, with the problem and the fix: missing or mistyped fields, widths that
disagree, task indices out of order, non-finite or impossible normalization stats.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqmeta.errors import DatasetFormatError

QUALITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # also a Hub config and a folder name
SHA256 = re.compile(r"[0-9a-f]{64}")
FORMAT_VERSION = 1
META_FILE = "seqmeta.json"
STAT_VECTORS = ("observation_mean", "observation_std", "action_min", "action_max")
STAT_SCALARS = ("reward_mean", "reward_std", "return_min", "return_max", "return_mean", "return_scale")


@dataclass
class DatasetMeta:
    """What ``seqmeta.json`` holds (see the dataset card for each field's meaning)."""

    family: str
    task_set: str
    env_id: str
    horizon: int
    observation_dim: int
    action_dim: int
    action_low: list[float]
    action_high: list[float]
    num_episodes: int
    num_steps: int
    tasks: list[dict[str, Any]]  # {task_index, split, num_episodes, params}
    qualities: dict[str, dict[str, Any]]  # quality -> {behavior, episodes, mean_return}
    stats: dict[str, Any]  # normalization stats (see ``seqmeta.data.dataset.normalization_stats``)
    collection: dict[str, Any] = field(default_factory=dict)  # {command, seqmeta_version, behavior_sees_task}
    extra_columns: dict[str, dict[str, str]] = field(default_factory=dict)
    task_set_description: str | None = None
    checksums: dict[str, str] = field(default_factory=dict)  # data file name -> sha256, recorded at write
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: Any, source: str = "seqmeta.json") -> DatasetMeta:
        """The record from parsed JSON, checked; ``DatasetFormatError`` names the first problem."""
        if not isinstance(raw, dict):
            raise DatasetFormatError(f"{source}: not a JSON object; re-create the dataset with seqmeta")
        if raw.get("format_version") != FORMAT_VERSION:
            raise DatasetFormatError(
                f"{source}: format version {raw.get('format_version')}, this seqmeta reads {FORMAT_VERSION}; "
                "upgrade seqmeta or re-create the dataset"
            )
        known = {f.name: f for f in dataclasses.fields(cls)}
        required = [
            n for n, f in known.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [n for n in required if n not in raw]
        if missing:
            raise DatasetFormatError(f"{source}: missing {missing}; re-create the dataset with seqmeta")
        meta = cls(**{k: v for k, v in raw.items() if k in known})
        meta.check(source)
        return meta

    @classmethod
    def load(cls, folder: str | Path) -> DatasetMeta:
        path = Path(folder) / META_FILE
        try:
            raw = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DatasetFormatError(f"{path} cannot be read as JSON ({e}); re-create the dataset") from None
        return cls.from_json(raw, str(path))

    def check(self, source: str = "seqmeta.json") -> None:
        def bad(what: str) -> DatasetFormatError:
            return DatasetFormatError(f"{source}: {what}; the file is damaged or was edited by hand: re-create it")

        for name, kind in (("family", str), ("task_set", str), ("env_id", str)):
            if not isinstance(getattr(self, name), kind) or not getattr(self, name):
                raise bad(f"{name} must be a non-empty string")
        for name in ("horizon", "observation_dim", "action_dim", "num_episodes", "num_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(f"{name} must be a positive integer, got {value!r}")
        for name in ("action_low", "action_high"):
            if not _finite_list(getattr(self, name), self.action_dim):
                raise bad(f"{name} must be {self.action_dim} finite numbers")
        if any(lo > hi for lo, hi in zip(self.action_low, self.action_high, strict=True)):
            raise bad("action_low exceeds action_high")
        if not isinstance(self.tasks, list) or not self.tasks:
            raise bad("tasks must be a non-empty list")
        for i, task in enumerate(self.tasks):
            if not isinstance(task, dict) or task.get("task_index") != i or task.get("split") not in ("train", "test"):
                raise bad(f"task entry {i} must have task_index {i} and split train or test")
            if not isinstance(task.get("params"), dict):
                raise bad(f"task {i} has no params object")
        if not isinstance(self.qualities, dict) or not self.qualities:
            raise bad("qualities must name at least one quality level")
        unsafe = [q for q in self.qualities if not QUALITY_NAME.fullmatch(q)]
        if unsafe:
            raise DatasetFormatError(
                f"{source}: quality level names {unsafe} are not plain names (letters, digits, '_', '-', '.'; no "
                "path separators): rename them"
            )
        if not isinstance(self.checksums, dict) or not all(
            isinstance(k, str) and QUALITY_NAME.fullmatch(k) and isinstance(v, str) and SHA256.fullmatch(v)
            for k, v in self.checksums.items()
        ):
            raise bad("checksums must map plain file names to sha256 hex digests")
        stats = self.stats if isinstance(self.stats, dict) else {}
        widths = {"observation_mean": self.observation_dim, "observation_std": self.observation_dim}
        widths |= {"action_min": self.action_dim, "action_max": self.action_dim}
        for name in STAT_VECTORS:
            if not _finite_list(stats.get(name), widths[name]):
                raise bad(f"stats.{name} must be {widths[name]} finite numbers")
        for name in STAT_SCALARS:
            value = stats.get(name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise bad(f"stats.{name} must be a finite number, got {value!r}")
        if min(stats["observation_std"]) <= 0 or stats["return_scale"] <= 0 or stats["reward_std"] < 0:
            raise bad("stats hold a non-positive std or scale")

    @property
    def quality_names(self) -> list[str]:
        return list(self.qualities)


def _finite_list(value: Any, length: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in value)
    )
