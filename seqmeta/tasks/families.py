"""The task families seqmeta defines, their seeded task lists and splits, and their gymnasium ids.

Every task list is drawn once from a fixed seed (1337, as in PEARL) and never changes; a task's
index is therefore a stable name for it. Splits:

| family | task set | tasks | test indices | notes |
|---|---|---|---|---|
| point-robot | default | 50 goals ~ U[-1, 1]^2 | 45-49 | 20 steps |
| point-robot-sparse | default | 50 goals on the upper unit half-circle | 45-49 | radius 0.2, 20 steps |
| cheetah-vel | prompt-dt (default) | 40 velocities linspace(0.075, 3.0) | 2, 7, 15, 23, 26 | MACAW / Prompt-DT split |
| cheetah-vel | uniform-50 | 50 velocities ~ U[0.075, 3.0] | 45-49 | |
| cheetah-dir | default | directions +1, -1 | 0, 1 | train = test, as in PEARL |
| ant-dir | prompt-dt (default) | 50 angles ~ U[0, 2pi) | 6, 17, 23, 30, 41 | Prompt-DT's indices |
| hopper-params | default | 50 dynamics draws | 45-49 | |
| walker-params | default | 50 dynamics draws | 45-49 | |
| metaworld-ml1-reach, -push, -pick-place | ml1 | ML1's 50 train and 50 test goals, seed 1337 | 50-99 | 500 steps |
| metaworld-ml10 | ml10 | 50 goals of each of ML10's 10 train and 5 test classes, seed 1337 | 500-749 | 500 steps |
"""

from __future__ import annotations

import difflib
from typing import Any

import gymnasium as gym
import numpy as np

from seqmeta.errors import UnknownFamilyError
from seqmeta.tasks.family import ScriptedExpert, SearchPlan, TaskFamily, TaskSet
from seqmeta.tasks.locomotion import CheetahDirEnv, CheetahVelEnv, HopperParamsEnv, WalkerParamsEnv, sample_log_scales
from seqmeta.tasks.vector import (
    ant_dir_vector_env,
    cheetah_dir_rewards,
    cheetah_vector_env,
    cheetah_vel_rewards,
    upright_vector_env,
)

SEED = 1337
NUM_TASKS = 50
LAST_FIVE = tuple(range(NUM_TASKS - 5, NUM_TASKS))

_ENV_IDS = {
    "point-robot": ("seqmeta/PointRobot-v0", "seqmeta.tasks.point_robot:PointRobotEnv", 20, {}),
    "point-robot-sparse": (
        "seqmeta/PointRobotSparse-v0",
        "seqmeta.tasks.point_robot:PointRobotEnv",
        20,
        {"sparse": True, "goal_radius": 0.2},
    ),
    "cheetah-vel": ("seqmeta/CheetahVel-v0", "seqmeta.tasks.locomotion:CheetahVelEnv", 200, {}),
    "cheetah-dir": ("seqmeta/CheetahDir-v0", "seqmeta.tasks.locomotion:CheetahDirEnv", 200, {}),
    "ant-dir": ("seqmeta/AntDir-v0", "seqmeta.tasks.locomotion:AntDirEnv", 200, {}),
    "hopper-params": ("seqmeta/HopperParams-v0", "seqmeta.tasks.locomotion:HopperParamsEnv", 200, {}),
    "walker-params": ("seqmeta/WalkerParams-v0", "seqmeta.tasks.locomotion:WalkerParamsEnv", 200, {}),
    "metaworld": ("seqmeta/MetaWorld-v0", "seqmeta.tasks.metaworld:MetaWorldEnv", 500, {}),
}
# The ML1 families, metaworld-ml1-<class>, and their medium level's action-noise std: the scripted
# experts shrug off noise to different degrees (reach still succeeds under noise that stops push),
# so each class has its own, set by trying stds 0.5, 1 and 2 on a few goals (no repository command yet).
ML1_MEDIUM_NOISE = {"reach": 2.0, "push": 0.5, "pick-place": 0.7}
# Point-Robot's expert: straight to the goal at full speed; its skill levels add action noise.
POINT_ROBOT_EXPERT = ScriptedExpert(
    make=lambda: lambda obs, goals: np.clip(goals - obs, -0.1, 0.1),
    noise={"expert": (0.0, 0.0), "medium": (0.1, 0.1), "mixed": (0.0, 0.2)},
    description="analytic expert clip(g - s, 0.1)",
)


def register_envs() -> None:
    """Register every family's env id with gymnasium (idempotent)."""
    for env_id, entry_point, horizon, kwargs in _ENV_IDS.values():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point, max_episode_steps=horizon, kwargs=kwargs)


def _point_robot() -> TaskFamily:
    goals = np.random.default_rng(SEED).uniform(-1.0, 1.0, size=(NUM_TASKS, 2)).round(6)
    params = tuple({"goal": [float(x), float(y)]} for x, y in goals)
    return TaskFamily(
        name="point-robot",
        env_id=_ENV_IDS["point-robot"][0],
        horizon=20,
        task_sets={"default": TaskSet("default", params, LAST_FIVE, "50 goals ~ U[-1, 1]^2, seed 1337")},
        default_task_set="default",
        goal_features=lambda p: np.asarray(p["goal"], dtype=np.float32),
        sample_params=lambda rng: {"goal": rng.uniform(-1.0, 1.0, size=2).tolist()},
        description="Reach an unseen goal in the plane; dense reward -||s - g||.",
        expert=POINT_ROBOT_EXPERT,
    )


def _half_circle_goal(angle: float) -> dict[str, Any]:
    return {"goal": [round(float(np.cos(angle)), 6), round(float(np.sin(angle)), 6)]}


def _point_robot_sparse() -> TaskFamily:
    angles = np.linspace(0.0, np.pi, NUM_TASKS)
    np.random.default_rng(SEED).shuffle(angles)
    params = tuple(_half_circle_goal(a) for a in angles)
    return TaskFamily(
        name="point-robot-sparse",
        env_id=_ENV_IDS["point-robot-sparse"][0],
        horizon=20,
        task_sets={
            "default": TaskSet("default", params, LAST_FIVE, "50 goals on the upper unit half-circle, shuffled")
        },
        default_task_set="default",
        goal_features=lambda p: np.asarray(p["goal"], dtype=np.float32),
        sample_params=lambda rng: _half_circle_goal(rng.uniform(0.0, np.pi)),
        description="Reach an unseen goal on the half-circle; reward only within 0.2 of it.",
        expert=POINT_ROBOT_EXPERT,
        # Candidates 0.3 apart (less than twice the 0.2 reward radius), pulled in to radius 0.9: a shorter
        # path whose rewards still show every goal; each passed within 0.2, the last one (the sweep's end)
        # within 0.05. Chosen by the search behavior's own score on goals drawn from the whole half circle,
        # its mean and its worst goal (eval/drawn_tasks.py, option --behavior search; SearchPlan in family.py).
        search=SearchPlan(
            spacing=0.3,
            distance=lambda obs, goal: np.linalg.norm(obs - goal, axis=-1),
            reach=0.2,
            arrive=0.05,
            waypoints=lambda goals: 0.9 * goals,
        ),
    )


def _cheetah_vel() -> TaskFamily:
    linspace = np.linspace(0.075, 3.0, 40).round(6)
    uniform = np.random.default_rng(SEED).uniform(0.075, 3.0, size=NUM_TASKS).round(6)
    return TaskFamily(
        name="cheetah-vel",
        env_id=_ENV_IDS["cheetah-vel"][0],
        horizon=200,
        task_sets={
            "prompt-dt": TaskSet(
                "prompt-dt",
                tuple({"goal_velocity": float(v)} for v in linspace),
                (2, 7, 15, 23, 26),
                "MACAW / Prompt-DT: 40 velocities linspace(0.075, 3.0), test indices 2, 7, 15, 23, 26",
            ),
            "uniform-50": TaskSet(
                "uniform-50",
                tuple({"goal_velocity": float(v)} for v in uniform),
                LAST_FIVE,
                "50 velocities ~ U[0.075, 3.0], seed 1337",
            ),
        },
        default_task_set="prompt-dt",
        goal_features=lambda p: np.asarray([p["goal_velocity"]], dtype=np.float32),
        sample_params=lambda rng: {"goal_velocity": float(rng.uniform(0.0, 3.0))},
        description="Run HalfCheetah at an unseen target velocity; reward -|v - v*| - 0.05||a||^2.",
        vector_env=cheetah_vector_env(cheetah_vel_rewards, CheetahVelEnv),
    )


def _cheetah_dir() -> TaskFamily:
    params = ({"direction": 1.0}, {"direction": -1.0})
    return TaskFamily(
        name="cheetah-dir",
        env_id=_ENV_IDS["cheetah-dir"][0],
        horizon=200,
        task_sets={"default": TaskSet("default", params, (0, 1), "forward (+1) and backward (-1); train = test")},
        default_task_set="default",
        goal_features=lambda p: np.asarray([p["direction"]], dtype=np.float32),
        sample_params=lambda rng: {"direction": float(rng.choice([-1.0, 1.0]))},
        description="Run HalfCheetah forward or backward; reward d * v - 0.05||a||^2.",
        vector_env=cheetah_vector_env(cheetah_dir_rewards, CheetahDirEnv),
    )


def _ant_dir() -> TaskFamily:
    angles = np.random.default_rng(SEED).uniform(0.0, 2 * np.pi, size=NUM_TASKS).round(6)
    return TaskFamily(
        name="ant-dir",
        env_id=_ENV_IDS["ant-dir"][0],
        horizon=200,
        task_sets={
            "prompt-dt": TaskSet(
                "prompt-dt",
                tuple({"angle": float(a)} for a in angles),
                (6, 17, 23, 30, 41),
                "50 angles ~ U[0, 2pi), seed 1337; Prompt-DT's test indices 6, 17, 23, 30, 41",
            )
        },
        default_task_set="prompt-dt",
        goal_features=lambda p: np.asarray([np.cos(p["angle"]), np.sin(p["angle"])], dtype=np.float32),
        sample_params=lambda rng: {"angle": float(rng.uniform(0.0, 2 * np.pi))},
        description="Run the Ant in an unseen direction theta; 27-d observation without contact forces.",
        vector_env=ant_dir_vector_env,
    )


def _params_family(name: str, base_env: str, env_class: type) -> TaskFamily:
    model = gym.make(base_env).unwrapped.model  # shapes of the parameters to scale
    rng = np.random.default_rng(SEED)
    params = tuple(sample_log_scales(model, rng) for _ in range(NUM_TASKS))
    return TaskFamily(
        name=name,
        env_id=_ENV_IDS[name][0],
        horizon=200,
        task_sets={"default": TaskSet("default", params, LAST_FIVE, "50 dynamics draws (rand_param_envs laws)")},
        default_task_set="default",
        goal_features=lambda p: np.concatenate([np.ravel(v) for v in p.values()]).astype(np.float32),
        sample_params=lambda rng: sample_log_scales(model, rng),
        description=f"{base_env} with mass, inertia and friction x 1.5^U(-3,3) and damping x 1.3^U(-3,3).",
        vector_env=upright_vector_env(env_class),
    )


def _metaworld(name: str, benchmark: str, task_class: str | None, noise: float, about: str) -> TaskFamily:
    """A Meta-World family: the benchmark's own train and test tasks (ML1: goals of one class; ML10: the
    train classes' goals, then the held-out classes' goals)."""
    from seqmeta.tasks import metaworld

    train, test = metaworld.shipped_tasks(benchmark, task_class)
    params = tuple(train + test)
    classes = tuple(dict.fromkeys(p["task_class"] for p in params))
    set_name = benchmark.lower()
    return TaskFamily(
        name=name,
        env_id=_ENV_IDS["metaworld"][0],
        horizon=metaworld.HORIZON,
        task_sets={
            set_name: TaskSet(
                set_name,
                params,
                tuple(range(len(train), len(params))),
                f"Meta-World {benchmark}, seed {SEED}: {about}",
            )
        },
        default_task_set=set_name,
        goal_features=lambda p: metaworld.goal_features(p, classes),
        sample_params=lambda rng: train[rng.integers(len(train))],
        description=f"Meta-World {task_class or benchmark}: unseen goals"
        + ("" if task_class else " and held-out task classes")
        + " (the goal hidden from the observation); success rate.",
        expert=ScriptedExpert(
            make=lambda: metaworld.ScriptedExperts(classes),
            noise={"expert": (0.0, 0.0), "medium": (noise, noise), "mixed": (0.0, 2 * noise)},
            description=f"Meta-World's scripted {task_class or 'per-class'} policy, shown the goal",
        ),
        max_envs=100,  # each env holds its own 19 MB MuJoCo model
    )


def _metaworld_ml1(name: str) -> TaskFamily:
    about = "its 50 train goals (0-49) and 50 test goals (50-99)"
    return _metaworld(f"metaworld-ml1-{name}", "ML1", f"{name}-v3", ML1_MEDIUM_NOISE[name], about)


def _metaworld_ml10() -> TaskFamily:
    about = "50 goals of each of its 10 train classes (0-499), then of its 5 test classes (500-749)"
    return _metaworld("metaworld-ml10", "ML10", None, 0.5, about)


_BUILDERS = {
    "point-robot": _point_robot,
    "point-robot-sparse": _point_robot_sparse,
    "cheetah-vel": _cheetah_vel,
    "cheetah-dir": _cheetah_dir,
    "ant-dir": _ant_dir,
    "hopper-params": lambda: _params_family("hopper-params", "Hopper-v5", HopperParamsEnv),
    "walker-params": lambda: _params_family("walker-params", "Walker2d-v5", WalkerParamsEnv),
    **{f"metaworld-ml1-{c}": (lambda c=c: _metaworld_ml1(c)) for c in ML1_MEDIUM_NOISE},
    "metaworld-ml10": _metaworld_ml10,
}
_FAMILIES: dict[str, TaskFamily] = {}


def list_families() -> list[str]:
    return list(_BUILDERS)


def register_family(family: TaskFamily, replace: bool = False) -> TaskFamily:
    """Make a user's task family known by name: ``get_family``, datasets, models, evaluation and the
    CLI then treat it like seqmeta's own. Its ``env_id`` must be registered with gymnasium
    (``gymnasium.register``), with ``horizon`` as its episode length. Returns the family.

        family = seqmeta.TaskFamily(name="my-reach", env_id="MyReach-v0", horizon=50,
            task_sets={"default": seqmeta.TaskSet("default", ({"goal": 0.3}, {"goal": 0.9}), (1,), "two goals")},
            default_task_set="default", goal_features=lambda p: np.array([p["goal"]], np.float32),
            sample_params=lambda rng: {"goal": float(rng.uniform())})
        seqmeta.register_family(family)
    """
    if not isinstance(family, TaskFamily):
        raise UnknownFamilyError(f"register_family takes a seqmeta.TaskFamily, got {type(family).__name__}")
    if family.name in _BUILDERS and not replace:
        raise UnknownFamilyError(
            f"a task family called {family.name!r} exists already; choose another name or pass replace=True"
        )
    if family.env_id not in gym.registry:
        raise UnknownFamilyError(
            f"{family.name}: env id {family.env_id!r} is not registered with gymnasium; call "
            f"gymnasium.register({family.env_id!r}, entry_point=..., max_episode_steps={family.horizon}) first"
        )
    if family.max_envs is not None and (not isinstance(family.max_envs, int) or family.max_envs < 1):
        raise UnknownFamilyError(
            f"{family.name}: max_envs={family.max_envs!r}; give the number of its envs that may run at once (1 or "
            "more), or None for no limit"
        )
    _BUILDERS[family.name] = lambda: family
    _FAMILIES[family.name] = family
    return family


def get_family(name: str) -> TaskFamily:
    """The family called ``name`` (built once, then cached)."""
    if name not in _BUILDERS:
        near = difflib.get_close_matches(str(name), list(_BUILDERS), n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise UnknownFamilyError(f"unknown task family {name!r}; {hint}choose one of {list_families()}")
    if name not in _FAMILIES:
        _FAMILIES[name] = _BUILDERS[name]()
    return _FAMILIES[name]
