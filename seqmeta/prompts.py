"""Episodes -> prompts in a model's shape: J segments of K* steps, one prompt row per env.

    prompts = seqmeta.prompts_from_episodes(model.config, demos, num_envs=8, seed=0)
    agent = seqmeta.Agent(model, num_envs=8, prompts=prompts, target_returns="demo")

``demos`` are episodes of the one task the envs run: ``Episodes``, the ``Rollouts`` of
``seqmeta.run_episodes``, or a list of dicts of arrays (``observations`` (T, obs_dim), ``actions``
(T, act_dim), ``rewards`` (T,)). Each env's prompt is drawn (seeded) from those episodes as in
training: J segments, each K* consecutive steps of one episode, left-padded where an episode is
shorter (a model trained on trials, ``prompt_from_trial``: one segment from each of the last J
demos). The prompt also carries ``demo_return`` (N,), the best return among the demos, which the
``demo`` target-return rule uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from seqmeta.data.episodes import Episodes
from seqmeta.errors import ConfigError

PROMPT_KEYS = ("observation", "action", "reward", "return_to_go", "timestep", "attention_mask")


class EpisodePool:
    """``Episodes`` in the layout ``PromptSampler`` reads (``column`` and ``episodes``)."""

    def __init__(self, episodes: Episodes):
        self._columns = {
            "observation": episodes.observations,
            "action": episodes.actions,
            "reward": episodes.rewards,
            "return_to_go": episodes.returns_to_go(),
        }
        self.episodes = {
            "start": episodes.starts,
            "length": episodes.lengths,
            "task_index": episodes.task_index,
            "return": episodes.episode_returns,
        }

    def column(self, name: str) -> np.ndarray:
        return self._columns[name]

    def __len__(self) -> int:
        return len(self._columns["reward"])


def as_episodes(demos: Any, obs_dim: int | None = None, act_dim: int | None = None) -> Episodes:
    """``Episodes`` from episodes given as ``Episodes``, ``Rollouts`` or a list of dicts of arrays.

    Shapes and values are checked; an error names the episode and the fix.
    """
    if hasattr(demos, "episodes") and isinstance(demos.episodes, Episodes):  # Rollouts
        demos = demos.episodes
    if isinstance(demos, Episodes):
        episodes = demos
    else:
        if isinstance(demos, dict) or not isinstance(demos, Sequence) or not demos:
            raise ConfigError(
                "demos must be a non-empty list of episodes, each a dict with observations (T, obs_dim), "
                "actions (T, act_dim) and rewards (T,), or seqmeta Episodes / Rollouts"
            )
        listed = []
        for i, demo in enumerate(demos):
            missing = [k for k in ("observations", "actions", "rewards") if k not in demo]
            if missing:
                raise ConfigError(f"demo {i} lacks {missing}; each demo needs observations, actions and rewards")
            obs = np.asarray(demo["observations"], np.float32)
            act = np.asarray(demo["actions"], np.float32)
            rew = np.asarray(demo["rewards"], np.float32).reshape(-1)
            if obs.ndim != 2 or act.ndim != 2 or not (len(obs) == len(act) == len(rew)) or len(obs) == 0:
                raise ConfigError(
                    f"demo {i}: observations {obs.shape}, actions {act.shape}, rewards {rew.shape}; they need "
                    "(T, obs_dim), (T, act_dim) and (T,) with the same T >= 1"
                )
            t = len(rew)
            listed.append(
                {
                    "observations": obs,
                    "actions": act,
                    "rewards": rew,
                    "terminated": np.zeros(t, bool),
                    "truncated": np.arange(t) == t - 1,
                    "task_index": int(demo.get("task_index", 0)),
                }
            )
        episodes = Episodes.from_list(listed, quality="demo")
    for name, array, width in (
        ("observations", episodes.observations, obs_dim),
        ("actions", episodes.actions, act_dim),
    ):
        if width is not None and array.shape[1] != width:
            raise ConfigError(
                f"the demos' {name} are {array.shape[1]}-dimensional but the model takes {width}: "
                "demos must come from the env the model acts in"
            )
    for name in ("observations", "actions", "rewards"):
        if not np.isfinite(getattr(episodes, name)).all():
            raise ConfigError(f"the demos' {name} hold NaN or inf; drop or repair those episodes")
    return episodes


def empty_prompt(config, num_envs: int) -> dict[str, np.ndarray]:
    """An all-masked prompt (no prompt) in the model's prompt shape."""
    p = config.num_prompt_segments * config.prompt_length
    return {
        "observation": np.zeros((num_envs, p, config.state_dim), np.float32),
        "action": np.zeros((num_envs, p, config.act_dim), np.float32),
        "reward": np.zeros((num_envs, p), np.float32),
        "return_to_go": np.zeros((num_envs, p), np.float32),
        "timestep": np.zeros((num_envs, p), np.int64),
        "attention_mask": np.zeros((num_envs, p), bool),
    }


def cut_prompts(
    config, pool, prompt_task: np.ndarray, seed: int, episodes: Sequence[int] | None = None
) -> dict[str, np.ndarray]:
    """The model's prompt shape cut from ``pool``'s episodes (a dataset or ``EpisodePool``) of each
    row's task ``prompt_task[i]``; ``episodes`` (rows of ``pool.episodes``) restricts the pool. A model
    trained with ``prompt_from_trial`` gets one segment from each of the latest J episodes, in pool order."""
    from seqmeta.data.samplers import PromptSampler, flatten_prompt

    start = bool(getattr(config, "prompt_from_start", False))
    sampler = PromptSampler(
        pool, config.num_prompt_segments, config.prompt_length, seed=seed, episodes=episodes, start_segment=start
    )
    if getattr(config, "prompt_from_trial", False):  # trained on trials: the latest J episodes, one segment each
        prompt = flatten_prompt(sampler.sample_latest(np.asarray(prompt_task)))
    else:
        prompt = flatten_prompt(sampler.sample(np.asarray(prompt_task)))
    return {k: prompt[k] for k in PROMPT_KEYS}


def prompts_from_episodes(config, demos: Any, num_envs: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One prompt per env, each J x K* steps drawn from ``demos`` (episodes of the envs' task).

    ``config`` is the model's config (``model.config``). See the module docstring for ``demos``.
    """
    if not getattr(config, "use_prompt", True):
        raise ConfigError("this model takes no prompt (config.use_prompt=False): act with prompts=None")
    if num_envs < 1:
        raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
    episodes = as_episodes(demos, config.state_dim, config.act_dim)
    one_task = dataclasses.replace(episodes, task_index=np.zeros(episodes.num_episodes, np.int64))
    prompts = cut_prompts(config, EpisodePool(one_task), np.zeros(num_envs, np.int64), seed)
    prompts["demo_return"] = np.full(num_envs, float(episodes.episode_returns.max()), np.float64)
    return prompts
