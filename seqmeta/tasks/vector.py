"""Batched MuJoCo envs for the locomotion families: every env of a sweep stepped at once.

``gymnasium``'s ``SyncVectorEnv`` steps each env through its wrappers (order enforcing, env checker,
time limit), its own observation, reward and info code, and merges the infos: at a few microseconds
of physics per step, that Python costs more than MuJoCo; and it makes each env from its XML. A
``MujocoVectorEnv`` keeps one compiled ``MjModel`` per task (the gymnasium env's own: one for all of
Cheetah-Vel, -Dir and Ant-Dir, whose tasks change only the reward; one per task for Hopper- and
Walker-Params, whose tasks scale the physics) and one ``MjData`` per env, steps them from one loop in worker
threads (MuJoCo releases the GIL), and computes observations, rewards, terminations, time limits and infos
for all envs as numpy arrays. It is the gymnasium path, step for step: the same models, the same reset
noise from the same per-env generators (env i seeded ``seed + i``, as ``SyncVectorEnv`` does), the same float
arithmetic (what numpy's array kernels could round differently, a cosine or a norm, is computed per env as
the env does); ``tests/test_envs.py`` checks observations, rewards, terminations and infos bit for bit.
``CheetahVectorEnv`` (HalfCheetah), ``AntDirVectorEnv`` (Ant) and ``UprightVectorEnv`` (Hopper, Walker2d)
say what differs. The rollout engine (``seqmeta.rollout.make_vector_env``) uses them for the families that
declare one (``TaskFamily.vector_env``); user envs and video rendering go through ``SyncVectorEnv``.
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

from seqmeta.tasks.locomotion import CHEETAH_CTRL_COST, AntDirEnv

Reward = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x_velocity (N,), ctrl cost (N,)) -> rewards (N,)


class MujocoVectorEnv(VectorEnv):
    """``len(templates)`` MuJoCo envs of one gymnasium v5 class, ``templates[i]`` env i's (one object may serve several
    envs: its compiled model and settings are used; each is closed here), episodes of ``horizon`` steps, reset in
    the step they end (``AutoresetMode.SAME_STEP``). Envs of one task share its ``MjModel``; each env has its
    ``MjData``. Subclasses say what the gymnasium env's reset noise, observation, reward, termination and info are."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}  # noqa: RUF012  (the gymnasium convention)

    def __init__(self, templates: Sequence[gym.Env], horizon: int):
        first = templates[0].unwrapped
        self.num_envs, self.horizon = len(templates), horizon
        self.models = [t.unwrapped.model for t in templates]
        self.frame_skip = first.frame_skip
        self.dt = np.array([t.unwrapped.dt for t in templates])
        self.init_qpos = np.stack([t.unwrapped.init_qpos for t in templates])
        self.init_qvel = np.stack([t.unwrapped.init_qvel for t in templates])
        self.noise_scale = first._reset_noise_scale
        self.single_observation_space = templates[0].observation_space
        self.single_action_space = templates[0].action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        for template in {id(t): t for t in templates}.values():
            template.close()
        self.data = [mujoco.MjData(model) for model in self.models]
        self.rngs: list[np.random.Generator] = [seeding.np_random()[0] for _ in range(self.num_envs)]
        self.elapsed = np.zeros(self.num_envs, np.int64)
        self.qpos = np.zeros((self.num_envs, first.model.nq))
        self.qvel = np.zeros((self.num_envs, first.model.nv))
        threads = min(os.cpu_count() or 1, max(1, self.num_envs // 32))
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self.chunks = np.array_split(np.arange(self.num_envs), threads)

    # ---- what differs between env classes -----------------------------------------------------

    def _velocity_noise(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """The reset noise added to the initial velocities (drawn after the positions' uniform noise)."""
        raise NotImplementedError

    def _observations(self) -> np.ndarray:
        raise NotImplementedError

    def _outcome(self, actions: np.ndarray, velocity: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """(rewards, terminated, info) of the step just simulated, as the gymnasium env computes them;
        ``velocity`` (N, k) is that of ``_position``."""
        raise NotImplementedError

    # ---- physics ------------------------------------------------------------------------------

    def _reset_env(self, i: int) -> None:
        """What a v5 env's reset does: mj_resetData, the initial state plus noise from the env's generator."""
        model, data, rng = self.models[i], self.data[i], self.rngs[i]
        mujoco.mj_resetData(model, data)
        qpos = self.init_qpos[i] + rng.uniform(low=-self.noise_scale, high=self.noise_scale, size=model.nq)
        qvel = self.init_qvel[i] + self._velocity_noise(rng, model.nv)
        data.qpos[:] = qpos
        data.qvel[:] = qvel
        mujoco.mj_forward(model, data)
        self._record(i)
        self.elapsed[i] = 0

    def _simulate(self, rows: np.ndarray, ctrl: np.ndarray) -> None:
        n_frames = self.frame_skip
        for i in rows:
            model, data = self.models[i], self.data[i]
            data.ctrl[:] = ctrl[i]
            mujoco.mj_step(model, data, nstep=n_frames)
            mujoco.mj_rnePostConstraint(model, data)
            self._record(i)

    def _record(self, i: int) -> None:
        """Copy what the step's outcome reads from env i's ``MjData`` (in the worker thread that stepped it)."""
        self.qpos[i], self.qvel[i] = self.data[i].qpos, self.data[i].qvel

    def _position(self) -> np.ndarray:
        """(N, k): the coordinates whose change over a step, divided by dt, is the velocity the reward reads."""
        return self.qpos[:, :1]

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
        before = self._position().copy()
        if self.pool is None:
            self._simulate(np.arange(self.num_envs), actions)
        else:
            list(self.pool.map(lambda rows: self._simulate(rows, actions), self.chunks))
        velocity = (self._position() - before) / self.dt[:, None]
        reward, terminated, info = self._outcome(actions, velocity)
        self.elapsed += 1
        truncated = self.elapsed >= self.horizon
        observations = self._observations()
        ended = terminated | truncated
        if ended.any():
            info = info | {"final_obs": observations.copy(), "final_info": info}
            for i in np.flatnonzero(ended):
                self._reset_env(i)
            observations = self._observations()
        return observations, reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None


class CheetahVectorEnv(MujocoVectorEnv):
    """HalfCheetah-v5 envs whose rewards are ``reward(x_velocity, ctrl_cost)`` (vectorized, one task per env)."""

    def __init__(self, templates: Sequence[gym.Env], reward: Reward, horizon: int):
        env = templates[0].unwrapped
        self.forward_weight, self.env_ctrl_weight = env._forward_reward_weight, env._ctrl_cost_weight
        self.reward = reward
        super().__init__(templates, horizon)

    def _velocity_noise(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return self.noise_scale * rng.standard_normal(size)

    def _observations(self) -> np.ndarray:
        return np.concatenate([self.qpos[:, 1:], self.qvel], axis=1)

    def _outcome(self, actions: np.ndarray, velocity: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        x_velocity = velocity[:, 0]
        squared = np.sum(np.square(actions), axis=1)
        reward = self.reward(x_velocity, CHEETAH_CTRL_COST * squared.astype(np.float64))
        info = {
            "x_position": self.qpos[:, 0].copy(),
            "x_velocity": x_velocity,
            "reward_forward": self.forward_weight * x_velocity,
            "reward_ctrl": -(self.env_ctrl_weight * squared).astype(np.float64),
        }
        return reward, np.zeros(self.num_envs, bool), info


class UprightVectorEnv(MujocoVectorEnv):
    """Hopper-v5 or Walker2d-v5 envs (the Params families: each task its own scaled ``MjModel``): reward
    v_x + healthy - ctrl, an episode ends when the body leaves its healthy range, as the gymnasium envs do."""

    def __init__(self, templates: Sequence[gym.Env], horizon: int):
        env = templates[0].unwrapped
        self.forward_weight, self.ctrl_weight = env._forward_reward_weight, env._ctrl_cost_weight
        self.healthy_reward = env._healthy_reward
        self.z_range, self.angle_range = env._healthy_z_range, env._healthy_angle_range
        self.state_range = getattr(env, "_healthy_state_range", None)  # Hopper's; Walker2d has none
        self.terminate = env._terminate_when_unhealthy
        super().__init__(templates, horizon)

    def _velocity_noise(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.uniform(low=-self.noise_scale, high=self.noise_scale, size=size)

    def _observations(self) -> np.ndarray:
        return np.concatenate([self.qpos[:, 1:], np.clip(self.qvel, -10, 10)], axis=1)

    def _healthy(self) -> np.ndarray:
        z, angle = self.qpos[:, 1], self.qpos[:, 2]
        healthy = (self.z_range[0] < z) & (z < self.z_range[1])
        healthy &= (self.angle_range[0] < angle) & (angle < self.angle_range[1])
        if self.state_range is not None:
            state = np.concatenate([self.qpos[:, 2:], self.qvel], axis=1)
            healthy &= ((self.state_range[0] < state) & (state < self.state_range[1])).all(axis=1)
        return healthy

    def _outcome(self, actions: np.ndarray, velocity: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        x_velocity = velocity[:, 0]
        healthy = self._healthy()
        forward = self.forward_weight * x_velocity
        survive = healthy * self.healthy_reward
        ctrl = self.ctrl_weight * np.sum(np.square(actions), axis=1)  # the action's dtype, as in the env
        info = {
            "x_position": self.qpos[:, 0].copy(),
            "z_distance_from_origin": self.qpos[:, 1] - self.init_qpos[:, 1],
            "x_velocity": x_velocity,
            "reward_forward": forward,
            "reward_ctrl": -ctrl,
            "reward_survive": survive,
        }
        return (forward + survive) - ctrl, ~healthy & self.terminate, info


class AntDirVectorEnv(MujocoVectorEnv):
    """``AntDirEnv`` envs (Ant-v5 without contact forces in the observation), env i running toward ``angles[i]``:
    reward v_xy . (cos, sin) - ctrl - contact + healthy, an episode ends when the torso leaves its z range."""

    def __init__(self, templates: Sequence[gym.Env], angles: Sequence[float], horizon: int):
        env = templates[0].unwrapped
        self.ctrl_weight, self.contact_weight = env._ctrl_cost_weight, env._contact_cost_weight
        self.forward_weight, self.contact_range = env._forward_reward_weight, env._contact_force_range
        self.healthy_reward, self.z_range = env._healthy_reward, env._healthy_z_range
        self.terminate = env._terminate_when_unhealthy
        self.main_body = env.data.body(env._main_body).id
        # each env's cos and sin as its own env computes them (a scalar each; numpy's array kernels may round apart)
        self.cos = np.array([np.cos(float(a)) for a in angles])
        self.sin = np.array([np.sin(float(a)) for a in angles])
        num_envs = len(angles)
        self.xy = np.zeros((num_envs, 2))
        self.contact = np.zeros(num_envs)
        self.distance = np.zeros(num_envs)
        super().__init__(templates, horizon)

    def _record(self, i: int) -> None:
        super()._record(i)
        data = self.data[i]
        self.xy[i] = data.xpos[self.main_body, :2]
        forces = np.clip(data.cfrc_ext, *self.contact_range)
        self.contact[i] = self.contact_weight * np.sum(np.square(forces))
        self.distance[i] = np.linalg.norm(data.qpos[0:2], ord=2)

    def _position(self) -> np.ndarray:
        return self.xy

    def _velocity_noise(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return self.noise_scale * rng.standard_normal(size)

    def _observations(self) -> np.ndarray:
        return np.concatenate([self.qpos[:, 2:], self.qvel], axis=1)

    def _outcome(self, actions: np.ndarray, velocity: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        x_velocity, y_velocity = velocity[:, 0].copy(), velocity[:, 1].copy()
        state_finite = np.isfinite(self.qpos).all(axis=1) & np.isfinite(self.qvel).all(axis=1)
        z = self.qpos[:, 2]
        healthy = state_finite & (self.z_range[0] <= z) & (z <= self.z_range[1])
        survive = healthy * self.healthy_reward
        ctrl = self.ctrl_weight * np.sum(np.square(actions), axis=1)  # the action's dtype, as in the env
        heading = x_velocity * self.cos + y_velocity * self.sin
        info = {
            "x_position": self.qpos[:, 0].copy(),
            "y_position": self.qpos[:, 1].copy(),
            "distance_from_origin": self.distance.copy(),
            "x_velocity": x_velocity,
            "y_velocity": y_velocity,
            "reward_forward": x_velocity * self.forward_weight,
            "reward_ctrl": -ctrl,
            "reward_contact": -self.contact,
            "reward_survive": survive,
            "heading_velocity": heading,
        }
        reward = heading + info["reward_ctrl"] + info["reward_contact"] + survive
        return reward, ~healthy & self.terminate, info


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


def _templates(family, params: Sequence[dict[str, Any]], env_class: type, per_task: bool) -> list[gym.Env] | None:
    """Env i's template for a batched env: one gymnasium env made per distinct task (``per_task``: a task changes
    the physics) or one for all (a task changes only the reward); None, with what was made closed, when the
    family's env is not ``env_class`` (a family made from this one with an env of its own: gymnasium envs then)."""
    made: dict[str, gym.Env] = {}
    templates = []
    for p in params:
        key = repr(sorted(p.items())) if per_task else ""
        if key not in made:
            made[key] = family.make_env(p)
            if type(made[key].unwrapped) is not env_class:
                for env in made.values():
                    env.close()
                return None
        templates.append(made[key])
    return templates


def cheetah_vector_env(rewards: Callable[[Sequence[dict[str, Any]]], Reward], env_class: type):
    """A Cheetah family's ``vector_env``: ``(family, params)`` -> its envs batched, rewards from ``rewards(params)``."""

    def make(family, params: Sequence[dict[str, Any]]) -> CheetahVectorEnv | None:
        templates = _templates(family, params, env_class, per_task=False)
        return None if templates is None else CheetahVectorEnv(templates, rewards(params), family.horizon)

    return make


def upright_vector_env(env_class: type):
    """The Params families' ``vector_env``: ``(family, params)`` -> their envs batched, each task's scaled model
    made once and shared by that task's envs."""

    def make(family, params: Sequence[dict[str, Any]]) -> UprightVectorEnv | None:
        templates = _templates(family, params, env_class, per_task=True)
        return None if templates is None else UprightVectorEnv(templates, family.horizon)

    return make


def ant_dir_vector_env(family, params: Sequence[dict[str, Any]]) -> AntDirVectorEnv | None:
    """Ant-Dir's ``vector_env``: its envs batched (one model: a task changes only the reward)."""
    templates = _templates(family, params, AntDirEnv, per_task=False)
    return (
        None if templates is None else AntDirVectorEnv(templates, [float(p["angle"]) for p in params], family.horizon)
    )
