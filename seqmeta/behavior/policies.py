"""Behavior policies at several skill levels, batched over many envs.

A behavior policy sees each env's goal features while it acts (the task is known to the data
collector); the dataset stores only what a meta-learner may see. Quality levels:

- ``expert``: the family's scripted expert (Point-Robot, Meta-World) or the best shipped SAC snapshot,
  deterministic.
- ``medium``: the noisy scripted expert, or a SAC snapshot about halfway between random and expert,
  sampling its stochastic actions.
- ``mixed``: per episode, one skill picked at random among all shipped snapshots (or noise levels).
- ``random``: uniform over the action box.
- ``explore``: the expert of *another* task: each episode it acts for task parameters drawn afresh
  from the family's task distribution, in the true task (whose rewards are recorded). Its behavior
  says nothing about the task, only the rewards do, as in an agent's own exploration.
- ``sweep``: the expert acting, in turn, for a fixed sequence of tasks (``SWEEP_STEPS`` training tasks
  of the family's default list, evenly spaced in it), each for an equal part of the episode: the same
  deterministic behavior in every task, which passes through the range of tasks, so its rewards show
  where the task lies. A model can learn it as what to do before it knows the task.
- ``perturbed``: the expert acting for the true task, its actions perturbed by noise whose std is drawn
  per episode; the data records the expert's own actions (DART: perturbed states, clean labels), so a
  model learns how the expert comes back from states a little off its path, where a model's own small
  errors take it.
- ``search`` (sparse-reward families, see ``TaskFamily.search``): trials of ``TRIAL_EPISODES``
  episodes in one env, with memory: the expert acts for candidate goals in turn, resuming across the
  trial's episodes where it left off, until a reward shows the goal; from then on it is the expert.
  What it does in an episode follows from what its earlier episodes of the trial showed, so a model
  prompted with those episodes (``prompt_from_trial``) learns to act from its own earlier episodes.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import load_file

from seqmeta.behavior.sac import Actor
from seqmeta.errors import BehaviorPolicyError
from seqmeta.tasks import ScriptedExpert, TaskFamily

QUALITIES = ("expert", "medium", "mixed", "random", "explore", "sweep", "perturbed", "search")
SWEEP_STEPS = 4
# The perturbed and search levels' action noise std is drawn per episode from U[0, this] x half the action range.
# Wide, as in DART: the noisy episodes leave the expert's (or the plan's) path and the recorded actions, its own,
# lead back, so a model that drifts off the path in its own episodes has seen how to recover.
PERTURB_NOISE = 0.8
TRIAL_EPISODES = 4  # the search behavior's trial: round 0 and the 3 rounds the own-exploration protocol scores


class BehaviorPolicy:
    """Acts for N envs at once. ``start_episodes`` redraws per-episode choices for some slots."""

    quality: str
    trial_episodes = 1  # episodes in one env that share the policy's memory (1: none)
    # The actions the last ``act`` meant before its own perturbation, if the data should store those
    # (DART: perturbed states, clean labels); None: the data stores the actions taken.
    meant: np.ndarray | None = None

    def __init__(self, action_space: gym.spaces.Box, num_envs: int):
        self.low, self.high = action_space.low, action_space.high
        self.num_envs = num_envs

    def start_episodes(self, slots: np.ndarray, rng: np.random.Generator) -> None:
        """Called with the slots whose episode is starting (all slots at first)."""

    def observe(self, rewards: np.ndarray) -> None:
        """The rewards the envs returned for the last actions (0 for an env that just restarted)."""

    def act(self, obs: np.ndarray, goals: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, obs_dim) observations and (N, goal_dim) goal features -> (N, act_dim) actions."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.quality

    def perturb(self, action: np.ndarray, std: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``action`` plus Gaussian noise of std ``std`` (N,) x half the action range, clipped, to be taken;
        the data records ``action`` itself (``meant``)."""
        self.meant = np.clip(action, self.low, self.high).astype(np.float32)
        noise = std[:, None] * 0.5 * (self.high - self.low) * rng.standard_normal(action.shape)
        return np.clip(action + noise, self.low, self.high).astype(np.float32)


class RandomPolicy(BehaviorPolicy):
    quality = "random"

    def act(self, obs, goals, rng):
        return rng.uniform(self.low, self.high, size=(len(obs), len(self.low))).astype(np.float32)

    def describe(self) -> str:
        return "uniform random actions"


class ScriptedPolicy(BehaviorPolicy):
    """A family's scripted expert (``TaskFamily.expert``) plus Gaussian action noise whose std is drawn
    per episode from the quality level's range."""

    def __init__(self, action_space, num_envs, quality: str, expert: ScriptedExpert):
        super().__init__(action_space, num_envs)
        self.quality, self.expert = quality, expert
        self.noise_range = expert.noise[quality]
        self.noise = np.full(num_envs, self.noise_range[0])
        self.act_fn = expert.make()

    def start_episodes(self, slots, rng):
        self.noise[slots] = rng.uniform(*self.noise_range, size=len(slots))

    def act(self, obs, goals, rng):
        action = np.clip(self.act_fn(obs, goals), self.low, self.high)
        action = action + self.noise[:, None] * rng.standard_normal(action.shape)
        return np.clip(action, self.low, self.high).astype(np.float32)

    def describe(self) -> str:
        lo, hi = self.noise_range
        noise = f"noise std {lo}" if lo == hi else f"noise std ~ U[{lo}, {hi}] per episode"
        return f"{self.expert.description}, {noise}"


class SnapshotPolicy(BehaviorPolicy):
    """Shipped goal-conditioned SAC actors; each episode uses one of them, chosen at its start."""

    def __init__(self, action_space, num_envs, quality: str, actors: list[Actor], deterministic: bool, names):
        super().__init__(action_space, num_envs)
        self.quality, self.actors, self.deterministic, self.names = quality, actors, deterministic, names
        self.choice = np.zeros(num_envs, dtype=np.int64)

    def start_episodes(self, slots, rng):
        self.choice[slots] = rng.integers(0, len(self.actors), size=len(slots))

    @torch.no_grad()
    def act(self, obs, goals, rng):
        x = torch.from_numpy(np.concatenate([obs, goals], axis=-1).astype(np.float32))
        # Exploration noise comes from the caller's numpy generator: collection is reproducible.
        noise = torch.from_numpy(rng.standard_normal((len(obs), len(self.low))).astype(np.float32))
        out = np.empty((len(obs), len(self.low)), np.float32)
        for k, actor in enumerate(self.actors):
            rows = np.flatnonzero(self.choice[: len(obs)] == k)
            if len(rows):
                out[rows] = actor(x[rows], deterministic=self.deterministic, noise=noise[rows])[0].numpy()
        return self.low + (out + 1.0) * 0.5 * (self.high - self.low)

    def describe(self) -> str:
        mode = "deterministic" if self.deterministic else "stochastic"
        return f"goal-conditioned SAC snapshot(s) {', '.join(self.names)} ({mode})"


class PerturbedPolicy(BehaviorPolicy):
    """The expert for the true task, its actions perturbed by noise whose std is drawn per episode; the
    data records the expert's own actions (DART: perturbed states, clean labels)."""

    quality = "perturbed"

    def __init__(self, action_space, num_envs, expert: BehaviorPolicy):
        super().__init__(action_space, num_envs)
        self.expert = expert
        self.noise = np.zeros(num_envs)  # action noise std, a fraction of the half action range, per episode

    def start_episodes(self, slots, rng):
        self.noise[slots] = rng.uniform(0.0, PERTURB_NOISE, size=len(slots))
        self.expert.start_episodes(slots, rng)

    def act(self, obs, goals, rng):
        return self.perturb(self.expert.act(obs, goals, rng), self.noise[: len(obs)], rng)

    def describe(self) -> str:
        return (
            f"perturbed: {self.expert.describe()}, action noise std ~ U[0, {PERTURB_NOISE}] x half the action range "
            "per episode, the actions without noise recorded"
        )


class OtherTaskExpert(BehaviorPolicy):
    """The expert, acting for goal features other than the true task's (``goals_for`` says which):
    a behavior that says nothing about the task; only the rewards recorded in the true task do."""

    def __init__(self, action_space, num_envs, expert: BehaviorPolicy, family: TaskFamily):
        super().__init__(action_space, num_envs)
        self.expert, self.family = expert, family

    def start_episodes(self, slots, rng):
        self.expert.start_episodes(slots, rng)

    def goals_for(self, n: int) -> np.ndarray:
        raise NotImplementedError

    def act(self, obs, goals, rng):
        return self.expert.act(obs, self.goals_for(len(obs)), rng)


class ExplorePolicy(OtherTaskExpert):
    """Per episode, task parameters drawn afresh from the family's distribution."""

    quality = "explore"

    def __init__(self, action_space, num_envs, expert, family):
        super().__init__(action_space, num_envs, expert, family)
        self.goals: np.ndarray | None = None

    def start_episodes(self, slots, rng):
        drawn = np.stack([self.family.goal_features(self.family.sample_params(rng)) for _ in slots])
        if self.goals is None:
            self.goals = np.zeros((self.num_envs, drawn.shape[1]), np.float32)
        self.goals[slots] = drawn
        super().start_episodes(slots, rng)

    def goals_for(self, n):
        return self.goals[:n]

    def describe(self) -> str:
        return f"explore: {self.expert.describe()}, acting for task parameters drawn per episode (not the task's)"


class SweepPolicy(OtherTaskExpert):
    """A fixed sequence of the family's training tasks, switching at equal intervals of the episode."""

    quality = "sweep"

    def __init__(self, action_space, num_envs, expert, family):
        super().__init__(action_space, num_envs, expert, family)
        task_set = family.task_set()
        train = list(task_set.train_indices)
        picks = [train[round(i * (len(train) - 1) / (SWEEP_STEPS - 1))] for i in range(SWEEP_STEPS)]
        self.schedule = np.stack([family.goal_features(task_set.params[t]) for t in picks])
        self.step = np.zeros(num_envs, np.int64)

    def start_episodes(self, slots, rng):
        self.step[slots] = 0
        super().start_episodes(slots, rng)

    def goals_for(self, n):
        phase = np.minimum(self.step[:n] * SWEEP_STEPS // self.family.horizon, SWEEP_STEPS - 1)
        self.step[:n] += 1
        return self.schedule[phase]

    def describe(self) -> str:
        return f"sweep: {self.expert.describe()}, acting for {SWEEP_STEPS} fixed training tasks in turn"


class SearchPolicy(OtherTaskExpert):
    """Looks for the goal along the family's ``SearchPlan`` candidates; trials of ``TRIAL_EPISODES``."""

    quality = "search"
    trial_episodes = TRIAL_EPISODES

    def __init__(self, action_space, num_envs, expert, family):
        super().__init__(action_space, num_envs, expert, family)
        plan = family.search
        task_set = family.task_set()
        goals = np.stack([family.goal_features(task_set.params[t]) for t in task_set.train_indices])
        goals = goals[np.lexsort(goals.T[::-1])]  # ordered by the first feature, then the next, ...
        kept = [goals[0]]
        for goal in goals[1:]:
            if np.linalg.norm(goal - kept[-1]) >= plan.spacing:
                kept.append(goal)
        if not np.array_equal(kept[-1], goals[-1]):
            kept.append(goals[-1])  # both ends of the range are searched
        self.candidates = np.asarray(plan.waypoints(np.stack(kept)), np.float32)
        self.plan = plan
        self.episode = np.full(num_envs, -1, np.int64)  # episodes started in each env
        self.pointer = np.zeros(num_envs, np.int64)  # the candidate acted for; kept across a trial's episodes
        self.found = np.zeros(num_envs, bool)  # a reward showed the goal in this trial
        self.noise = np.zeros(num_envs)  # action noise std, a fraction of the half action range, per episode

    def start_episodes(self, slots, rng):
        self.episode[slots] += 1
        new_trial = slots[self.episode[slots] % self.trial_episodes == 0]
        self.pointer[new_trial], self.found[new_trial] = 0, False
        self.noise[slots] = rng.uniform(0.0, PERTURB_NOISE, size=len(slots))
        super().start_episodes(slots, rng)

    def observe(self, rewards):
        self.found[: len(rewards)] |= np.asarray(rewards) > 0

    def act(self, obs, goals, rng):
        n = len(obs)
        candidate = self.candidates[self.pointer[:n] % len(self.candidates)]
        searching = ~self.found[:n]
        action = self.expert.act(obs, np.where(searching[:, None], candidate, goals).astype(np.float32), rng)
        # The last candidate is where the sweep ends: the path goes all the way to it (`arrive`) instead of
        # turning away once near it (`reach`), else the goals past the end of the range are never found.
        last = self.pointer[:n] % len(self.candidates) == len(self.candidates) - 1
        close = self.plan.distance(obs, candidate) < np.where(last, self.plan.arrive, self.plan.reach)
        self.pointer[:n] += searching & close
        # Zero-mean noise, its scale drawn per episode, varies the trials (where rewards show up) around the plan;
        # the data stores the plan's own actions: imitating the noisy ones, clipped at the action bounds, would
        # teach a slower search than the plan's.
        return self.perturb(action, self.noise[:n], rng)

    def describe(self) -> str:
        return (
            f"search: {self.expert.describe()}, acting for {len(self.candidates)} candidate goals "
            f"{self.plan.spacing} apart, each until within {self.plan.reach} of it (the last within "
            f"{self.plan.arrive}), until a reward shows the goal; trials of "
            f"{self.trial_episodes} episodes that resume the search; action noise std ~ U[0, {PERTURB_NOISE}] x half "
            "the action range per episode, the actions without noise recorded"
        )


def _weights_dir(family: str):
    return resources.files("seqmeta.behavior") / "weights" / family


@cache
def shipped_levels(family: str) -> dict:
    """The ``levels.json`` shipped for a family, or {} when it has no trained behavior policy."""
    path = _weights_dir(family) / "levels.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def available_qualities(family: TaskFamily) -> list[str]:
    search = ["search"] if family.search is not None else []
    if family.expert is not None:
        return [q for q in QUALITIES if q in family.expert.noise] + ["random", "explore", "sweep", "perturbed", *search]
    levels = shipped_levels(family.name).get("levels", {})
    others = ["explore", "sweep", "perturbed", *search] if "expert" in levels else []
    return [q for q in QUALITIES if q in levels] + ["random"] + others


def load_actor(path) -> Actor:
    """Rebuild an ``Actor`` from a safetensors snapshot (dims are in its metadata)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        dims = json.loads(f.metadata()["dims"])
    actor = Actor(dims["obs_dim"], dims["goal_dim"], dims["act_dim"], dims["hidden"])
    actor.load_state_dict(load_file(str(path)))
    return actor.eval()


def load_behavior_policy(family: TaskFamily, quality: str, num_envs: int) -> BehaviorPolicy:
    """The behavior policy of ``family`` at ``quality``, acting for ``num_envs`` envs."""
    if quality == "search" and family.search is None and "expert" in available_qualities(family):
        raise BehaviorPolicyError(
            f"{family.name} has no search plan (a TaskFamily.search, for sparse-reward families); available: "
            f"{available_qualities(family)}"
        )
    if quality not in available_qualities(family):
        raise BehaviorPolicyError(
            f"no {quality!r} behavior policy for {family.name}; available: {available_qualities(family)}. "
            f"Train one with `python -m seqmeta.behavior train --family {family.name}` and export it."
        )
    space = family.action_space
    if quality == "random":
        return RandomPolicy(space, num_envs)
    if quality == "perturbed":
        return PerturbedPolicy(space, num_envs, load_behavior_policy(family, "expert", num_envs))
    if quality in ("explore", "sweep", "search"):
        kind = {"explore": ExplorePolicy, "sweep": SweepPolicy, "search": SearchPolicy}[quality]
        return kind(space, num_envs, load_behavior_policy(family, "expert", num_envs), family)
    if family.expert is not None:
        return ScriptedPolicy(space, num_envs, quality, family.expert)
    level = shipped_levels(family.name)["levels"][quality]
    actors = [load_actor(_weights_dir(family.name) / f"{name}.safetensors") for name in level["snapshots"]]
    return SnapshotPolicy(space, num_envs, quality, actors, level["deterministic"], level["snapshots"])
