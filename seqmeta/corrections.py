"""Corrections (DAgger): a trained model's own trials, each step labeled by a behavior policy.

    seqmeta collect --family point-robot-sparse --quality search,expert,search-corrections \\
        --acting-model outputs/train/point-robot-sparse-own/model --tasks all --episodes-per-task 80 --output-dir DATA

A model trained to imitate a behavior acts a little differently from it, and its own episodes drift
where the behavior's never went: a search that turns a step late, a goal it approaches from an odd
side. At meta-test it reads exactly those episodes (the own-exploration protocol). Here the model acts
under that protocol in a task (round 0 without a prompt, round r prompted with its episodes of rounds
< r, one trial of the behavior's length), its actions perturbed by noise drawn per episode so the
trials vary, while the behavior runs alongside on the same observations and rewards and says, at
every step, what it would do from there (it knows the task, and remembers what the trial has shown).
The episodes keep the states and rewards the model met and the behavior's actions: the quality level
``<behavior>-corrections``. Training on them with the behavior's own data teaches the model to
recover from its own mistakes (Ross et al., DAgger, 2011).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from seqmeta.behavior.policies import load_behavior_policy
from seqmeta.data.collect import BehaviorActor
from seqmeta.data.episodes import Episodes
from seqmeta.errors import ConfigError
from seqmeta.evaluation import own_rounds
from seqmeta.tasks.family import TaskFamily, groups_of

SUFFIX = "-corrections"
NOISE = 0.3  # the model's action noise std is drawn per episode from U[0, this] x half the action range


class _Corrected:
    """The agent acts (with noise); the teacher, fed the same observations and rewards, gives the record."""

    def __init__(self, agent, teacher: BehaviorActor, rng: np.random.Generator, low, high):
        self.agent, self.teacher, self.rng = agent, teacher, rng
        self.low, self.high = low, high
        self.noise = np.zeros(agent.num_envs)

    def start_episodes(self, slots: np.ndarray, observations: np.ndarray) -> None:
        self.agent.start_episodes(slots, observations)
        self.teacher.start_episodes(slots, observations)
        self.noise[slots] = self.rng.uniform(0.0, NOISE, size=len(slots))

    def act(self, observations: np.ndarray, rewards: np.ndarray | None):
        taken = self.agent.act(observations, rewards)
        label = self.teacher.act(observations, rewards)
        label = label[1] if isinstance(label, tuple) else label  # a behavior's own noise is not its label
        scale = self.noise[:, None] * 0.5 * (self.high - self.low)
        taken = np.clip(taken + scale * self.rng.standard_normal(taken.shape), self.low, self.high)
        return taken.astype(np.float32), np.asarray(label, np.float32)


def corrections_of(
    model, model_path: str, family: TaskFamily, qualities: Sequence[str], episodes_per_task: int, progress: bool = True
):
    """The ``more`` of ``collect_dataset``: for its tasks, ``model``'s corrections for each quality of
    ``qualities`` (each ``<behavior>-corrections``), with the description the dataset records."""

    def more(params, indices, seed):
        out = {}
        for quality in qualities:
            episodes = collect_corrections(
                model, family, quality, params, episodes_per_task, indices, seed + 7, progress
            )
            out[quality] = (
                episodes,
                f"{quality}: the model {model_path} acting under the own-exploration protocol (action noise std ~ "
                f"U[0, {NOISE}] x half the action range per episode), every step labeled by {quality[: -len(SUFFIX)]}",
            )
        return out

    return more


def collect_corrections(
    model,
    family: TaskFamily,
    quality: str,
    params: Sequence[dict[str, Any]],
    episodes_per_task: int,
    task_index: Sequence[int],
    seed: int = 0,
    progress: bool = True,
) -> Episodes:
    """``episodes_per_task`` episodes per task (whole trials of the behavior's length) of ``model``,
    labeled by the behavior ``quality`` minus its ``-corrections`` suffix; quality ``quality``."""
    if not quality.endswith(SUFFIX):
        raise ConfigError(f"a corrections quality ends with {SUFFIX}, e.g. search{SUFFIX}; got {quality!r}")
    behavior = quality[: -len(SUFFIX)]
    rounds = load_behavior_policy(family, behavior, 1).trial_episodes
    if episodes_per_task % rounds:
        raise ConfigError(
            f"{quality} runs whole trials of {rounds} episodes: --episodes-per-task must be a multiple of {rounds}, "
            f"got {episodes_per_task}"
        )
    cfg = model.config
    if cfg.family and cfg.family != family.name:
        raise ConfigError(f"the acting model was trained on {cfg.family}, not {family.name}: use a {family.name} model")
    widths = (family.observation_space.shape[0], family.action_space.shape[0])
    if (cfg.state_dim, cfg.act_dim) != widths:
        raise ConfigError(
            f"the acting model takes observations of width {cfg.state_dim} and actions of width {cfg.act_dim}; "
            f"{family.name} has {widths[0]} and {widths[1]}: use a {family.name} model"
        )
    params, tags = list(params), np.asarray(task_index, np.int64)
    trials = episodes_per_task // rounds  # envs per task, each seeded apart from the envs of other groups
    groups = groups_of(len(params), max(1, family.max_envs // trials) if family.max_envs else None)
    if len(groups) > 1:  # more envs than the family runs at once: groups of tasks, one after another
        parts = [
            collect_corrections(model, family, quality, params[g], episodes_per_task, tags[g], seed + s, progress)
            for g, s in zip(groups, [g.start * trials for g in groups], strict=True)
        ]
        return Episodes.concatenate(parts)
    slot_task = np.repeat(np.arange(len(params)), trials)  # one trial per env
    n = len(slot_task)
    env_fns = family.env_fns([params[t] for t in slot_task])
    goals = np.stack([family.goal_features(params[t]) for t in slot_task]).astype(np.float32)
    rng = np.random.default_rng(seed)
    teacher = BehaviorActor(load_behavior_policy(family, behavior, n), goals, rng)
    space = family.action_space
    history = own_rounds(
        model,
        env_fns,
        family.horizon,
        rounds,
        lambda prompts, history: np.zeros(n),  # the model's return input; a behavior with memory ignores it
        seed,
        progress,
        wrap=lambda agent: _Corrected(agent, teacher, rng, space.low, space.high),
    )
    # One episode per env and round: trial k is env k's rounds 0, 1, ... in order, its episodes contiguous.
    order = np.arange(n * rounds).reshape(rounds, n).T.ravel()
    parts = [
        dataclasses.replace(
            h.episodes,
            rewards=h.env_rewards.astype(np.float32),
            task_index=tags[slot_task[h.slot]],
            quality=np.full(n, quality, object),
            trial_episode=np.full(n, r, np.int64),
        )
        for r, h in enumerate(history)
    ]
    episodes = Episodes.concatenate(parts).take(order)
    return episodes.take(np.argsort(episodes.task_index, kind="stable"))
