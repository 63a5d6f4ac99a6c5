"""Evaluation of in-context adaptation: an explicit protocol, every rollout of a sweep in one batch.

    protocol = EvalProtocol(data="data/cheetah-vel-expert", tasks="test", prompt_source="expert",
                            prompt_trajectories="0,1,2,4", episodes=20)
    results = evaluate(model, protocol, output_dir="outputs/eval")   # eval_results.json + plots

A sweep is (prompt setting x task x episode). All of its envs step together in one vector env and
the model runs once per env step for the whole batch (the streaming agent, with each env's prompt
cached). Prompt settings: N trajectories of the task, cut into the model's prompt shape (J segments
of K* steps, drawn per episode from those N); N = 0 is no prompt. Prompt sources:

- a quality level of the offline data (``expert``, ``medium``, ...): the task's own episodes;
- ``ood``: expert-level episodes of *another* task (a prompt that describes the wrong task);
- ``own``: the agent's own earlier episodes in the task. Rounds run one after another: round 0 has
  no prompt, round r is prompted with the agent's episodes of rounds < r (rewards as observed).

Target returns: ``fixed`` (the best episode return in the offline data, one number per family
dataset), ``oracle`` (the task's expert reference return), ``demo`` (the best return among the
prompt's episodes; falls back to ``fixed`` without a prompt), ``model`` (the model's value head at
the first state, with the prompt, return hidden), or a number.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from tqdm.auto import tqdm

from seqmeta.configs import option
from seqmeta.data.episodes import Episodes
from seqmeta.errors import ConfigError
from seqmeta.io import atomic_write_json
from seqmeta.tasks import TaskFamily

SCHEMA = "seqmeta.eval_results/1"
TARGET_RULES = ("fixed", "oracle", "demo", "model")


@dataclass
class EvalProtocol:
    """How a model is evaluated: where prompts come from, how many, what return it aims for, where."""

    data: str = option("", "offline dataset of the family: prompt demonstrations and the fixed target return")
    family: str = option("", "task family (default: the model's); must match the model and the data")
    tasks: str = option("test", "tasks to evaluate: test (held out), train, all, or indices like 2,7")
    prompt_source: str = option("expert", "a quality level of the data, ood (other tasks' episodes), or own")
    prompt_trajectories: str = option("0,1,2,4", "prompt settings: numbers of trajectories (own: rounds)")
    target_return: str = option("fixed", "fixed, oracle, demo, model, or a number")
    episodes: int = option(20, "episodes per task and prompt setting")
    seed: int = option(2026, "evaluation seed (env resets, prompt draws), separate from the training seed")

    def settings(self) -> list[int]:
        try:
            values = sorted({int(x) for x in str(self.prompt_trajectories).split(",") if x.strip()})
        except ValueError:
            values = [-1]
        if not values or values[0] < 0:
            raise ConfigError(
                f"prompt_trajectories must be numbers >= 0 like 0,1,2,4; got {self.prompt_trajectories!r}"
            )
        return values


# ---- rollouts -----------------------------------------------------------------------------------


def rollout(
    model,
    family: TaskFamily,
    params: Sequence[dict],
    prompts: dict[str, np.ndarray] | None,
    target_returns: np.ndarray | Callable[[np.ndarray], np.ndarray],
    seed: int = 0,
    progress: bool = False,
    record: bool = False,
    reward_labeler=None,
) -> dict[str, Any]:
    """One episode in each of N envs (env i made from ``params[i]``), all stepped together.

    ``target_returns`` is (N,), or a function of the first observations that returns them. Returns
    ``returns`` (N,, the environment's), the ``targets`` used and, with ``record``, each env's steps
    (observation, action, reward, length) for prompting from them later. With a ``reward_labeler``
    (``seqmeta.selfsupervise.RewardLabeler``) the agent receives, and ``reward`` records, its labels
    instead of the environment's rewards (then recorded as ``true_reward``).
    """
    n = len(params)
    envs = SyncVectorEnv([lambda p=p: family.make_env(p) for p in params], autoreset_mode=AutoresetMode.NEXT_STEP)
    obs, _ = envs.reset(seed=seed)
    targets = np.asarray(target_returns(obs) if callable(target_returns) else target_returns, np.float64)
    agent = model.agent(n, prompts=prompts, target_returns=targets.astype(np.float32))
    returns, alive, reward, lengths = np.zeros(n), np.ones(n, bool), None, np.zeros(n, np.int64)
    trace: dict[str, list] = {"observation": [], "action": [], "reward": [], "true_reward": []}
    for _ in tqdm(range(family.horizon), desc="rollout", unit="step", disable=not progress, leave=False):
        action = agent.act(obs, reward)
        if record:
            trace["observation"].append(obs)
            trace["action"].append(action)
        previous = obs
        obs, true_reward, terminated, truncated, _ = envs.step(action)
        reward = true_reward if reward_labeler is None else reward_labeler.label(previous, action)
        if record:
            trace["reward"].append(reward * alive)
            trace["true_reward"].append(true_reward * alive)
        returns += true_reward * alive
        lengths += alive
        alive &= ~(terminated | truncated)
        if not alive.any():
            break
    envs.close()
    out: dict[str, Any] = {"returns": returns, "lengths": lengths, "targets": targets}
    if record:
        out |= {k: np.stack(v, axis=1).astype(np.float32) for k, v in trace.items()}  # (N, T, ...)
    return out


def rollout_episodes(rollouts: list[dict[str, Any]], task_index: np.ndarray, qualities: Sequence[str]) -> Episodes:
    """Recorded rollouts -> ``Episodes``: env i of rollouts[e] is one episode of task ``task_index[i]``,
    quality ``qualities[e]``; episodes in (rollout, env) order; rewards as the agent received them."""
    steps = [
        {
            "observations": r["observation"][i, :n],
            "actions": r["action"][i, :n],
            "rewards": r["reward"][i, :n],
            "terminated": np.zeros(n, bool),
            "truncated": np.arange(n) == n - 1,
            "task_index": task_index[i],
        }
        for r in rollouts
        for i, n in enumerate(r["lengths"])
    ]
    quality = [q for r, q in zip(rollouts, qualities, strict=True) for _ in r["lengths"]]
    return Episodes.from_list(steps, quality=quality)


def own_rounds(
    model,
    family: TaskFamily,
    params: Sequence[dict],
    rounds: int,
    targets: Callable[[dict[str, np.ndarray] | None, list[dict[str, Any]]], Any],
    seed: int,
    progress: bool = False,
    make_labeler: Callable[[], Any] | None = None,
) -> list[dict[str, Any]]:
    """The own-exploration rounds in N envs (env i made from ``params[i]``); returns each round's rollout.

    Round 0 has no prompt; round r is prompted, env by env, with that env's recorded episodes of
    rounds < r. ``targets(prompts, history)`` gives the round's target returns (what ``rollout``
    takes); ``make_labeler()`` a fresh ``RewardLabeler`` per round, if the agent must not see rewards.
    """
    slot = np.arange(len(params))
    history: list[dict[str, Any]] = []
    for r in range(rounds):
        prompts = _empty_prompt(model, len(slot)) if model.config.use_prompt else None
        if history and model.config.use_prompt:
            prompts = _prompts_from(model, _EpisodePool.from_rollouts(history, slot), slot, seed + r)
        labeler = make_labeler() if make_labeler else None
        out = rollout(
            model,
            family,
            params,
            prompts,
            targets(prompts, history),
            seed=seed + 7919 * r,
            progress=progress,
            record=True,
            reward_labeler=labeler,
        )
        history.append(out)
    return history


class _EpisodePool:
    """``Episodes`` in the layout ``PromptSampler`` reads (``column`` and ``episodes``): prompt material."""

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

    @classmethod
    def from_rollouts(cls, rollouts: list[dict[str, Any]], task_index: np.ndarray) -> _EpisodePool:
        """Episode e of env i in rollouts[e] -> one pool episode, tagged with slot i as its 'task'."""
        return cls(rollout_episodes(rollouts, task_index, ["own"] * len(rollouts)))

    def column(self, name: str) -> np.ndarray:
        return self._columns[name]

    def __len__(self) -> int:
        return len(self._columns["reward"])


# ---- the evaluator ------------------------------------------------------------------------------


def _check(model, data, protocol: EvalProtocol) -> list[int]:
    cfg, meta = model.config, data.meta
    if protocol.family and protocol.family != meta["family"]:
        raise ConfigError(f"the protocol names family {protocol.family}; {data.path} holds {meta['family']} data")
    if cfg.family and cfg.family != meta["family"]:
        raise ConfigError(f"the model was trained on {cfg.family}; {data.path} holds {meta['family']} data")
    cfg.check_fits(data)
    settings = protocol.settings()
    if not cfg.use_prompt and settings != [0]:
        raise ConfigError("this model takes no prompt (config.use_prompt=False): use --prompt-trajectories 0")
    if protocol.episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {protocol.episodes}")
    rule = protocol.target_return
    if rule not in TARGET_RULES:
        try:
            float(rule)
        except ValueError:
            raise ConfigError(
                f"target_return must be one of {', '.join(TARGET_RULES)} or a number, got {rule!r}"
            ) from None
    source = protocol.prompt_source
    if source not in ("ood", "own") and source not in meta["qualities"]:
        raise ConfigError(
            f"prompt_source {source!r} is not a quality level of {data.path} ({', '.join(meta['qualities'])}), "
            f"ood or own"
        )
    return settings


def _targets(model, data, protocol, tasks, prompts, first_obs, pool_best) -> np.ndarray:
    """Per-slot target returns under the protocol's rule."""
    rule = protocol.target_return
    fixed = float(data.episodes["return"].max())
    if rule == "fixed":
        return np.full(len(tasks), fixed)
    if rule == "oracle":
        expert = data.family.reference_returns(data.meta["task_set"])["expert"]
        if any(expert[t] is None for t in tasks):
            raise ConfigError(f"no expert reference returns for {data.meta['family']}: choose another target_return")
        return np.asarray([expert[t] for t in tasks], np.float64)
    if rule == "demo":
        return np.where(np.isnan(pool_best), fixed, pool_best)
    if rule == "model":
        return _value_at_start(model, first_obs, prompts)
    return np.full(len(tasks), float(rule))


@torch.no_grad()
def _value_at_start(model, first_obs: np.ndarray, prompts) -> np.ndarray:
    device = model.state_mean.device
    n = len(first_obs)
    obs = torch.as_tensor(first_obs, dtype=torch.float32, device=device)[:, None]
    prompt = None
    if prompts is not None:
        prompt = {k: torch.as_tensor(v, device=device) for k, v in prompts.items()}
    out = model(
        observation=obs,
        action=torch.zeros(n, 1, model.config.act_dim, device=device),
        reward=torch.zeros(n, 1, device=device),
        return_to_go=torch.zeros(n, 1, device=device),
        timestep=torch.zeros(n, 1, dtype=torch.long, device=device),
        prompt=prompt,
        hide_return=torch.ones(n, dtype=torch.bool, device=device),
    )
    return out.value_preds[:, 0].cpu().numpy().astype(np.float64)


def _empty_prompt(model, n: int) -> dict[str, np.ndarray]:
    cfg = model.config
    p = cfg.num_prompt_segments * cfg.prompt_length
    return {
        "observation": np.zeros((n, p, cfg.state_dim), np.float32),
        "action": np.zeros((n, p, cfg.act_dim), np.float32),
        "reward": np.zeros((n, p), np.float32),
        "return_to_go": np.zeros((n, p), np.float32),
        "timestep": np.zeros((n, p), np.int64),
        "attention_mask": np.zeros((n, p), bool),
    }


def _prompts_from(model, pool, prompt_task: np.ndarray, seed: int, episodes=None) -> dict[str, np.ndarray]:
    """The model's prompt shape (J segments of K* steps) cut from ``pool``'s episodes of each prompt task."""
    from seqmeta.data.samplers import PromptSampler, flatten_prompt

    cfg = model.config
    sampler = PromptSampler(pool, cfg.num_prompt_segments, cfg.prompt_length, seed=seed, episodes=episodes)
    prompt = flatten_prompt(sampler.sample(prompt_task))
    return {k: prompt[k] for k in ("observation", "action", "reward", "return_to_go", "timestep", "attention_mask")}


def _offline_sweep(model, data, protocol, settings, tasks, progress) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Every (setting x task x episode) of an offline prompt source as one batch."""
    family, params = data.family, data.family.task_set(data.meta["task_set"]).params
    rng = np.random.default_rng(protocol.seed)
    slot_setting = np.repeat(settings, len(tasks) * protocol.episodes)
    slot_task = np.tile(np.repeat(tasks, protocol.episodes), len(settings))
    n = len(slot_task)
    prompts = _empty_prompt(model, n) if model.config.use_prompt else None
    best = np.full(n, np.nan)
    source = "expert" if protocol.prompt_source == "ood" else protocol.prompt_source
    present = sorted(set(data.episodes["task_index"].tolist()))
    for k in settings:
        if k == 0:
            continue
        here = np.flatnonzero(slot_setting == k)
        if protocol.prompt_source == "ood":  # each episode is prompted with another task's episodes
            others = {t: [u for u in present if u != t] for t in tasks}
            prompt_task = np.array([rng.choice(others[t]) for t in slot_task[here]])
        else:
            prompt_task = slot_task[here]
        rows = {int(t): data.first_episodes(int(t), k, source) for t in np.unique(prompt_task)}
        all_rows = [r for rs in rows.values() for r in rs]
        drawn = _prompts_from(model, data, prompt_task, protocol.seed + k, episodes=all_rows)
        for key in prompts:
            prompts[key][here] = drawn[key]
        best[here] = [data.episodes["return"][rows[int(t)]].max() for t in prompt_task]
    slot_params = [params[t] for t in slot_task]
    targets = partial(_targets, model, data, protocol, slot_task, prompts, pool_best=best)  # of the first obs
    out = rollout(model, family, slot_params, prompts, targets, seed=protocol.seed, progress=progress)
    shape = (len(settings), len(tasks), protocol.episodes)
    returns, targets = out["returns"].reshape(shape), out["targets"].reshape(shape)
    return {k: (returns[i], targets[i]) for i, k in enumerate(settings)}


def _own_sweep(model, data, protocol, settings, tasks, progress) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Rounds: round r is prompted with the agent's own episodes of rounds < r in the same task."""
    family, params = data.family, data.family.task_set(data.meta["task_set"]).params
    slot_task = np.repeat(tasks, protocol.episodes)
    slot_params = [params[t] for t in slot_task]

    def targets(prompts, history):
        best = np.full(len(slot_task), np.nan)
        if history and model.config.use_prompt:
            best = np.max([h["returns"] for h in history], axis=0)
        return partial(_targets, model, data, protocol, slot_task, prompts, pool_best=best)

    history = own_rounds(model, family, slot_params, max(settings) + 1, targets, protocol.seed, progress)
    shape = (len(tasks), protocol.episodes)
    return {r: (history[r]["returns"].reshape(shape), history[r]["targets"].reshape(shape)) for r in settings}


def evaluate(
    model,
    protocol: EvalProtocol,
    output_dir: str | Path | None = None,
    training_log: str | Path | None = None,
    progress: bool = True,
    baselines: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Run the protocol's sweep; returns the results dict (and writes eval_results.json + plots).

    ``baselines`` ({name: score}, normalized where the family has references) are drawn as lines on
    the adaptation curve, e.g. the score of a model trained without prompts.
    """
    from seqmeta.data.dataset import load_trajectories

    if not protocol.data:
        raise ConfigError("the protocol needs data: the offline dataset of the family (--data DIR)")
    data = load_trajectories(protocol.data)
    settings = _check(model, data, protocol)
    task_set_name = data.meta["task_set"]
    tasks = np.asarray(data.family.task_set(task_set_name).select(protocol.tasks))
    start = time.perf_counter()
    model.eval()
    sweep = _own_sweep if protocol.prompt_source == "own" else _offline_sweep
    returns = sweep(model, data, protocol, settings, tasks, progress)
    seconds = time.perf_counter() - start
    results = _summarize(model, data, protocol, tasks, returns, seconds)
    if output_dir is not None:
        out = Path(output_dir)
        atomic_write_json(out / "eval_results.json", results)
        from seqmeta.plots import plot_results

        results["plots"] = plot_results(results, out, training_log, baselines)
        atomic_write_json(out / "eval_results.json", results)
    return results


def _summarize(model, data, protocol, tasks, returns: dict[int, tuple], seconds: float) -> dict[str, Any]:
    """``returns``: {setting: (returns, target returns)}, each (tasks, episodes)."""
    family, task_set_name = data.family, data.meta["task_set"]
    ts = family.task_set(task_set_name)
    refs = family.reference_returns(task_set_name)
    has_refs = all(refs["random"][t] is not None and refs["expert"][t] is not None for t in tasks)
    settings = []
    for k, (table, targets) in returns.items():
        per_task = []
        for i, t in enumerate(tasks):
            mean = float(table[i].mean())
            per_task.append(
                {
                    "task": int(t),
                    "params": ts.params[t],
                    "returns": [float(x) for x in table[i]],
                    "mean": mean,
                    "std": float(table[i].std()),
                    "target_return": float(targets[i].mean()),
                    "normalized": float(family.normalized_score(mean, int(t), task_set_name)) if has_refs else None,
                }
            )
        normalized = [p["normalized"] for p in per_task]
        settings.append(
            {
                "prompt_trajectories": int(k),
                "per_task": per_task,
                "mean_return": float(np.mean([p["mean"] for p in per_task])),
                "normalized": float(np.mean(normalized)) if has_refs else None,
            }
        )
    return {
        "schema": SCHEMA,
        "model": {
            "family": model.config.family,
            "task_set": model.config.task_set,
            "use_prompt": model.config.use_prompt,
            "use_return": model.config.use_return,
            "name_or_path": str(getattr(model, "name_or_path", "")),
        },
        "family": family.name,
        "task_set": task_set_name,
        "split": {"train": list(ts.train_indices), "test": list(ts.test_indices)},
        "protocol": dataclasses.asdict(protocol)
        | {"prompt_shape": [model.config.num_prompt_segments, model.config.prompt_length]},
        "reference_returns": {level: [refs[level][t] for t in tasks] for level in ("random", "expert")},
        "settings": settings,
        "episodes_total": int(sum(v[0].size for v in returns.values())),
        "wall_seconds": seconds,
    }


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
    family = data.family
    task_params = family.task_set(data.meta["task_set"]).params
    tasks = np.repeat(np.asarray(sorted(demos)), episodes)
    rows = [r for t in sorted(demos) for r in demos[t]]
    prompts = _prompts_from(model, data, tasks, seed, episodes=rows) if model.config.use_prompt else None
    best = {t: float(data.episodes["return"][list(demos[t])].max()) for t in demos}
    returns = rollout(model, family, [task_params[t] for t in tasks], prompts, [best[t] for t in tasks], seed=seed)
    return {int(t): returns["returns"][tasks == t] for t in sorted(demos)}


def load_results(path: str | Path) -> dict[str, Any]:
    results = json.loads(Path(path).read_text())
    if results.get("schema") != SCHEMA:
        raise ConfigError(f"{path} is not a seqmeta eval_results.json ({SCHEMA})")
    return results


def format_table(results: dict[str, Any]) -> str:
    """The results as a text table: one row per prompt setting, one column per task."""
    tasks = [p["task"] for p in results["settings"][0]["per_task"]]
    scored = results["settings"][0]["normalized"] is not None
    head = f"{'prompt traj.':>12} | " + " | ".join(f"task {t:>3}" for t in tasks) + " | mean return"
    head += " | normalized" if scored else ""
    lines = [f"{results['family']}, prompts: {results['protocol']['prompt_source']}", head, "-" * len(head)]
    for s in results["settings"]:
        row = f"{s['prompt_trajectories']:>12} | " + " | ".join(f"{p['mean']:>8.2f}" for p in s["per_task"])
        row += f" | {s['mean_return']:>11.2f}" + (f" | {s['normalized']:>10.1f}" if scored else "")
        lines.append(row)
    return "\n".join(lines)
