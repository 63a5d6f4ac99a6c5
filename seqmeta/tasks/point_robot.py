"""Point-Robot: a point in the plane that must reach a goal it cannot see (PEARL's point_robot).

State and observation are the xy position; an action moves it by at most 0.1 per axis.
Dense reward: -||s - g||. Sparse reward (goals on the upper half of the unit circle, start at
the origin): 1 - ||s - g|| inside ``goal_radius`` of the goal, 0 elsewhere.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np


class PointRobotEnv(gym.Env[np.ndarray, np.ndarray]):
    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, goal: tuple[float, float] = (0.0, 0.0), sparse: bool = False, goal_radius: float = 0.2):
        self.goal = np.asarray(goal, dtype=np.float64)
        if self.goal.shape != (2,) or not np.isfinite(self.goal).all():
            raise ValueError(f"goal must be two finite numbers (x, y), got {goal!r}")
        self.sparse = bool(sparse)
        self.goal_radius = float(goal_radius)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-0.1, 0.1, shape=(2,), dtype=np.float32)
        self._state = np.zeros(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        # PEARL: dense episodes start anywhere in [-1, 1]^2, sparse ones at the origin.
        self._state = np.zeros(2) if self.sparse else self.np_random.uniform(-1.0, 1.0, size=2)
        return self._state.astype(np.float32), {}

    def step(self, action: np.ndarray):
        action = np.clip(np.asarray(action, dtype=np.float64), -0.1, 0.1)
        self._state = self._state + action
        distance = float(np.linalg.norm(self._state - self.goal))
        dense = -distance
        if self.sparse:
            reward = 1.0 - distance if distance <= self.goal_radius else 0.0
        else:
            reward = dense
        info = {"distance": distance, "dense_reward": dense}
        return self._state.astype(np.float32), reward, False, False, info
