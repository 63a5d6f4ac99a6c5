"""Batched HalfCheetah for the Cheetah families: every env of a sweep stepped at once.

``gymnasium``'s ``SyncVectorEnv`` steps each env through its wrappers (order enforcing, env checker,
time limit), its own observation, reward and info code, and merges the infos: at a few microseconds
of physics per step, that Python costs more than MuJoCo. ``CheetahVectorEnv`` keeps one compiled
``MjModel`` (the gymnasium env's own) and one ``MjData`` per env, steps them from one loop in worker
threads (MuJoCo releases the GIL), and computes observations, rewards, time limits and infos for all
envs as numpy arrays. It is the gymnasium path, step for step: the same model, the same reset noise from
the same per-env generators (env i seeded ``seed + i``, as ``SyncVectorEnv`` does), the same float
arithmetic; ``tests/test_envs.py`` checks observations, rewards and infos bit for bit. The rollout engine
(``seqmeta.rollout.make_vector_env``) uses it for the families that declare one (``TaskFamily.vector_env``);
user envs and video rendering go through ``SyncVectorEnv``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv

from seqmeta.tasks.locomotion import CHEETAH_CTRL_COST

Reward = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x_velocity (N,), ctrl cost (N,)) -> rewards (N,)


class CheetahVectorEnv(VectorEnv):
    """``num_envs`` HalfCheetah-v5 envs (``template`` is one of them: its model and settings are used; closed here)
    whose rewards are ``reward(x_velocity, ctrl_cost)`` (vectorized, one task per env), episodes of
    ``horizon`` steps, reset in the step they end (``AutoresetMode.SAME_STEP``)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}  # noqa: RUF012  (the gymnasium convention)

    def __init__(self, template: gym.Env, reward: Reward, num_envs: int, horizon: int):
        env = template.unwrapped
        self.model = env.model
        self.frame_skip, self.dt = env.frame_skip, env.dt
        self.init_qpos, self.init_qvel = env.init_qpos.copy(), env.init_qvel.copy()
        self.noise_scale = env._reset_noise_scale
        self.forward_weight, self.env_ctrl_weight = env._forward_reward_weight, env._ctrl_cost_weight
        self.num_envs, self.horizon, self.reward = num_envs, horizon, reward
        self.single_observation_space = template.observation_space
        self.single_action_space = template.action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        template.close()
        self.data = [mujoco.MjData(self.model) for _ in range(num_envs)]
        self.rngs: list[np.random.Generator] = [seeding.np_random()[0] for _ in range(num_envs)]
        self.elapsed = np.zeros(num_envs, np.int64)
        self.qpos = np.zeros((num_envs, self.model.nq))
        self.qvel = np.zeros((num_envs, self.model.nv))
        threads = min(os.cpu_count() or 1, max(1, num_envs // 32))
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self.chunks = np.array_split(np.arange(num_envs), threads)

    # ---- physics ------------------------------------------------------------------------------

    def _reset_env(self, i: int) -> None:
        """What HalfCheetah-v5's reset does: mj_resetData, init state plus noise from the env's generator."""
        data, rng = self.data[i], self.rngs[i]
        mujoco.mj_resetData(self.model, data)
        qpos = self.init_qpos + rng.uniform(low=-self.noise_scale, high=self.noise_scale, size=self.model.nq)
        qvel = self.init_qvel + self.noise_scale * rng.standard_normal(self.model.nv)
        data.qpos[:] = qpos
        data.qvel[:] = qvel
        mujoco.mj_forward(self.model, data)
        self.qpos[i], self.qvel[i] = data.qpos, data.qvel
        self.elapsed[i] = 0

    def _simulate(self, rows: np.ndarray, ctrl: np.ndarray) -> None:
        model, n_frames = self.model, self.frame_skip
        for i in rows:
            data = self.data[i]
            data.ctrl[:] = ctrl[i]
            mujoco.mj_step(model, data, nstep=n_frames)
            mujoco.mj_rnePostConstraint(model, data)
            self.qpos[i], self.qvel[i] = data.qpos, data.qvel

    def _observations(self) -> np.ndarray:
        return np.concatenate([self.qpos[:, 1:], self.qvel], axis=1)

    # ---- the gymnasium vector API -------------------------------------------------------------

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else list(seed)
            self.rngs = [seeding.np_random(s)[0] for s in seeds]
        for i in range(self.num_envs):
            self._reset_env(i)
        return self._observations(), {}

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions)
        if actions.shape != self.action_space.shape:
            raise ValueError(f"actions have shape {actions.shape}; expected {self.action_space.shape}")
        x_before = self.qpos[:, 0].copy()
        if self.pool is None:
            self._simulate(np.arange(self.num_envs), actions)
        else:
            list(self.pool.map(lambda rows: self._simulate(rows, actions), self.chunks))
        x_after = self.qpos[:, 0].copy()
        x_velocity = (x_after - x_before) / self.dt
        squared = np.sum(np.square(actions), axis=1)
        reward = self.reward(x_velocity, CHEETAH_CTRL_COST * squared.astype(np.float64))
        info = {
            "x_position": x_after,
            "x_velocity": x_velocity,
            "reward_forward": self.forward_weight * x_velocity,
            "reward_ctrl": -(self.env_ctrl_weight * squared).astype(np.float64),
        }
        self.elapsed += 1
        terminated = np.zeros(self.num_envs, bool)
        truncated = self.elapsed >= self.horizon
        observations = self._observations()
        if truncated.any():
            info = info | {"final_obs": observations.copy(), "final_info": info}
            for i in np.flatnonzero(truncated):
                self._reset_env(i)
            observations = self._observations()
        return observations, reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None


def cheetah_vel_rewards(params: Sequence[dict[str, Any]]) -> Reward:
    """``CheetahVelEnv``'s reward, -|v_x - v*| - ctrl, for envs with these task params."""
    goal = np.array([float(p.get("goal_velocity", 1.0)) for p in params])
    return lambda x_velocity, ctrl: -np.abs(x_velocity - goal) - ctrl


def cheetah_dir_rewards(params: Sequence[dict[str, Any]]) -> Reward:
    """``CheetahDirEnv``'s reward, d * v_x - ctrl, for envs with these task params."""
    direction = np.array([float(p.get("direction", 1.0)) for p in params])
    bad = direction[(direction != 1) & (direction != -1)]
    if len(bad):  # what CheetahDirEnv says when it is made with one
        raise ValueError(f"direction must be -1 or +1, got {float(bad[0])!r}")
    return lambda x_velocity, ctrl: direction * x_velocity - ctrl


def cheetah_vector_env(rewards: Callable[[Sequence[dict[str, Any]]], Reward], env_class: type):
    """A Cheetah family's ``vector_env``: ``(family, params)`` -> its envs batched, rewards from ``rewards(params)``;
    None (the engine then makes the gymnasium envs) when the family's env is not ``env_class`` (a family made
    from this one with an env of its own)."""

    def make(family, params: Sequence[dict[str, Any]]) -> CheetahVectorEnv | None:
        template = family.make_env(params[0])
        if type(template.unwrapped) is not env_class:
            template.close()
            return None
        return CheetahVectorEnv(template, rewards(params), len(params), family.horizon)

    return make
