"""Rolling a model out in tasks of its family, every (task x episode) env stepped as one batch.

``rollout`` runs N envs, each with its own task, prompt and target return, through one streaming
agent: the model runs once per env step for the whole batch. ``evaluate_with_demos`` prompts each
task with segments of some of its recorded episodes (as a user with a few demonstrations would) and
conditions on the best return among them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from tqdm.auto import tqdm

from seqmeta.tasks import TaskFamily


def rollout(
    model,
    family: TaskFamily,
    params: Sequence[dict],
    prompts: dict[str, np.ndarray] | None,
    target_returns: np.ndarray,
    seed: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Returns (N,) of one episode in each of N envs, env i made from ``params[i]``."""
    n = len(params)
    envs = SyncVectorEnv([lambda p=p: family.make_env(p) for p in params], autoreset_mode=AutoresetMode.NEXT_STEP)
    agent = model.agent(n, prompts=prompts, target_returns=np.asarray(target_returns, np.float32))
    obs, _ = envs.reset(seed=seed)
    returns, alive, reward = np.zeros(n), np.ones(n, bool), None
    for _ in tqdm(range(family.horizon), desc="rollout", unit="step", disable=not progress, leave=False):
        obs, reward, terminated, truncated, _ = envs.step(agent.act(obs, reward))
        returns += reward * alive
        alive &= ~(terminated | truncated)
        if not alive.any():
            break
    envs.close()
    return returns


def evaluate_with_demos(
    model,
    data,
    demos: dict[int, Sequence[int]],
    episodes: int = 10,
    seed: int = 0,
) -> dict[int, np.ndarray]:
    """Per task, ``episodes`` returns of ``model`` prompted with its demo episodes (rows of ``data.episodes``).

    Each episode's prompt is J random K*-step segments of the task's demos (the model's prompt shape);
    its target return is the best demo return of the task.
    """
    from seqmeta.data.samplers import PromptSampler, flatten_prompt

    cfg, family = model.config, data.family
    task_params = family.task_set(data.meta["task_set"]).params
    tasks = np.repeat(np.asarray(sorted(demos)), episodes)
    rows = [r for t in sorted(demos) for r in demos[t]]
    prompts = None
    if cfg.use_prompt:
        sampler = PromptSampler(data, cfg.num_prompt_segments, cfg.prompt_length, seed=seed, episodes=rows)
        prompts = flatten_prompt(sampler.sample(tasks))
    best = {t: float(data.episodes["return"][list(demos[t])].max()) for t in demos}
    returns = rollout(model, family, [task_params[t] for t in tasks], prompts, [best[t] for t in tasks], seed=seed)
    return {int(t): returns[tasks == t] for t in sorted(demos)}
