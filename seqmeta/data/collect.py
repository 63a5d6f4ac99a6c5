"""Roll out behavior policies in vectorized envs, one or more env copies per task."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from tqdm.auto import tqdm

from seqmeta.behavior.policies import load_behavior_policy
from seqmeta.data.episodes import Episodes
from seqmeta.tasks import TaskFamily

TARGET_BATCH = 64  # env copies stepped together: enough to amortize one batched policy call


def rollout(
    family: TaskFamily,
    quality: str,
    task_indices: Sequence[int],
    episodes_per_task: int,
    task_set: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Episodes:
    """Collect ``episodes_per_task`` episodes of each task with the ``quality`` behavior policy.

    Deterministic for a given seed. Each sub-env of a ``SyncVectorEnv`` is one task (several copies
    when there are few tasks); episodes reset in the same step they end (``SAME_STEP``), and the
    final observation of an episode is dropped, as datasets store (s_t, a_t, r_t) rows.
    """
    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
    params = family.task_set(task_set).params
    copies = max(1, min(episodes_per_task, TARGET_BATCH // max(len(task_indices), 1)))
    slot_task = np.repeat(np.asarray(task_indices, dtype=np.int64), copies)
    # Split each task's episodes over its copies; the first copies take the remainder.
    per_copy = [episodes_per_task // copies + (c < episodes_per_task % copies) for c in range(copies)]
    quota = np.tile(per_copy, len(task_indices))
    goals = np.stack([family.goal_features(params[t]) for t in slot_task])
    envs = SyncVectorEnv(
        [lambda p=params[t]: family.make_env(p) for t in slot_task],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    n = len(slot_task)
    policy = load_behavior_policy(family, quality, n)
    rng = np.random.default_rng(seed)
    obs, _ = envs.reset(seed=seed)
    policy.start_episodes(np.arange(n), rng)

    buffers: list[list[tuple]] = [[] for _ in range(n)]
    done_count = np.zeros(n, dtype=np.int64)
    finished: list[tuple[int, int, list[tuple]]] = []  # (task, slot, steps)
    total = int(quota.sum())
    bar = tqdm(total=total, desc=f"collect {family.name}/{quality}", unit="ep", disable=not progress)
    while (done_count < quota).any():
        actions = policy.act(obs, goals, rng)
        next_obs, rewards, terminated, truncated, _ = envs.step(actions)
        ended = []
        for i in range(n):
            if done_count[i] >= quota[i]:
                continue  # this copy has its episodes; it idles until the others finish
            buffers[i].append((obs[i], actions[i], rewards[i], terminated[i], truncated[i]))
            if terminated[i] or truncated[i]:
                finished.append((int(slot_task[i]), i, buffers[i]))
                buffers[i] = []
                done_count[i] += 1
                ended.append(i)
                bar.update(1)
        if ended:
            policy.start_episodes(np.asarray(ended), rng)
        obs = next_obs
    bar.close()
    envs.close()
    finished.sort(key=lambda f: (f[0], f[1]))  # stable: task, then copy, then episode order
    return Episodes.from_list([_stack(task, steps) for task, _, steps in finished], quality)


def _stack(task: int, steps: list[tuple]) -> dict:
    obs, act, rew, term, trunc = zip(*steps, strict=True)
    return {
        "observations": np.stack(obs),
        "actions": np.stack(act),
        "rewards": np.asarray(rew),
        "terminated": np.asarray(term),
        "truncated": np.asarray(trunc),
        "task_index": task,
    }


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
    task_set: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    command: str = "",
    progress: bool = True,
):
    """Roll out each quality level on the selected tasks and write one dataset folder to ``out``.

    ``tasks`` is ``"train"``, ``"test"``, ``"all"``, or task indices. Returns the loaded
    ``TrajectoryDataset``. Nothing is written at ``out`` unless collection completes.
    """
    from seqmeta.data.dataset import load_trajectories, write_dataset
    from seqmeta.tasks import get_family

    family = get_family(family) if isinstance(family, str) else family
    qualities = [q.strip() for q in qualities.split(",")] if isinstance(qualities, str) else list(qualities)
    indices = family.task_set(task_set).select(tasks)
    behavior, parts = {}, []
    for k, quality in enumerate(qualities):
        policy = load_behavior_policy(family, quality, 1)  # validates the quality before any rollout
        behavior[quality] = policy.describe()
        parts.append(rollout(family, quality, indices, episodes_per_task, task_set, seed + 1000 * k, progress))
    write_dataset(
        Episodes.concatenate(parts),
        family,
        out,
        task_set,
        behavior=behavior,
        command=command,
        overwrite=overwrite,
        behavior_sees_task=True,
    )
    return load_trajectories(out)
