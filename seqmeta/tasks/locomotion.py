"""MuJoCo locomotion task families on gymnasium v5 envs (PEARL's rlkit/envs, rebuilt).

- ``CheetahVelEnv``: HalfCheetah-v5, reward -|v_x - v*| - 0.05 ||a||^2.
- ``CheetahDirEnv``: HalfCheetah-v5, reward d * v_x - 0.05 ||a||^2 with d in {-1, +1}.
- ``AntDirEnv``: Ant-v5 without contact forces in the observation (27-d), reward
  v_xy . (cos theta, sin theta) - 0.5 ||a||^2 - 5e-4 ||clip(cfrc_ext)||^2 + 1, ends when the torso
  leaves z in [0.2, 1.0].
- ``HopperParamsEnv`` / ``WalkerParamsEnv``: Hopper-v5 / Walker2d-v5 with body mass, inertia and
  geom friction scaled by 1.5^u and dof damping by 1.3^u, u ~ U(-3, 3) per element
  (rand_param_envs); the v5 reward v_x + 1 - 1e-3 ||a||^2 and termination are kept.

Observations are the v5 ones (HalfCheetah 17-d, where PEARL's mujoco-py env had 20-d), so returns are
new-benchmark numbers, comparable across seqmeta models, not reproductions of MuJoCo 1.x papers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import mujoco
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

CHEETAH_CTRL_COST = 0.05
logger = logging.getLogger(__name__)


def _mujoco_warning(message: str) -> None:
    # gymnasium's v5 XML files use `settotalmass`, which MuJoCo 4 flags as deprecated on every
    # model compile; that one says nothing to a seqmeta user. Every other warning is logged.
    if "settotalmass" not in message:
        logger.warning("MuJoCo: %s", message)


if mujoco.get_mju_user_warning() is None:  # never replace a handler the user installed
    mujoco.set_mju_user_warning(_mujoco_warning)


class CheetahVelEnv(HalfCheetahEnv):
    def __init__(self, goal_velocity: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.goal_velocity = float(goal_velocity)

    def step(self, action):
        observation, _, terminated, truncated, info = super().step(action)
        ctrl = CHEETAH_CTRL_COST * float(np.sum(np.square(action)))
        reward = -abs(info["x_velocity"] - self.goal_velocity) - ctrl
        return observation, reward, terminated, truncated, info


class CheetahDirEnv(HalfCheetahEnv):
    def __init__(self, direction: float = 1.0, **kwargs):
        if direction not in (-1, 1):
            raise ValueError(f"direction must be -1 or +1, got {direction!r}")
        super().__init__(**kwargs)
        self.direction = float(direction)

    def step(self, action):
        observation, _, terminated, truncated, info = super().step(action)
        ctrl = CHEETAH_CTRL_COST * float(np.sum(np.square(action)))
        reward = self.direction * info["x_velocity"] - ctrl
        return observation, reward, terminated, truncated, info


class AntDirEnv(AntEnv):
    def __init__(self, angle: float = 0.0, **kwargs):
        kwargs.setdefault("include_cfrc_ext_in_observation", False)
        super().__init__(**kwargs)
        self.angle = float(angle)

    def step(self, action):
        observation, _, terminated, truncated, info = super().step(action)
        heading = info["x_velocity"] * np.cos(self.angle) + info["y_velocity"] * np.sin(self.angle)
        # The v5 defaults (ctrl 0.5, contact 5e-4, survive 1) are PEARL's ant-dir weights.
        reward = heading + info["reward_ctrl"] + info["reward_contact"] + info["reward_survive"]
        info["heading_velocity"] = heading  # the velocity along the task's direction, which the reward pays
        return observation, float(reward), terminated, truncated, info


class _ParamsMixin:
    """Scales the model's physical parameters in place, then recomputes derived constants."""

    def _apply_log_scales(
        self,
        body_mass: Sequence[float],
        body_inertia: Sequence[Sequence[float]],
        dof_damping: Sequence[float],
        geom_friction: Sequence[Sequence[float]],
    ) -> None:
        model = self.model  # type: ignore[attr-defined]
        for name, exponents, base in (
            ("body_mass", body_mass, 1.5),
            ("body_inertia", body_inertia, 1.5),
            ("dof_damping", dof_damping, 1.3),
            ("geom_friction", geom_friction, 1.5),
        ):
            values = getattr(model, name)
            exponents = np.asarray(exponents, dtype=np.float64)
            if exponents.shape != values.shape:
                raise ValueError(f"{name} needs log-scale exponents of shape {values.shape}, got {exponents.shape}")
            values[:] = values * np.power(base, exponents)
        mujoco.mj_setConst(model, self.data)  # type: ignore[attr-defined]


class HopperParamsEnv(_ParamsMixin, HopperEnv):
    def __init__(self, body_mass=None, body_inertia=None, dof_damping=None, geom_friction=None, **kwargs):
        super().__init__(**kwargs)
        if body_mass is not None:
            self._apply_log_scales(body_mass, body_inertia, dof_damping, geom_friction)


class WalkerParamsEnv(_ParamsMixin, Walker2dEnv):
    def __init__(self, body_mass=None, body_inertia=None, dof_damping=None, geom_friction=None, **kwargs):
        super().__init__(**kwargs)
        if body_mass is not None:
            self._apply_log_scales(body_mass, body_inertia, dof_damping, geom_friction)


def sample_log_scales(model: mujoco.MjModel, rng: np.random.Generator) -> dict[str, list]:
    """rand_param_envs' law: every element's exponent u ~ U(-3, 3) (base 1.5, damping 1.3)."""
    return {
        name: rng.uniform(-3.0, 3.0, size=getattr(model, name).shape).round(6).tolist()
        for name in ("body_mass", "body_inertia", "dof_damping", "geom_friction")
    }
