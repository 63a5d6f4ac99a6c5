"""Roll out behavior policies in vectorized envs, one or more env copies per task."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from seqmeta.behavior.policies import BehaviorPolicy, load_behavior_policy
from seqmeta.data.episodes import Episodes
from seqmeta.errors import ConfigError
from seqmeta.rollout import run_episodes
from seqmeta.tasks import TaskFamily, TaskSet
from seqmeta.tasks.family import groups_of

TARGET_BATCH = 64  # env copies stepped together: enough to amortize one batched policy call


class BehaviorActor:
    """A behavior policy as a policy of the rollout engine: it acts on each env's goal features."""

    def __init__(self, policy: BehaviorPolicy, goals: np.ndarray, rng: np.random.Generator):
        self.policy, self.goals, self.rng = policy, goals, rng

    def start_episodes(self, slots: np.ndarray, observations: np.ndarray) -> None:
        self.policy.start_episodes(slots, self.rng)

    def act(self, observations: np.ndarray, rewards: np.ndarray | None):
        if rewards is not None:
            self.policy.observe(rewards)
        taken = self.policy.act(observations, self.goals, self.rng)
        return taken if self.policy.meant is None else (taken, self.policy.meant)


def collect_episodes(
    family: TaskFamily | str,
    quality: str,
    params: Sequence[dict[str, Any]],
    episodes_per_task: int,
    seed: int = 0,
    progress: bool = True,
    task_index: Sequence[int] | None = None,
) -> Episodes:
    """``episodes_per_task`` episodes of the family's ``quality`` behavior policy (expert, medium,
    mixed, random) in each task given by its parameters, e.g. ``[{"goal_velocity": 3.4}]``: any
    parameter value, not only the family's task lists. ``task_index`` (default 0, 1, ...) tags each
    task's episodes; episodes come sorted by it (stable). Deterministic for a given seed.

    Each task runs in one or more env copies of one vector env; an env resets in the step its
    episode ends, and the final observation of an episode is dropped, as datasets store (s_t, a_t, r_t).
    More tasks than the family's ``max_envs`` run in groups of that many, one after another.
    """
    from seqmeta.tasks import get_family

    family = get_family(family) if isinstance(family, str) else family
    if episodes_per_task < 1:
        raise ConfigError(f"--episodes-per-task must be at least 1, got {episodes_per_task}")
    if seed < 0:
        raise ConfigError(f"--seed must be 0 or more, got {seed}")
    params = list(params)
    if not params:
        raise ValueError("no task parameters were given; name at least one task")
    family.check_params(params)
    tags = np.arange(len(params)) if task_index is None else np.asarray(task_index, np.int64)
    limit = family.max_envs
    groups = groups_of(len(params), limit)
    if len(groups) > 1:  # more tasks than the family runs envs at once: groups, one after another
        # (each group's envs are seeded after the envs the groups before it can have had: no seed is used twice)
        seeds = [seed + g.start * episodes_per_task for g in groups]
        parts = [
            collect_episodes(family, quality, params[g], episodes_per_task, s, progress, tags[g])
            for g, s in zip(groups, seeds, strict=True)
        ]
        episodes = Episodes.concatenate(parts)
        return episodes.take(np.argsort(episodes.task_index, kind="stable"))
    # A behavior with memory runs whole trials of `unit` episodes in one env copy.
    unit = load_behavior_policy(family, quality, 1).trial_episodes
    trials = -(-episodes_per_task // unit)
    copies = max(1, min(trials, min(TARGET_BATCH, limit or TARGET_BATCH) // len(params)))
    slot_task = np.repeat(np.arange(len(params)), copies)
    # Split each task's trials over its copies; the first copies take the remainder, the last a short trial.
    per_copy = np.array([unit * (trials // copies + (c < trials % copies)) for c in range(copies)])
    per_copy[-1] -= unit * trials - episodes_per_task
    goals = np.stack([family.goal_features(params[t]) for t in slot_task])
    policy = load_behavior_policy(family, quality, len(slot_task))
    out = run_episodes(
        family.env_fns([params[t] for t in slot_task]),
        BehaviorActor(policy, goals, np.random.default_rng(seed)),
        max_steps=family.horizon,
        seed=seed,
        episodes_per_env=np.tile(per_copy, len(params)),
        task_index=tags[slot_task],
        quality=quality,
        progress=f"collect {family.name}/{quality}" if progress else False,
    )
    # The k-th episode of an env is the (k mod trial length)-th of its trial; an env's episodes are contiguous.
    first_of_slot = np.searchsorted(out.slot, out.slot)
    out.episodes.trial_episode = (np.arange(len(out.slot)) - first_of_slot) % policy.trial_episodes
    return out.episodes.take(np.argsort(out.episodes.task_index, kind="stable"))


def rollout(
    family: TaskFamily,
    quality: str,
    task_indices: Sequence[int],
    episodes_per_task: int,
    task_set: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Episodes:
    """``collect_episodes`` on tasks of one of the family's task sets, tagged with their indices."""
    params = family.task_set(task_set).params
    indices = list(task_indices)
    return collect_episodes(family, quality, [params[t] for t in indices], episodes_per_task, seed, progress, indices)


def measure_returns(
    family: TaskFamily, quality: str, episodes_per_task: int, task_set: str | None = None, seed: int = 0
) -> np.ndarray:
    """Mean return per task (all tasks of the task set) of a behavior policy."""
    n_tasks = len(family.task_set(task_set))
    episodes = rollout(family, quality, range(n_tasks), episodes_per_task, task_set, seed, progress=False)
    sums = np.bincount(episodes.task_index, weights=episodes.episode_returns, minlength=n_tasks)
    return sums / np.bincount(episodes.task_index, minlength=n_tasks)


def collect_dataset(
    family: str | TaskFamily,
    qualities: str | Sequence[str],
    out: str,
    tasks: str | Sequence[int] = "all",
    episodes_per_task: int = 20,
    task_set: str | TaskSet | None = None,
    seed: int = 0,
    overwrite: bool = False,
    command: str = "",
    progress: bool = True,
    more: Callable[[list[dict[str, Any]], list[int], int], dict[str, tuple[Episodes, str]]] | None = None,
):
    """Roll out each quality level on the selected tasks and write one dataset folder to ``out``.

    ``task_set`` names one of the family's task lists, or is a ``TaskSet`` of your own (any task
    parameters, your own train/test split), e.g. ``TaskSet("mine", ({"goal_velocity": 3.4},), (0,), "one
    fast task")``; the dataset's task table then holds exactly those tasks. ``tasks`` is ``"train"``,
    ``"test"``, ``"all"``, or task indices of that list. ``more(params, indices, seed)`` gives
    episodes of further quality levels of the same tasks, ``{quality: (episodes, description)}``
    (``seqmeta.corrections``: a model's own trials labeled by a behavior). Returns the loaded
    ``TrajectoryDataset``. Nothing is written at ``out`` unless collection completes.
    """
    from seqmeta.data.dataset import load_trajectories, write_dataset
    from seqmeta.tasks import get_family

    family = get_family(family) if isinstance(family, str) else family
    qualities = [q.strip() for q in qualities.split(",")] if isinstance(qualities, str) else list(qualities)
    chosen = task_set if isinstance(task_set, TaskSet) else family.task_set(task_set)
    indices = chosen.select(tasks)
    params = [chosen.params[t] for t in indices]
    behavior, parts = {}, []
    for k, quality in enumerate(qualities):
        policy = load_behavior_policy(family, quality, 1)  # validates the quality before any rollout
        behavior[quality] = policy.describe()
        parts.append(collect_episodes(family, quality, params, episodes_per_task, seed + 1000 * k, progress, indices))
    for quality, (episodes, description) in (more(params, list(indices), seed) if more else {}).items():
        behavior[quality] = description
        parts.append(episodes)
    write_dataset(
        Episodes.concatenate(parts),
        family,
        out,
        chosen,
        behavior=behavior,
        command=command,
        overwrite=overwrite,
        behavior_sees_task=True,
    )
    return load_trajectories(out)
