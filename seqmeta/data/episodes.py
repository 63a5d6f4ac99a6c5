"""Episodes in memory: flat step arrays plus per-episode offsets, the one form every source becomes.

Rollouts, the Minari importer and the HDF5 importer all produce ``Episodes``; ``validate`` checks it
against the family before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seqmeta.errors import DatasetFormatError
from seqmeta.tasks import TaskFamily


@dataclass
class Episodes:
    """Steps of many episodes, concatenated in episode order.

    Attributes:
        observations: (N, obs_dim) float32
        actions: (N, act_dim) float32
        rewards, terminated, truncated: (N,)
        lengths: (E,) steps per episode
        task_index, quality: (E,) per-episode task and behavior quality
        trial_episode: (E,) the episode's place in its trial: a run of consecutive episodes in one
            env by a behavior that remembers the earlier ones (``search``); 0 for every episode of a
            behavior without memory. A trial's episodes are contiguous and in order.
        success: (N,) bool, the env's ``info["success"]`` at each step, for envs that report it
            (Meta-World); else None.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    lengths: np.ndarray
    task_index: np.ndarray
    quality: np.ndarray
    trial_episode: np.ndarray | None = None
    success: np.ndarray | None = None

    def __post_init__(self):
        if self.trial_episode is None:
            self.trial_episode = np.zeros(len(self.lengths), np.int64)

    @property
    def num_episodes(self) -> int:
        return len(self.lengths)

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    @property
    def episode_returns(self) -> np.ndarray:
        return np.add.reduceat(self.rewards.astype(np.float64), self.starts) if len(self.lengths) else np.zeros(0)

    def returns_to_go(self) -> np.ndarray:
        """Undiscounted sum of this and all later rewards of the same episode."""
        prefix = np.concatenate([[0.0], np.cumsum(self.rewards, dtype=np.float64)])
        ends = np.repeat(self.starts + self.lengths, self.lengths)
        return (prefix[ends] - prefix[:-1]).astype(np.float32)

    @classmethod
    def from_list(cls, episodes: Sequence[dict], quality: str | Sequence[str]) -> Episodes:
        """From dicts with observations, actions, rewards, terminated, truncated, task_index."""
        if not episodes:
            raise DatasetFormatError("no episodes were given; a dataset needs at least one episode")
        cat = {
            k: np.concatenate([np.asarray(e[k]) for e in episodes])
            for k in ("observations", "actions", "rewards", "terminated", "truncated")
        }
        qualities = [quality] * len(episodes) if isinstance(quality, str) else list(quality)
        return cls(
            observations=cat["observations"].astype(np.float32),
            actions=cat["actions"].astype(np.float32),
            rewards=cat["rewards"].astype(np.float32),
            terminated=cat["terminated"].astype(bool),
            truncated=cat["truncated"].astype(bool),
            lengths=np.array([len(e["rewards"]) for e in episodes], dtype=np.int64),
            task_index=np.array([e["task_index"] for e in episodes], dtype=np.int64),
            quality=np.array(qualities, dtype=object),
        )

    def take(self, order: np.ndarray) -> Episodes:
        """These episodes in another order (or a subset): ``order`` indexes episodes."""
        order = np.asarray(order, np.int64)
        steps = np.concatenate(
            [np.arange(s, s + n) for s, n in zip(self.starts[order], self.lengths[order], strict=True)]
        )
        return Episodes(
            observations=self.observations[steps],
            actions=self.actions[steps],
            rewards=self.rewards[steps],
            terminated=self.terminated[steps],
            truncated=self.truncated[steps],
            lengths=self.lengths[order],
            task_index=self.task_index[order],
            quality=self.quality[order],
            trial_episode=self.trial_episode[order],
            success=None if self.success is None else self.success[steps],
        )

    @classmethod
    def concatenate(cls, parts: Sequence[Episodes]) -> Episodes:
        """One ``Episodes`` of all parts in order (``success`` only when every part has it)."""
        fields = [f for f in cls.__dataclass_fields__ if f != "success"]
        success = None if any(p.success is None for p in parts) else np.concatenate([p.success for p in parts])
        return cls(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields}, success=success)

    def validate(self, family: TaskFamily, num_tasks: int, source: str = "the episodes") -> None:
        """Raise ``DatasetFormatError`` naming the first problem and its fix."""
        obs_dim = family.observation_space.shape[0]
        act_dim = family.action_space.shape[0]
        for name, array, width in (
            ("observation", self.observations, obs_dim),
            ("action", self.actions, act_dim),
        ):
            if array.ndim != 2 or array.shape[1] != width:
                raise DatasetFormatError(
                    f"{source}: {name}s have shape {array.shape}, but {family.name} {name}s are "
                    f"{width}-dimensional; check that the data belongs to family {family.name!r}"
                )
        n = len(self.observations)
        for name in ("actions", "rewards", "terminated", "truncated"):
            if len(getattr(self, name)) != n:
                raise DatasetFormatError(
                    f"{source}: {len(getattr(self, name))} {name} for {n} observations; every step "
                    f"needs one of each (is the file truncated?)"
                )
        if (self.lengths <= 0).any():
            bad = int(np.flatnonzero(self.lengths <= 0)[0])
            raise DatasetFormatError(f"{source}: episode {bad} is empty; drop empty episodes before importing")
        if self.lengths.sum() != n:
            raise DatasetFormatError(f"{source}: episode lengths sum to {self.lengths.sum()}, not {n} steps")
        for name in ("observations", "actions", "rewards"):
            finite = np.isfinite(getattr(self, name))
            if not finite.all():
                step = int(np.flatnonzero(~finite.reshape(n, -1).all(axis=1))[0])
                episode = int(np.searchsorted(np.cumsum(self.lengths), step, side="right"))
                raise DatasetFormatError(
                    f"{source}: {name} hold NaN or inf at step {step} (episode {episode}); remove or "
                    f"repair those episodes"
                )
        bad_tasks = self.task_index[(self.task_index < 0) | (self.task_index >= num_tasks)]
        if len(bad_tasks):
            raise DatasetFormatError(
                f"{source}: task index {int(bad_tasks[0])} does not exist; {family.name} has "
                f"{num_tasks} tasks (0..{num_tasks - 1}) in this task set"
            )
