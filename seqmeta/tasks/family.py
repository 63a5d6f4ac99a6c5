"""What a task family is: a gymnasium env id, its task parameters, its splits and reference returns."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from importlib import resources
from typing import Any

import gymnasium as gym
import numpy as np

from seqmeta.errors import TaskSelectionError

SPLITS = ("train", "test", "all")


def index_ranges(indices) -> str:
    """Sorted task indices, runs of three or more shortened: ``2, 7, 8, 50-99``."""
    runs: list[list[int]] = []
    for i in sorted(int(i) for i in indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}, {b}" if b == a + 1 else f"{a}-{b}" for a, b in runs)


def describe_params(params: dict[str, Any]) -> str:
    """Task parameters as short text: ``goal=(0.086, -0.402)``; vectors of more than 3 values shortened,
    text as it is (``task_class=push-v3``)."""

    def value(v: Any) -> str:
        if isinstance(v, str):
            return v
        flat = np.ravel(np.asarray(v, dtype=np.float64))
        if flat.size == 1 and np.ndim(v) == 0:
            return f"{flat[0]:.4g}"
        shown = ", ".join(f"{x:.3g}" for x in flat[:3])
        return f"({shown})" if flat.size <= 3 else f"({shown}, ... {flat.size} values)"

    return ", ".join(f"{k}={value(v)}" for k, v in params.items())


@dataclass(frozen=True)
class TaskSet:
    """A fixed, seeded list of tasks of one family and its train/test split.

    ``params`` holds one dict of env kwargs per task: ``gymnasium.make(family.env_id, **params[i])``
    rebuilds task ``i`` exactly.
    """

    name: str
    params: tuple[dict[str, Any], ...]
    test_indices: tuple[int, ...]
    description: str

    def __post_init__(self) -> None:
        bad = [i for i in self.test_indices if not 0 <= i < len(self.params)]
        assert not bad, f"test indices {bad} out of range for {len(self.params)} tasks"

    def __len__(self) -> int:
        return len(self.params)

    @property
    def train_indices(self) -> tuple[int, ...]:
        """Tasks not held out; when every task is a test task (Cheetah-Dir), all of them."""
        held_out = set(self.test_indices)
        train = tuple(i for i in range(len(self.params)) if i not in held_out)
        return train or tuple(range(len(self.params)))

    def split_of(self, index: int) -> str:
        return "test" if index in self.test_indices else "train"

    def describe(self, index: int) -> str:
        """Task ``index`` by its parameters, e.g. ``goal_velocity=0.225`` (long vectors shortened)."""
        return describe_params(self.params[index])

    def select(self, tasks: str | int | Sequence[int]) -> list[int]:
        """Resolve ``"train"``, ``"test"``, ``"all"``, an index, or a list/comma string of indices."""
        if isinstance(tasks, str):
            if tasks in SPLITS:
                return {
                    "train": list(self.train_indices),
                    "test": list(self.test_indices),
                    "all": list(range(len(self.params))),
                }[tasks]
            try:
                tasks = [int(t) for t in tasks.split(",") if t.strip()]
            except ValueError:
                raise TaskSelectionError(
                    f"tasks={tasks!r} is neither one of {SPLITS} nor a comma-separated list of task "
                    f"indices; use e.g. --tasks test or --tasks 0,3,7"
                ) from None
        if isinstance(tasks, int | np.integer):
            tasks = [int(tasks)]
        indices = [int(t) for t in tasks]
        if not indices:
            raise TaskSelectionError("the task selection is empty; name at least one task")
        bad = [i for i in indices if not 0 <= i < len(self.params)]
        if bad:
            raise TaskSelectionError(
                f"task indices {bad} do not exist in task set {self.name!r}, which has "
                f"{len(self.params)} tasks (0..{len(self.params) - 1})"
            )
        if len(set(indices)) != len(indices):
            raise TaskSelectionError(f"task indices {indices} repeat a task; name each task once")
        return indices


@dataclass(frozen=True)
class SearchPlan:
    """How the ``search`` behavior looks for a task it cannot see, in a family whose reward is zero
    away from the task's goal (sparse): the expert acts for a sequence of candidate goals, the
    training tasks' goal features ordered and thinned to ``spacing`` apart and mapped by ``waypoints``
    (e.g. pulled in so the path is shorter while its rewards still cover the goals), until a reward
    shows the goal. A candidate counts as passed once ``distance(observations, candidates)`` (one
    number per env) is below ``reach``; the last one, where the sweep ends, only below ``arrive``,
    so the path goes all the way to the end of the range instead of turning away early and
    missing the goals there."""

    spacing: float
    distance: Callable[[np.ndarray, np.ndarray], np.ndarray]
    reach: float
    arrive: float
    waypoints: Callable[[np.ndarray], np.ndarray] = lambda goals: goals


@dataclass(frozen=True)
class ScriptedExpert:
    """A family's expert written as a function, no training needed (Point-Robot's analytic one,
    Meta-World's scripted policies), and the action noise that makes its lower skill levels.

    ``make()`` builds ``act(observations, goal_features) -> actions`` for N envs at once (built when a
    behavior policy is made, so a family's definition imports nothing heavy); ``noise`` maps each
    quality level to the range its per-episode Gaussian action-noise std is drawn from, in action units
    (``expert`` has (0, 0))."""

    make: Callable[[], Callable[[np.ndarray, np.ndarray], np.ndarray]]
    noise: dict[str, tuple[float, float]]
    description: str


def groups_of(n: int, size: int | None) -> list[slice]:
    """``range(n)`` as consecutive slices of at most ``size`` (one slice when ``size`` is None)."""
    size = size or max(n, 1)
    return [slice(start, start + size) for start in range(0, n, size)] or [slice(0, 0)]


class TaskEnvs(list):
    """Env factories of a family's tasks (``TaskFamily.env_fns``): a plain list of factories that also
    carries the family, the task params and the make_env keyword arguments."""

    def __init__(self, factories, family: TaskFamily, params: list[dict[str, Any]], kwargs: dict[str, Any]):
        super().__init__(factories)
        self.family, self.params, self.kwargs = family, params, kwargs

    def waves(self) -> list[slice]:
        """Groups of at most ``family.max_envs`` consecutive envs (one group when the family sets no limit):
        the envs of a batch larger than that are made and run one group after another."""
        return groups_of(len(self), self.family.max_envs)

    def part(self, rows: slice) -> TaskEnvs:
        """The factories of ``rows``, still carrying their family and task params."""
        return TaskEnvs(self[rows], self.family, self.params[rows], self.kwargs)

    def batched(self) -> gym.vector.VectorEnv | None:
        """The family's batched envs for these tasks, when it has them and no make_env option asks for
        more than they do (e.g. rendering)."""
        if self.family.vector_env is None or self.kwargs or len(self) != len(self.params):
            return None
        return self.family.vector_env(self.family, self.params)


@dataclass(frozen=True)
class TaskFamily:
    """A meta-RL task family: one environment whose reward or dynamics depend on task parameters.

    Attributes:
        name: the family's name, e.g. ``"cheetah-vel"``.
        env_id: the registered gymnasium id; task parameters are its kwargs.
        horizon: episode length in steps (the env's ``max_episode_steps``).
        task_sets: named task lists; ``default_task_set`` names the one used when none is given.
        goal_features: maps task params (one dict) to the vector a goal-conditioned behavior
            policy sees while acting. Never stored in datasets.
        sample_params: draws fresh task params (used to train goal-conditioned behavior policies).
        search: for sparse-reward families, how the ``search`` behavior looks for the goal (else None).
        expert: a scripted expert and its noisy skill levels (else the family's experts are trained
            goal-conditioned SAC policies shipped in ``seqmeta/behavior/weights``, or none).
        vector_env: ``(family, params) -> VectorEnv | None``, a batched implementation of the family's envs,
            one per task params dict, step for step the same as its gymnasium envs (``seqmeta.tasks.vector``);
            the rollout engine uses it where it can (where it returns None or is None: ``SyncVectorEnv``).
        max_envs: at most this many of the family's envs alive at once, where each holds much memory (a
            Meta-World env carries its own 19 MB MuJoCo model); evaluation and collection run larger
            batches in groups of this size, one after another (None: no limit).
    """

    name: str
    env_id: str
    horizon: int
    task_sets: dict[str, TaskSet]
    default_task_set: str
    goal_features: Callable[[dict[str, Any]], np.ndarray]
    sample_params: Callable[[np.random.Generator], dict[str, Any]]
    description: str = ""
    search: SearchPlan | None = None
    expert: ScriptedExpert | None = None
    vector_env: Callable[[TaskFamily, Sequence[dict[str, Any]]], gym.vector.VectorEnv] | None = None
    max_envs: int | None = None
    # Caches, filled on first use; not init fields, so a family made with dataclasses.replace starts its own.
    _spaces: dict[str, gym.Space] = field(default_factory=dict, compare=False, repr=False, init=False)
    _params_seen: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, init=False)

    def task_set(self, name: str | None = None) -> TaskSet:
        name = name or self.default_task_set
        if name not in self.task_sets:
            raise TaskSelectionError(
                f"family {self.name!r} has no task set {name!r}; choose one of {sorted(self.task_sets)}"
            )
        return self.task_sets[name]

    def make_env(self, params: dict[str, Any], **kwargs: Any) -> gym.Env:
        """One task's env, through ``gymnasium.make`` so wrappers and checks are the standard ones."""
        self.check_params([params])
        return self._make(params, **kwargs)

    def _make(self, params: dict[str, Any], **kwargs: Any) -> gym.Env:
        return gym.make(self.env_id, **params, **kwargs)

    def env_fns(self, params: Sequence[dict[str, Any]], **kwargs: Any) -> TaskEnvs:
        """One env factory per task parameter dict (what ``seqmeta.run_episodes`` takes); the list also
        says which family and tasks they are, so the engine can step them batched (``vector_env``). The
        parameters are checked here, once for all the factories."""
        self.check_params(params)
        return TaskEnvs([partial(self._make, p, **kwargs) for p in params], self, list(params), kwargs)

    def check_params(self, params: Sequence[dict[str, Any]]) -> None:
        """Refuse task parameters the family's envs cannot take, before any env is made: the parameter names
        of its task sets, each a finite number or array of a shape they use, or one of the texts they use
        (any value: task parameters outside every published split are welcome, NaN and typos are not)."""
        shapes, texts, required = self._param_kinds()
        names = sorted(shapes.keys() | texts.keys())
        example = describe_params(self.task_set().params[0])
        for i, task in enumerate(params):
            where = f"{self.name} task parameters #{i}"
            if not isinstance(task, dict):
                raise TaskSelectionError(f"{where} are a {type(task).__name__}; give a dict like {{{example}}}")
            missing, unknown = sorted(required - set(task)), sorted(set(task) - set(names))
            if missing or unknown:
                problems = [f"lack {missing}"] * bool(missing) + [f"have unknown {unknown}"] * bool(unknown)
                raise TaskSelectionError(f"{where} {' and '.join(problems)}: the family's are {names}, e.g. {example}")
            for key, value in task.items():
                if key in texts and (isinstance(value, str) or key not in shapes):
                    if value not in texts[key]:
                        raise TaskSelectionError(f"{where}: {key}={value!r} is not one of {sorted(texts[key])}")
                    continue
                try:
                    array = np.asarray(value, dtype=np.float64)
                except (TypeError, ValueError):
                    raise TaskSelectionError(f"{where}: {key} must be numbers, got {value!r}") from None
                if array.shape not in shapes[key]:
                    allowed = " or ".join(str(s) for s in sorted(shapes[key]))
                    raise TaskSelectionError(f"{where}: {key} has shape {array.shape}; the family's is {allowed}")
                if not np.isfinite(array).all():
                    raise TaskSelectionError(f"{where}: {key} holds NaN or inf; give finite numbers")

    def _param_kinds(self) -> tuple[dict[str, set[tuple[int, ...]]], dict[str, set[str]], set[str]]:
        """Over every task set: per parameter name the shapes its numbers take and the texts it takes, and the
        names every task gives (the others are optional)."""
        if not self._params_seen:
            shapes: dict[str, set[tuple[int, ...]]] = {}
            texts: dict[str, set[str]] = {}
            known = [task for task_set in self.task_sets.values() for task in task_set.params]
            for task in known:
                for key, value in task.items():
                    if isinstance(value, str):
                        texts.setdefault(key, set()).add(value)
                    else:
                        shapes.setdefault(key, set()).add(np.shape(value))
            required = set.intersection(*(set(task) for task in known)) if known else set()
            self._params_seen.update(shapes=shapes, texts=texts, required=required)
        return self._params_seen["shapes"], self._params_seen["texts"], self._params_seen["required"]

    def _space(self, which: str) -> gym.Space:
        if which not in self._spaces:
            env = self.make_env(self.task_set().params[0])
            self._spaces["observation"] = env.observation_space
            self._spaces["action"] = env.action_space
            env.close()
        return self._spaces[which]

    @property
    def observation_space(self) -> gym.spaces.Box:
        return self._space("observation")  # type: ignore[return-value]

    @property
    def action_space(self) -> gym.spaces.Box:
        return self._space("action")  # type: ignore[return-value]

    def reference_returns(self, task_set: str | None = None) -> dict[str, list[float | None]]:
        """Per-task mean returns of a uniform-random policy and of the shipped expert.

        ``None`` where no measurement exists yet (a family without a trained expert).
        Measured by ``python eval/reference_returns.py``.
        """
        name = task_set or self.default_task_set
        n = len(self.task_set(name))
        table = _reference_table().get(self.name, {}).get(name, {})
        return {level: list(table.get(level, [None] * n)) for level in ("random", "expert")}

    def normalization_problem(self, task_index: int, task_set: str | None = None) -> str | None:
        """Why scores on this task cannot be normalized, with the fix; None when they can."""
        ref = self.reference_returns(task_set)
        lo, hi = ref["random"][task_index], ref["expert"][task_index]
        if lo is None or hi is None or math.isclose(lo, hi):
            return (
                f"no reference returns for {self.name} task {task_index}; measure them into the package's table "
                f"with: python eval/reference_returns.py --family {self.name} --install"
            )
        if hi < lo:  # a scale that turns better returns into lower scores, or blows them up near hi = lo
            return (
                f"{self.name} task {task_index}: the expert's reference return ({hi:.4g}) is below the random policy's "
                f"({lo:.4g}), so scores cannot be normalized; train the family's behavior policy further "
                f"(python -m seqmeta.behavior train --family {self.name}), export it and measure the table again"
            )
        return None

    def normalized_score(
        self, returns: float | np.ndarray, task_index: int, task_set: str | None = None
    ) -> float | np.ndarray:
        """100 * (R - random) / (expert - random): 0 is the random policy, 100 the expert."""
        if problem := self.normalization_problem(task_index, task_set):
            raise TaskSelectionError(problem)
        ref = self.reference_returns(task_set)
        lo, hi = ref["random"][task_index], ref["expert"][task_index]
        return 100.0 * (np.asarray(returns) - lo) / (hi - lo)


@cache
def _reference_table() -> dict[str, Any]:
    path = resources.files("seqmeta.tasks") / "reference_returns.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())
