"""Context windows and trajectory prompts, sampled as one vectorized gather per batch.

Both samplers cut ``length``-step slices that *end* at a sampled step and are left-padded where
they would start before their episode: a window ending at step t holds steps t-K+1..t, exactly what
an agent has seen at step t of an episode. No per-sample Python runs on the hot path; state is a
numpy ``Generator`` whose state can be saved and restored (``state_dict`` / ``load_state_dict``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from seqmeta.data.dataset import TrajectoryDataset
from seqmeta.errors import TaskSelectionError

STEP_FIELDS = ("observation", "action", "reward", "return_to_go")


class _Slicer:
    """Shared gather: rows [end-length+1, end], left-padded where they precede the episode start.

    All float step fields live side by side in one (N + 1, D) matrix, so a batch is a single
    ``np.take``; its last row is zeros and padded slots point at it.
    """

    def __init__(self, dataset: TrajectoryDataset):
        columns = [dataset.column(name).reshape(len(dataset), -1) for name in STEP_FIELDS]
        widths = [c.shape[1] for c in columns]
        self.packed = np.zeros((len(dataset) + 1, sum(widths)), np.float32)
        np.concatenate(columns, axis=1, out=self.packed[:-1])
        self.pad_row = len(dataset)
        bounds = np.cumsum([0, *widths])
        self.fields = {
            name: (slice(lo, hi) if name in ("observation", "action") else lo)
            for name, lo, hi in zip(STEP_FIELDS, bounds[:-1], bounds[1:], strict=True)
        }

    def gather(self, ends: np.ndarray, step_in_episode: np.ndarray, length: int) -> dict[str, np.ndarray]:
        """Slices ending at rows ``ends`` (any shape S), which are ``step_in_episode`` into their episode.

        One extra leading row gives each step its predecessor's action and reward (``prev_action``,
        ``prev_reward``; zero at an episode's first step), which the model's tokens need even when
        a slice starts mid-episode.
        """
        timestep = step_in_episode[..., None] + np.arange(-length, 1)  # (S..., L+1)
        mask = timestep >= 0
        rows = np.where(mask, ends[..., None] - step_in_episode[..., None] + timestep, self.pad_row)
        values = np.take(self.packed, rows, axis=0)  # (S..., L+1, D): one gather for every field
        out = {name: values[..., 1:, index] for name, index in self.fields.items()}
        out["prev_action"] = values[..., :-1, self.fields["action"]]
        out["prev_reward"] = values[..., :-1, self.fields["reward"]]
        out["timestep"] = np.maximum(timestep[..., 1:], 0)
        out["attention_mask"] = mask[..., 1:]
        return out


class WindowSampler:
    """K-step context windows from the episodes of some tasks, episodes chosen by length.

    Sampling the window's last step uniformly over all steps of the allowed episodes is the same as
    choosing an episode with probability proportional to its length, then a step in it.

    Returns dicts of numpy arrays: observation (B, K, obs_dim), action and prev_action (B, K, act_dim),
    reward, prev_reward, return_to_go, timestep, attention_mask (B, K), and task_index, episode_index
    (B,) where episode_index is the row of ``dataset.episodes``. ``tasks`` and ``episodes`` (rows of
    ``dataset.episodes``) restrict which episodes windows come from.
    """

    def __init__(
        self,
        dataset: TrajectoryDataset,
        context_length: int,
        batch_size: int,
        tasks: Sequence[int] | None = None,
        seed: int = 0,
        episodes: Sequence[int] | None = None,
    ):
        if context_length < 1 or batch_size < 1:
            raise ValueError(f"context_length and batch_size must be >= 1, got {context_length}, {batch_size}")
        self.context_length, self.batch_size = context_length, batch_size
        self.slicer = _Slicer(dataset)
        ep = dataset.episodes
        allowed = np.ones(len(ep["start"]), bool) if tasks is None else np.isin(ep["task_index"], list(tasks))
        if episodes is not None:
            allowed &= np.isin(np.arange(len(allowed)), list(episodes))
        if not allowed.any():
            raise TaskSelectionError(f"the dataset has no episodes of tasks {list(tasks or [])} among those chosen")
        self.episode_ids = np.flatnonzero(allowed)
        # Cumulative step counts of the allowed episodes: a uniform draw over steps picks an episode.
        self._cum_lengths = np.cumsum(ep["length"][self.episode_ids])
        self._episodes = ep
        self.rng = np.random.default_rng(seed)

    def sample(self) -> dict[str, np.ndarray]:
        draw = self.rng.integers(0, self._cum_lengths[-1], size=self.batch_size)
        which = np.searchsorted(self._cum_lengths, draw, side="right")
        episode = self.episode_ids[which]
        step_in_episode = draw - (self._cum_lengths[which] - self._episodes["length"][episode])
        ends = self._episodes["start"][episode] + step_in_episode
        batch = self.slicer.gather(ends, step_in_episode, self.context_length)
        batch["task_index"] = self._episodes["task_index"][episode]
        batch["episode_index"] = episode
        return batch

    def __iter__(self):
        while True:
            yield self.sample()

    def state_dict(self) -> dict[str, str]:
        return {"rng": json.dumps(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, str]) -> None:
        self.rng.bit_generator.state = json.loads(state["rng"])


class PromptSampler:
    """J prompt segments of K* steps each, from episodes of the window's task other than its own.

    A segment ends at a uniformly drawn step at least ``min(K*, T) - 1`` into its episode, so an
    episode shorter than K* is taken whole (left-padded). Returns (B, J, K*, ...) arrays with the
    same keys as ``WindowSampler`` (rewards included, so prompts identify tasks by their rewards).
    ``episodes`` (rows of ``dataset.episodes``) restricts the pool prompts are cut from. With
    ``start_segment`` the first of the J segments is the start of its episode (its first K* steps,
    where an agent's acceleration and first rewards show the task), the others are drawn as above.
    """

    def __init__(
        self,
        dataset: TrajectoryDataset,
        num_segments: int,
        segment_length: int,
        seed: int = 0,
        episodes: Sequence[int] | None = None,
        start_segment: bool = False,
    ):
        if num_segments < 1 or segment_length < 1:
            raise ValueError(f"num_segments and segment_length must be >= 1, got {num_segments}, {segment_length}")
        self.num_segments, self.segment_length = num_segments, segment_length
        self.start_segment = start_segment
        self.slicer = _Slicer(dataset)
        ep = self._episodes = dataset.episodes
        pool = np.arange(len(ep["task_index"])) if episodes is None else np.unique(np.asarray(episodes, np.int64))
        # Pool episodes grouped by task: order[group_start[t] : group_start[t] + count[t]] are task t's.
        self._order = pool[np.argsort(ep["task_index"][pool], kind="stable")]
        n_tasks = int(ep["task_index"].max()) + 1
        self._count = np.bincount(ep["task_index"][pool], minlength=n_tasks)
        self._group_start = np.concatenate([[0], np.cumsum(self._count)[:-1]])
        self._rank = np.full(len(ep["task_index"]), -1, np.int64)  # slot within its task group; -1: not in pool
        self._rank[self._order] = np.arange(len(self._order)) - self._group_start[ep["task_index"][self._order]]
        self.rng = np.random.default_rng(seed)

    def sample(self, task_index: np.ndarray, exclude_episode: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Prompts for a batch: ``task_index`` (B,), and the episode each window came from (B,), if the
        prompt must come from another one."""
        task_index = np.asarray(task_index)
        excluded = np.zeros(len(task_index), bool) if exclude_episode is None else self._rank[exclude_episode] >= 0
        needed = 1 + excluded
        have = np.where(task_index < len(self._count), self._count[np.minimum(task_index, len(self._count) - 1)], 0)
        if (have < needed).any():
            short = sorted(set(task_index[have < needed].tolist()))
            raise TaskSelectionError(
                f"tasks {short} have too few episodes to prompt from: a prompt must come from another episode "
                f"of the same task, so collect at least 2 episodes per task"
            )
        shape = (len(task_index), self.num_segments)
        count = self._count[task_index][:, None]
        # Draw among the pool's episodes of the task, skipping the excluded one's slot.
        k = self.rng.integers(0, count - excluded[:, None], size=shape)
        if exclude_episode is not None:
            k += excluded[:, None] & (k >= self._rank[np.asarray(exclude_episode)][:, None])
        episode = self._order[self._group_start[task_index][:, None] + k]  # (B, J)
        return self._cut(episode)

    def sample_latest(self, task_index: np.ndarray) -> dict[str, np.ndarray]:
        """Prompts from the latest J of each row's task's pool episodes (in pool order), one segment
        from each, oldest first; segments of missing episodes (fewer than J) are masked. How a model
        trained on trials (``sample_trial``) is prompted with demos or its own earlier episodes."""
        task_index = np.asarray(task_index)
        count = np.where(task_index < len(self._count), self._count[np.minimum(task_index, len(self._count) - 1)], 0)
        if (count < 1).any():
            raise TaskSelectionError(
                f"tasks {sorted(set(task_index[count < 1].tolist()))} have no episodes to prompt from"
            )
        last = self._group_start[task_index] + count - 1  # position in the pool order
        return self._cut_latest(lambda back: self._order[last[:, None] - back], count)

    def sample_trial(self, episode: np.ndarray) -> dict[str, np.ndarray]:
        """Prompts from the earlier episodes of each sample's trial (``episode`` (B,): rows of
        ``dataset.episodes``; a trial's episodes are contiguous and in order), the latest J of them,
        as ``sample_latest`` cuts them; all masked in a trial's first episode, where the behavior
        knew nothing yet."""
        episode = np.asarray(episode)
        return self._cut_latest(lambda back: episode[:, None] - 1 - back, self._episodes["trial_episode"][episode])

    def _cut_latest(self, rows_back, count: np.ndarray) -> dict[str, np.ndarray]:
        """Segment j from the episode ``rows_back(J - 1 - j)`` (rows of ``dataset.episodes``), masked
        where that is more than ``count`` episodes back."""
        back = self.num_segments - 1 - np.arange(self.num_segments)[None, :]  # (1, J)
        present = back < np.asarray(count)[:, None]  # (B, J)
        batch = self._cut(np.where(present, rows_back(np.where(present, back, 0)), 0))
        batch["attention_mask"] &= present[:, :, None]
        return batch

    def _cut(self, episode: np.ndarray) -> dict[str, np.ndarray]:
        """The (B, J) segments of episodes ``episode`` (rows of ``dataset.episodes``)."""
        shape = episode.shape
        length = self._episodes["length"][episode]
        first_end = np.minimum(self.segment_length, length) - 1
        end_in_episode = first_end + (self.rng.random(shape) * (length - first_end)).astype(np.int64)
        if self.start_segment:
            end_in_episode[:, 0] = first_end[:, 0]
        ends = self._episodes["start"][episode] + end_in_episode
        batch = self.slicer.gather(ends, end_in_episode, self.segment_length)
        batch["episode_index"] = episode
        return batch

    def state_dict(self) -> dict[str, str]:
        return {"rng": json.dumps(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, str]) -> None:
        self.rng.bit_generator.state = json.loads(state["rng"])


def flatten_prompt(prompt: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(B, J, K*, ...) prompt segments -> one (B, J*K*, ...) prompt, segments in order."""
    return {k: v.reshape(v.shape[0], -1, *v.shape[3:]) for k, v in prompt.items() if k != "episode_index"}
