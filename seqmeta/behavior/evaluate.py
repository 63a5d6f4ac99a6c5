"""Evaluate a goal-conditioned behavior policy on some tasks: all episodes stepped as one batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from seqmeta.rollout import run_episodes
from seqmeta.tasks import TaskFamily


class _GoalConditioned:
    """``act(observations, goal_features)`` as a policy of the rollout engine."""

    def __init__(self, act: Callable[[np.ndarray, np.ndarray], np.ndarray], goals: np.ndarray):
        self._act, self.goals = act, goals

    def start_episodes(self, slots: np.ndarray, observations: np.ndarray) -> None:
        pass

    def act(self, observations: np.ndarray, rewards: np.ndarray | None) -> np.ndarray:
        return self._act(observations, self.goals)


def run_goal_conditioned(
    family: TaskFamily,
    task_indices: Sequence[int],
    act: Callable[[np.ndarray, np.ndarray], np.ndarray],
    episodes: int = 1,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """``episodes`` episodes on each task of the default task set, one per env of one vector env.

    ``act(observations, goal_features)`` returns actions in the env's action space. Returns
    ``return`` and ``mean_velocity`` (mean forward velocity over the episode's steps: along the task's
    direction where the env reports ``heading_velocity`` (Ant-Dir), else along x; NaN for families without
    one), both (episodes, tasks).
    """
    params = family.task_set().params
    slots = [t for _ in range(episodes) for t in task_indices]
    goals = np.stack([family.goal_features(params[t]) for t in slots])
    out = run_episodes(family.env_fns([params[t] for t in slots]), _GoalConditioned(act, goals), family.horizon, seed)
    shape = (episodes, len(task_indices))
    velocity = out.info.get("heading_velocity", out.info.get("x_velocity"))
    if velocity is None:
        mean_velocity = np.full(len(slots), np.nan)
    else:
        mean_velocity = np.add.reduceat(velocity, out.episodes.starts) / out.lengths
    return {"return": out.returns.reshape(shape), "mean_velocity": mean_velocity.reshape(shape)}
