"""Evaluate a goal-conditioned behavior policy on some tasks: all episodes stepped as one batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from seqmeta.tasks import TaskFamily


def run_episodes(
    family: TaskFamily,
    task_indices: Sequence[int],
    act: Callable[[np.ndarray, np.ndarray], np.ndarray],
    episodes: int = 1,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """``episodes`` episodes on each task of the default task set, in one vector env.

    ``act(observations, goal_features)`` returns actions in the env's action space. Returns
    ``return`` and ``mean_velocity`` (mean forward velocity over the episode's steps, NaN for
    families without one), both (episodes, tasks).
    """
    params = family.task_set().params
    slots = [t for _ in range(episodes) for t in task_indices]
    # NEXT_STEP autoreset: an episode's last step reports its own info; the reset comes one step
    # later, when that env no longer counts.
    envs = SyncVectorEnv(
        [lambda p=params[t]: family.make_env(p) for t in slots], autoreset_mode=AutoresetMode.NEXT_STEP
    )
    goals = np.stack([family.goal_features(params[t]) for t in slots])
    obs, _ = envs.reset(seed=seed)
    n = len(slots)
    returns, velocity, steps, alive = np.zeros(n), np.zeros(n), np.zeros(n), np.ones(n, bool)
    for _ in range(family.horizon):
        obs, reward, terminated, truncated, info = envs.step(act(obs, goals))
        returns += reward * alive
        velocity += np.asarray(info.get("x_velocity", np.full(n, np.nan))) * alive
        steps += alive
        alive &= ~(terminated | truncated)
        if not alive.any():
            break
    envs.close()
    shape = (episodes, len(task_indices))
    return {"return": returns.reshape(shape), "mean_velocity": (velocity / steps).reshape(shape)}
