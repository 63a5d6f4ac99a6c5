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

Target returns: ``fixed`` (the best episode return in the offline data of the training tasks, one
number per dataset), ``oracle`` (the task's expert reference return), ``demo`` (the best return among the
prompt's episodes; falls back to ``fixed`` without a prompt), ``model`` (the model's value head at
the first state, with the prompt, return hidden), or a number.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqmeta.agent import Agent
from seqmeta.configs import check_options, option
from seqmeta.data.episodes import Episodes
from seqmeta.errors import ConfigError, MissingExtraError
from seqmeta.io import atomic_write_json
from seqmeta.prompts import EpisodePool, cut_prompts, empty_prompt
from seqmeta.results import SCHEMA, read_log
from seqmeta.rollout import EnvFactory, Rollouts, run_episodes
from seqmeta.tasks.family import TaskEnvs

logger = logging.getLogger(__name__)

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
    episodes: int = option(20, "episodes per task and prompt setting", low=1)
    seed: int = option(2026, "evaluation seed (env resets, prompt draws), separate from the training seed", low=0)

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


def rollout_agent(
    model,
    env_fns: Sequence[EnvFactory],
    max_steps: int,
    prompts: dict[str, np.ndarray] | None,
    target_returns: float | np.ndarray | str,
    seed: int = 0,
    progress: bool = False,
    reward_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    task_index: np.ndarray | None = None,
    quality: str = "rollout",
    wrap: Callable[[Agent], Any] | None = None,
) -> Rollouts:
    """One episode of ``model`` in each env (env i from ``env_fns[i]``, seeded ``seed + i``), all stepped
    together through the rollout engine; ``rollouts.targets`` holds the target returns it aimed for.

    ``target_returns``: a number, (N,) numbers or a rule of ``seqmeta.Agent`` (``model``, ``demo``).
    With a ``reward_fn`` (``seqmeta.selfsupervise.RewardLabeler.label``) the agent receives, and the
    episodes keep, its labels instead of the environment's rewards (``env_rewards`` keeps those).
    ``wrap(agent)`` gives the policy that runs instead of the agent (e.g. one that perturbs the agent's
    actions and records a teacher's, ``seqmeta.corrections``). More envs of a family than its ``max_envs``
    run in groups of that size, one after another (env i still seeded ``seed + i``).
    """
    waves = env_fns.waves() if isinstance(env_fns, TaskEnvs) else [slice(0, len(env_fns))]
    if len(waves) > 1:
        if wrap is not None:
            raise ConfigError(
                f"{len(env_fns)} envs of {env_fns.family.name} are more than it runs at once "
                f"({env_fns.family.max_envs}); a wrapped agent keeps state for every env: give it fewer envs at a time"
            )
        slots = np.arange(len(env_fns)) if task_index is None else np.asarray(task_index)
        groups = [(rows, env_fns.part(rows)) for rows in waves]
        parts = [
            rollout_agent(
                model,
                envs,
                max_steps,
                None if prompts is None else {k: v[rows] for k, v in prompts.items()},
                target_returns[rows] if np.ndim(target_returns) else target_returns,
                seed=seed + rows.start,
                progress=progress,
                reward_fn=reward_fn,
                task_index=slots[rows],
                quality=quality,
            )
            for rows, envs in groups
        ]
        return Rollouts.concatenate(parts, [len(envs) for _, envs in groups])
    agent = Agent(model, len(env_fns), prompts=prompts, target_returns=target_returns)
    out = run_episodes(
        env_fns,
        wrap(agent) if wrap else agent,
        max_steps=max_steps,
        seed=seed,
        reward_fn=reward_fn,
        task_index=task_index,
        quality=quality,
        progress="rollout" if progress else False,
    )
    out.targets = agent.targets
    return out


def own_rounds(
    model,
    env_fns: Sequence[EnvFactory],
    max_steps: int,
    rounds: int,
    targets: Callable[[dict[str, np.ndarray] | None, list[Rollouts]], Any],
    seed: int,
    progress: bool = False,
    make_labeler: Callable[[], Any] | None = None,
    wrap: Callable[[Agent], Any] | None = None,
) -> list[Rollouts]:
    """The own-exploration rounds in N envs; returns each round's rollouts.

    Round 0 has no prompt; round r is prompted, env by env, with that env's episodes of rounds < r
    (rewards as the agent received them; a model trained with ``prompt_from_trial`` reads one segment
    from each of the latest J). ``targets(prompts, history)`` gives the round's target
    returns; ``make_labeler()`` a fresh ``RewardLabeler`` per round, if the agent must not see rewards;
    ``wrap`` as in ``rollout_agent``.
    """
    slot = np.arange(len(env_fns))
    history: list[Rollouts] = []
    for r in range(rounds):
        prompts = None  # round 0: no prompt
        if history and model.config.use_prompt:
            pool = EpisodePool(Episodes.concatenate([h.episodes for h in history]))  # task_index = env slot
            prompts = cut_prompts(model.config, pool, slot, seed + r)
        labeler = make_labeler() if make_labeler else None
        out = rollout_agent(
            model,
            env_fns,
            max_steps,
            prompts,
            targets(prompts, history),
            seed=seed + 7919 * r,
            progress=progress,
            reward_fn=labeler.label if labeler else None,
            wrap=wrap,
        )
        history.append(out)
    return history


# ---- the evaluator ------------------------------------------------------------------------------


def _check(model, data, protocol: EvalProtocol) -> list[int]:
    cfg, meta = model.config, data.meta
    if protocol.family and protocol.family != meta.family:
        raise ConfigError(f"the protocol names family {protocol.family}; {data.path} holds {meta.family} data")
    if cfg.family and cfg.family != meta.family:
        raise ConfigError(f"the model was trained on {cfg.family}; {data.path} holds {meta.family} data")
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
    if source not in ("ood", "own") and source not in meta.qualities and settings != [0]:  # [0]: no prompt cut
        raise ConfigError(
            f"prompt_source {source!r} is not a quality level of {data.path} ({', '.join(meta.qualities)}), ood or own"
        )
    return settings


def _targets(data, protocol, tasks, pool_best) -> np.ndarray | str:
    """Per-slot target returns under the protocol's rule (``model``: the agent's value rule)."""
    rule = protocol.target_return
    fixed = data.best_training_return()  # never a held-out task's return
    if rule == "fixed":
        return np.full(len(tasks), fixed)
    if rule == "oracle":
        expert = data.reference_returns()["expert"]
        if any(expert[t] is None for t in tasks):
            raise ConfigError(f"no expert reference returns for {data.meta.family}: choose another target_return")
        return np.asarray([expert[t] for t in tasks], np.float64)
    if rule == "demo":
        return np.where(np.isnan(pool_best), fixed, pool_best)
    if rule == "model":
        return "model"
    return np.full(len(tasks), float(rule))


Sweep = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]]  # setting: returns, targets, successes


def _success(out: Rollouts, shape: tuple[int, ...]) -> np.ndarray | None:
    """Whether each episode succeeded (``info["success"]`` at any step), shaped; None if the env never says."""
    success = out.success
    return None if success is None else success.reshape(shape)


def _offline_sweep(model, data, protocol, settings, tasks, progress) -> Sweep:
    """Every (setting x task x episode) of an offline prompt source as one batch."""
    family, params = data.family, data.task_set.params
    rng = np.random.default_rng(protocol.seed)
    slot_setting = np.repeat(settings, len(tasks) * protocol.episodes)
    slot_task = np.tile(np.repeat(tasks, protocol.episodes), len(settings))
    n = len(slot_task)
    prompts = empty_prompt(model.config, n) if model.config.use_prompt else None
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
        drawn = cut_prompts(model.config, data, prompt_task, protocol.seed + k, episodes=all_rows)
        for key in prompts:
            prompts[key][here] = drawn[key]
        best[here] = [data.episodes["return"][rows[int(t)]].max() for t in prompt_task]
    targets = _targets(data, protocol, slot_task, pool_best=best)
    envs = family.env_fns([params[t] for t in slot_task])
    out = rollout_agent(model, envs, family.horizon, prompts, targets, seed=protocol.seed, progress=progress)
    shape = (len(settings), len(tasks), protocol.episodes)
    returns, targets, success = out.returns.reshape(shape), out.targets.reshape(shape), _success(out, shape)
    return {k: (returns[i], targets[i], None if success is None else success[i]) for i, k in enumerate(settings)}


def _own_sweep(model, data, protocol, settings, tasks, progress) -> Sweep:
    """Rounds: round r is prompted with the agent's own episodes of rounds < r in the same task."""
    family, params = data.family, data.task_set.params
    slot_task = np.repeat(tasks, protocol.episodes)
    envs = family.env_fns([params[t] for t in slot_task])

    def targets(prompts, history):
        best = np.full(len(slot_task), np.nan)
        if history and model.config.use_prompt:
            best = np.max([h.returns for h in history], axis=0)
        return _targets(data, protocol, slot_task, pool_best=best)

    history = own_rounds(model, envs, family.horizon, max(settings) + 1, targets, protocol.seed, progress)
    shape = (len(tasks), protocol.episodes)
    return {
        r: (history[r].returns.reshape(shape), history[r].targets.reshape(shape), _success(history[r], shape))
        for r in settings
    }


def evaluate(
    model,
    protocol: EvalProtocol,
    output_dir: str | Path | None = None,
    training_log: str | Path | None = None,
    progress: bool = True,
    baselines: dict[str, float] | None = None,
    videos: int = 0,
) -> dict[str, Any]:
    """Run the protocol's sweep; returns the results dict (and writes eval_results.json + plots).

    ``videos``: that many extra episodes of the largest prompt setting (no prompt for the ``own``
    source), one per test task in turn, rendered as ``video_task<T>_prompt<N>_<i>.mp4`` into ``output_dir``.

    ``baselines`` ({name: score}, normalized where the family has references) are drawn as lines on
    the adaptation curve, e.g. the score of a model trained without prompts.
    """
    from seqmeta.data.dataset import load_trajectories

    check_options(protocol)
    if not protocol.data:
        raise ConfigError("the protocol needs data: the offline dataset of the family (--data DIR)")
    if videos < 0:
        raise ConfigError(f"--video must be 0 or more episodes, got {videos}")
    if training_log is not None:
        read_log(training_log)  # one that cannot be plotted is refused now, not after the sweep
    data = load_trajectories(protocol.data)
    settings = _check(model, data, protocol)
    tasks = np.asarray(data.task_set.select(protocol.tasks))
    if videos:
        _render_options(data, int(tasks[0]))  # a family that cannot render is refused before the sweep
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

        try:
            results["plots"] = plot_results(results, out, training_log, baselines)
        except MissingExtraError as e:  # the results stand without their pictures
            logger.warning("plots skipped: %s", e)
            results["plots"] = []
        if videos:
            results["videos"] = [p.name for p in _record_videos(model, data, protocol, settings, tasks, videos, out)]
        atomic_write_json(out / "eval_results.json", results)
    return results


def _render_options(data, task: int) -> dict[str, Any]:
    """Env kwargs that render frames; refused (before any work) for a family that cannot render."""
    from seqmeta.video import SIZE

    render = {"render_mode": "rgb_array", "width": SIZE[0], "height": SIZE[1], "camera_name": "track"}
    try:  # MuJoCo locomotion models have a camera that tracks the body
        data.family.make_env(data.task_set.params[task], **render).close()
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{data.family.name} envs cannot be rendered ({e}); videos need a MuJoCo family") from None
    return render


def _record_videos(model, data, protocol, settings, tasks, count: int, out: Path) -> list[Path]:
    from seqmeta.video import record_agent_videos

    k = 0 if protocol.prompt_source in ("own", "ood") else max(settings)
    slot_task = np.asarray([tasks[i % len(tasks)] for i in range(count)])
    prompts, best = None, np.full(count, np.nan)
    if model.config.use_prompt:
        prompts = empty_prompt(model.config, count)
        if k:
            rows = [r for t in np.unique(slot_task) for r in data.first_episodes(int(t), k, protocol.prompt_source)]
            prompts = cut_prompts(model.config, data, slot_task, protocol.seed + k, episodes=rows)
            best = np.array(
                [
                    data.episodes["return"][data.first_episodes(int(t), k, protocol.prompt_source)].max()
                    for t in slot_task
                ]
            )
    params = data.task_set.params
    render = _render_options(data, int(slot_task[0]))
    env_fns = data.family.env_fns([params[t] for t in slot_task], **render)
    paths = [out / f"video_task{t}_prompt{k}_{i}.mp4" for i, t in enumerate(slot_task)]
    targets = _targets(data, protocol, slot_task, pool_best=best)
    return record_agent_videos(model, env_fns, data.family.horizon, prompts, targets, protocol.seed, paths)


def _summarize(model, data, protocol, tasks, returns: Sweep, seconds: float) -> dict[str, Any]:
    """``returns``: {setting: (returns, target returns, successes or None)}, each (tasks, episodes).
    ``success_rate`` (0 to 1: episodes with ``info["success"]`` at any step) where the env reports it."""
    family, task_set_name = data.family, data.meta.task_set
    ts = data.task_set
    refs = data.reference_returns()
    has_refs = all(refs["random"][t] is not None and refs["expert"][t] is not None for t in tasks)
    # A family without an expert has no references (scores stay unnormalized); one whose table cannot normalize a
    # task (an expert below random) gets its returns as ever, and a warning that says what to do.
    if has_refs and (problems := [p for t in tasks if (p := family.normalization_problem(int(t), task_set_name))]):
        logger.warning("scores are not normalized: %s", "; ".join(problems))
        has_refs = False
    settings = []
    for k, (table, targets, success) in returns.items():
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
                    "success_rate": None if success is None else float(success[i].mean()),
                }
            )
        normalized = [p["normalized"] for p in per_task]
        settings.append(
            {
                "prompt_trajectories": int(k),
                "per_task": per_task,
                "mean_return": float(np.mean([p["mean"] for p in per_task])),
                "normalized": float(np.mean(normalized)) if has_refs else None,
                "success_rate": None if success is None else float(success.mean()),
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
        | {"data": str(Path(protocol.data).resolve())}
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
    task_params = data.task_set.params
    tasks = np.repeat(np.asarray(sorted(demos)), episodes)
    rows = [r for t in sorted(demos) for r in demos[t]]
    prompts = cut_prompts(model.config, data, tasks, seed, episodes=rows) if model.config.use_prompt else None
    best = {t: float(data.episodes["return"][list(demos[t])].max()) for t in demos}
    envs = family.env_fns([task_params[t] for t in tasks])
    out = rollout_agent(model, envs, family.horizon, prompts, np.array([best[t] for t in tasks]), seed=seed)
    return {int(t): out.returns[tasks == t] for t in sorted(demos)}
