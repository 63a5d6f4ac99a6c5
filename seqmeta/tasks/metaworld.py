"""Meta-World task families: one Sawyer manipulation task class (ML1) or several (ML10), goals from
Meta-World's own benchmark objects, the goal hidden from the observation as in Meta-World's ML setting.

A task is ``{"task_class": "push-v3", "rand_vec": [...]}``: Meta-World's task class and the random
vector it draws object and goal positions from (frozen, so every episode of a task starts the same).
The observation is Meta-World's 39 numbers with the goal's 3 (the last 3) zeroed; the scripted
experts of ``metaworld.policies`` act on the goal-visible observation, which the behavior policies
rebuild from the task's goal features (the goal position, then the class index). ``info["success"]``
is Meta-World's success signal; the metric is whether it was 1 at any step of an episode.

Needs the ``metaworld`` package: ``install.sh`` installs it with ``pip install --no-deps metaworld==3.1.1``
(its other dependencies are the extra ``seqmeta[metaworld]``).
Meta-World 3.1.1 pins MuJoCo 3.3.0; seqmeta keeps MuJoCo 4 for every family (the shipped reference
returns and behavior policies were measured on it) and runs Meta-World on it by writing the mocap
weld's 11 parameters into MuJoCo 4's 12-wide ``eq_data`` rows, the one incompatibility
(``_reset_mocap_welds``; a test checks the scripted experts still solve their tasks). It also replaces
Meta-World's gripper-object contact test, a Python loop over every contact, with the same test on arrays
(``_touching_object``).
"""

from __future__ import annotations

import json
import pickle
import warnings
from functools import cache
from importlib import resources
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np

from seqmeta.errors import MissingExtraError

HORIZON = 500  # Meta-World's max_path_length
GOAL_DIMS = slice(36, 39)  # where Meta-World's observation carries the goal position
WELD = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 5.0])


def _reset_mocap_welds(self) -> None:
    """Meta-World's mocap weld reset, writing its 11 numbers into rows of any width (MuJoCo 4: 12)."""
    if self.model.nmocap > 0 and self.model.eq_data is not None:
        for i in range(self.model.eq_data.shape[0]):
            if self.model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD:
                self.model.eq_data[i, : len(WELD)] = WELD


def _touching_object(self, object_geom_id: int) -> bool:
    """Meta-World's test of both gripper pads pushing on an object, with the contacts matched as arrays
    instead of a Python loop over every contact (a fifth of a push step); the forces are summed in the
    same order, so the answer is the same (``tests/test_metaworld.py`` compares them along expert episodes)."""
    contact, force = self.data.contact, self.data.efc_force
    geoms = (contact.geom1, contact.geom2)
    on_object = (geoms[0] == object_geom_id) | (geoms[1] == object_geom_id)
    pushes = []
    for pad in ("leftpad_geom", "rightpad_geom"):
        pad_id = self.data.geom(pad).id
        rows = np.flatnonzero(on_object & ((geoms[0] == pad_id) | (geoms[1] == pad_id)))
        pushes.append(sum(force[contact.efc_address[i]] for i in rows))
    return bool(pushes[0] > 0 and pushes[1] > 0)


@cache
def metaworld():
    """The ``metaworld`` package, made to run on the installed MuJoCo."""
    try:
        import metaworld as mw
    except ImportError as e:
        raise MissingExtraError(
            "the Meta-World task families need the metaworld package: bash install.sh installs it, or "
            f"pip install 'seqmeta[metaworld]' && pip install --no-deps metaworld==3.1.1 ({e})"
        ) from None
    from metaworld.sawyer_xyz_env import SawyerMocapBase, SawyerXYZEnv

    # The scripted policies warn on every process start that their gains may exceed the action box.
    warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high", category=UserWarning)
    SawyerMocapBase.reset_mocap_welds = _reset_mocap_welds
    _touching_object.replaces = SawyerXYZEnv.touching_object
    SawyerXYZEnv.touching_object = _touching_object
    return mw


def task_classes() -> dict[str, type]:
    metaworld()
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return dict(ALL_V3_ENVIRONMENTS)


class MetaWorldEnv(gym.Env[np.ndarray, np.ndarray]):
    """One Meta-World task: ``task_class`` with its goal and object positions frozen to ``rand_vec``."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"]}

    def __init__(self, task_class: str = "reach-v3", rand_vec: list[float] | None = None, render_mode=None, **render):
        classes = task_classes()
        if task_class not in classes:
            raise ValueError(f"unknown Meta-World task class {task_class!r}; choose one of {sorted(classes)}")
        self.sim = classes[task_class](render_mode=render_mode, **render)
        space = self.sim._random_reset_space
        if rand_vec is None or np.shape(rand_vec) != space.shape or not np.isfinite(rand_vec).all():
            raise ValueError(f"{task_class} needs rand_vec: {space.shape[0]} finite numbers, got {rand_vec!r}")
        self.task_class = task_class
        self.sim._last_rand_vec = np.asarray(rand_vec, dtype=np.float64)
        self.sim._freeze_rand_vec = True
        self.sim._set_task_called = True
        self.sim._partially_observable = True  # the goal is not in the observation
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(39,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)

    @property
    def goal(self) -> np.ndarray:
        """The goal position this task hides from the observation (set by reset)."""
        return np.asarray(self.sim._target_pos, dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)  # Meta-World's start is fixed by the task: the seed changes nothing
        obs, _ = self.sim.reset()
        return obs.astype(np.float32), {}

    def step(self, action: np.ndarray):
        obs, reward, terminated, truncated, info = self.sim.step(np.asarray(action, dtype=np.float32))
        info = {k: float(v) for k, v in info.items()}
        return obs.astype(np.float32), float(reward), bool(terminated), bool(truncated), info

    def render(self):
        return self.sim.render()

    def close(self) -> None:
        self.sim.close()


def benchmark_tasks(benchmark: str, task_class: str | None, seed: int) -> tuple[list[dict], list[dict]]:
    """Meta-World's own train and test tasks of ``ML1`` (one class) or ``ML10`` as seqmeta task params,
    drawn by the metaworld package (seconds: it builds and resets an env per class)."""
    mw = metaworld()
    bench = mw.ML1(task_class, seed=seed) if benchmark == "ML1" else mw.ML10(seed=seed)

    def params(tasks) -> list[dict]:
        out = []
        for task in tasks:
            data = pickle.loads(task.data)  # made just now by the metaworld package, not read from a file
            out.append({"task_class": task.env_name, "rand_vec": [round(float(x), 9) for x in data["rand_vec"]]})
        return out

    return params(bench.train_tasks), params(bench.test_tasks)


def table_key(benchmark: str, task_class: str | None) -> str:
    return benchmark if task_class is None else f"{benchmark}/{task_class}"


@cache
def _shipped_table() -> dict[str, Any]:
    path = resources.files("seqmeta.tasks") / "metaworld_tasks.json"
    return json.loads(path.read_text())


def shipped_tasks(benchmark: str, task_class: str | None) -> tuple[list[dict], list[dict]]:
    """The train and test tasks of ``benchmark_tasks(benchmark, task_class, SEED)``, as shipped in
    ``metaworld_tasks.json`` (written by ``python eval/metaworld_tasks.py --install``): a family's
    task list never changes and is known without building Meta-World envs."""
    entry = _shipped_table()[table_key(benchmark, task_class)]
    return entry["train"], entry["test"]


@cache
def _goal(task_class: str, rand_vec: tuple[float, ...]) -> tuple[float, ...]:
    env = MetaWorldEnv(task_class, list(rand_vec))
    env.reset()
    goal = tuple(env.goal.tolist())
    env.close()
    return goal


def goal_features(params: dict[str, Any], classes: tuple[str, ...]) -> np.ndarray:
    """What the scripted expert needs to see: the goal position (3) and the task class's index."""
    goal = _goal(params["task_class"], tuple(params["rand_vec"]))
    return np.asarray([*goal, classes.index(params["task_class"])], dtype=np.float32)


# The scripted reach policies steer the hand (the observation's first 3 numbers) onto the goal, but
# success is the fingertips' center within 5 cm of it, and the fingertips sit 4.5 cm below the hand: aimed
# as Meta-World ships them, the experts end 5 mm inside success. Shown a goal raised by this much, they
# put the fingertips on it.
HAND_ABOVE_FINGERTIPS = np.array([0.0, 0.0, 0.045])
AIMS_THE_HAND = ("reach-v3", "reach-wall-v3")


class ScriptedExperts:
    """Meta-World's scripted policies, batched: each env's observation with its goal put back, acted on
    by its class's policy (the goal features' last number says which class); the reach policies are shown
    the goal raised to where the hand must be for the fingertips to touch it."""

    def __init__(self, classes: tuple[str, ...]):
        metaworld()
        from metaworld.policies import ENV_POLICY_MAP

        self.policies = [ENV_POLICY_MAP[c]() for c in classes]
        self.aim = np.stack([HAND_ABOVE_FINGERTIPS * (c in AIMS_THE_HAND) for c in classes])

    def __call__(self, obs: np.ndarray, goals: np.ndarray) -> np.ndarray:
        which = goals[:, 3].astype(int)
        visible = np.array(obs, dtype=np.float64)
        visible[:, GOAL_DIMS] = goals[:, :3] + self.aim[which]
        return np.stack([self.policies[c].get_action(o) for c, o in zip(which, visible, strict=True)])
