"""Your own task: run a pretrained seqmeta model in any gymnasium env, prompted with episodes you give.

    make_env = lambda: MyEnv(goal=0.7)                     # any gymnasium env with flat Box spaces
    seqmeta.check_env(model, make_env, demos=demos)         # refuses an env that does not fit the model
    result = seqmeta.evaluate_env(model, make_env, demos=demos, episodes=10)
    result.mean_return, result.success_rate, result.rollouts.episodes

Everything runs through the one rollout engine (``seqmeta.rollout``): ``episodes`` copies of the env
in one vector env, copy i reset with seed ``seed + i``, the model acting for all of them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

from seqmeta.agent import RETURN_SCALE_LIMIT, Agent
from seqmeta.errors import ConfigError, EnvMismatchError
from seqmeta.prompts import as_episodes, prompts_from_episodes
from seqmeta.rollout import Rollouts, run_episodes

# Demonstration rewards beyond this many reward stds (returns: ``RETURN_SCALE_LIMIT`` times the training data's
# largest |return|) are outside anything the model has seen: its return and reward embeddings would be
# extrapolating, so such an env is refused rather than silently mis-read.
REWARD_SCALE_LIMIT = 50.0


@dataclass
class EnvEvaluation:
    """``evaluate_env``'s result: per-episode returns (and success where the env reports it)."""

    returns: np.ndarray
    success: np.ndarray | None
    target_returns: np.ndarray
    rollouts: Rollouts

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean())

    @property
    def std_return(self) -> float:
        return float(self.returns.std())

    @property
    def success_rate(self) -> float | None:
        return None if self.success is None else float(self.success.mean())

    def as_dict(self) -> dict[str, Any]:
        return {
            "returns": self.returns.tolist(),
            "mean_return": self.mean_return,
            "std_return": self.std_return,
            "success_rate": self.success_rate,
            "target_returns": self.target_returns.tolist(),
        }


def env_factory(env: Callable[[], gym.Env] | str, **kwargs: Any) -> Callable[[], gym.Env]:
    """An env factory from a factory or a registered gymnasium id (with its kwargs)."""
    if isinstance(env, str):
        if env not in gym.registry:
            raise ConfigError(
                f"{env!r} is not a registered gymnasium id; register it or pass a factory (lambda: MyEnv())"
            )
        return partial(gym.make, env, **kwargs)
    if isinstance(env, gym.Env):
        raise ConfigError(
            "pass a function that makes the env (e.g. lambda: MyEnv()), not an env: seqmeta makes one copy per episode"
        )
    if not callable(env):
        raise ConfigError(f"env must be a gymnasium id or a function that makes an env, got {type(env).__name__}")
    return partial(env, **kwargs) if kwargs else env


def check_env(model, env: Callable[[], gym.Env] | str, demos: Any = None, max_steps: int | None = None) -> int:
    """Refuse, before anything runs, an env that does not fit ``model``; returns the episode length used.

    Checked: flat Box observations of the model's width; a Box action space of the model's width
    that holds the model's action box; episodes no longer than the model's trained horizon
    (``config.max_timestep``); gymnasium's API, by one reset and one step (observations of the declared
    shape, finite, and one finite reward); demos whose rewards and returns are on the training data's scale.
    """
    cfg = model.config
    probe = env_factory(env)()
    try:
        steps = _check_spaces(cfg, probe, max_steps)
        _check_api(cfg, probe)
    finally:
        probe.close()
    if demos is not None:
        episodes = as_episodes(demos, cfg.state_dim, cfg.act_dim)
        _check_scale(cfg, episodes)
    return steps


def _check_spaces(cfg, probe: gym.Env, max_steps: int | None) -> int:
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"max_steps must be >= 1, got {max_steps}")
    obs_space, act_space = probe.observation_space, probe.action_space
    spec_steps = probe.spec.max_episode_steps if probe.spec is not None else None
    if not isinstance(obs_space, gym.spaces.Box) or obs_space.shape != (cfg.state_dim,):
        raise EnvMismatchError(
            f"the env's observations are {obs_space}, the model takes flat vectors of width {cfg.state_dim}: "
            "use a model trained on this kind of env (or flatten / select observations with a wrapper)"
        )
    if not isinstance(act_space, gym.spaces.Box) or act_space.shape != (cfg.act_dim,):
        raise EnvMismatchError(
            f"the env's actions are {act_space}, the model outputs vectors of width {cfg.act_dim}: "
            "use a model trained on this kind of env"
        )
    low, high = np.asarray(cfg.action_low), np.asarray(cfg.action_high)
    if (low < act_space.low - 1e-6).any() or (high > act_space.high + 1e-6).any():
        raise EnvMismatchError(
            f"the model acts in [{low.tolist()}, {high.tolist()}] but the env takes [{act_space.low.tolist()}, "
            f"{act_space.high.tolist()}]: rescale the env's actions (gymnasium.wrappers.RescaleAction) to the "
            "model's box"
        )
    steps = max_steps or spec_steps
    if steps is None:
        raise EnvMismatchError(
            "the env has no episode length (no max_episode_steps): pass max_steps, at most the model's "
            f"horizon {cfg.max_timestep}"
        )
    if steps > cfg.max_timestep:
        raise EnvMismatchError(
            f"episodes of {steps} steps run past the model's trained horizon of {cfg.max_timestep} steps (its "
            f"timestep embedding has no later steps): pass max_steps <= {cfg.max_timestep}, or use a model trained "
            "on longer episodes"
        )
    return int(steps)


def _check_api(cfg, probe: gym.Env) -> None:
    """One reset and one step (the middle of the model's action box): gymnasium's return forms, observations
    of the declared shape, finite observations and reward. What a vector env would otherwise fail on deep
    inside (a wrong shape, an old-API reset) is named here."""
    out = probe.reset(seed=0)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        raise EnvMismatchError(
            f"env.reset() returned {type(out).__name__}, not (observation, info): seqmeta runs gymnasium's API "
            "(reset -> (observation, info), step -> (observation, reward, terminated, truncated, info))"
        )
    _check_observation(out[0], probe.observation_space, "reset")
    middle = (np.asarray(cfg.action_low) + np.asarray(cfg.action_high)) / 2
    out = probe.step(middle.astype(probe.action_space.dtype))
    if not (isinstance(out, tuple) and len(out) == 5):
        raise EnvMismatchError(
            f"env.step() returned {type(out).__name__}{f' of {len(out)}' if isinstance(out, tuple) else ''}, not "
            "(observation, reward, terminated, truncated, info): seqmeta runs gymnasium's API"
        )
    _check_observation(out[0], probe.observation_space, "step")
    try:
        reward = float(out[1]) if np.ndim(out[1]) == 0 else None
    except (TypeError, ValueError):
        reward = None
    if reward is None or not np.isfinite(reward):
        raise EnvMismatchError(f"env.step() returned the reward {out[1]!r}: give one finite number per step")


def _check_observation(obs: Any, space: gym.spaces.Box, where: str) -> None:
    array = np.asarray(obs)
    if array.shape != space.shape:
        raise EnvMismatchError(
            f"env.{where}() returned an observation of shape {array.shape}, but its observation_space says "
            f"{space.shape}: make the two agree"
        )
    if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise EnvMismatchError(f"env.{where}() returned an observation that is not all finite numbers: {obs!r}")


def _check_scale(cfg, episodes) -> None:
    worst_return = float(np.abs(episodes.episode_returns).max())
    if worst_return > RETURN_SCALE_LIMIT * cfg.return_scale:
        raise EnvMismatchError(
            f"a demo returns {worst_return:.4g}, over {RETURN_SCALE_LIMIT:g}x the largest |return| the model was "
            f"trained on ({cfg.return_scale:.4g}): rescale the env's rewards (gymnasium.wrappers.TransformReward) to "
            "the training data's scale"
        )
    worst_reward = float(np.abs(episodes.rewards).max())
    if worst_reward > REWARD_SCALE_LIMIT * cfg.reward_scale:
        raise EnvMismatchError(
            f"a demo reward of {worst_reward:.4g} is over {REWARD_SCALE_LIMIT:g}x the training rewards' std "
            f"({cfg.reward_scale:.4g}): rescale the env's rewards to the training data's scale"
        )


def evaluate_env(
    model,
    env: Callable[[], gym.Env] | str,
    demos: Any = None,
    episodes: int = 10,
    target_return: float | str | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    progress: bool = False,
    env_kwargs: dict[str, Any] | None = None,
) -> EnvEvaluation:
    """``episodes`` episodes of ``model`` in the env, each prompted with segments of ``demos``.

    ``demos``: episodes of this task (see ``seqmeta.prompts_from_episodes``), or None for no prompt.
    ``target_return``: a number, ``"demo"`` (the best demo return; the default with demos) or
    ``"model"`` (the model's value estimate; the default without). The env is checked first
    (``check_env``). Returns per-episode returns, and success where the env reports
    ``info["success"]`` at some step.
    """
    if not isinstance(episodes, int | np.integer) or episodes < 1:
        raise ConfigError(f"episodes must be a whole number >= 1, got {episodes!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a whole number >= 0, got {seed!r}")
    factory = env_factory(env, **(env_kwargs or {}))
    steps = check_env(model, factory, demos, max_steps)
    prompts = None
    if demos is not None:
        prompts = prompts_from_episodes(model.config, demos, episodes, seed=seed)
    if target_return is None:
        target_return = "demo" if demos is not None else "model"
    agent = Agent(model, episodes, prompts=prompts, target_returns=target_return)
    out = run_episodes(
        [factory] * episodes, agent, max_steps=steps, seed=seed, progress="evaluate" if progress else False
    )
    return EnvEvaluation(returns=out.returns, success=out.success, target_returns=agent.targets, rollouts=out)


def demos_from_rollouts(rollouts: Rollouts | Sequence[Rollouts]) -> list[dict[str, np.ndarray]]:
    """Recorded episodes (the env's rewards) as demos for ``evaluate_env`` / ``prompts_from_episodes``."""
    parts = [rollouts] if isinstance(rollouts, Rollouts) else list(rollouts)
    out = []
    for part in parts:
        for episode in part.episode_arrays():
            out.append({**episode, "rewards": episode["env_rewards"]})
    return out
