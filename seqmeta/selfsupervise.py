"""Adapting from its own exploration: reward-free online self-supervision, after SMAC.

    seqmeta self-supervise --model outputs/train/model --data data/cheetah-vel-expert \\
        --output-dir outputs/self-supervised --rounds 3 --episodes-per-task 4

A model meta-trained on offline prompts reads its *own* exploratory episodes badly: they look
nothing like the demonstrations it learned from. This phase shows it such episodes, in the training
tasks only, without using a single reward from them:

1. Explore (``explore``): in every training task the model acts as it will at meta-test under the
   own-exploration protocol: round 0 without a prompt, round r prompted with its episodes of rounds
   < r. The environment's rewards are not used: every step is labeled by the model's reward head
   conditioned on a prompt cut from that task's *offline* data (``RewardLabeler``), and those labels
   are what the acting model receives and what the episodes keep.
2. Save the labeled episodes as a dataset (``iteration_i/online``) whose ``reward_predicted``
   column says the rewards are predictions.
3. Continue meta-training with ``accelerate``: history segments come from the offline data as
   before; a fraction ``online_prompt_fraction`` of prompts is cut from the labeled online episodes
   of the sample's task, so the model learns to read prompts made by its own behavior.

``iterations`` repeats 1-3 with the updated model. ``labels`` picks the control: ``predicted``
(the method), ``true`` (the same phase with the environment's rewards: the online meta-RL upper
bound) or ``none`` (no online data: the same extra training steps on offline data only). Every
stage is skipped when done and resumed when interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqmeta.configs import check_options, option, read_yaml, save_config
from seqmeta.data.episodes import Episodes
from seqmeta.errors import ConfigError
from seqmeta.evaluation import own_rounds
from seqmeta.io import atomic_directory, atomic_write_json
from seqmeta.prompts import cut_prompts
from seqmeta.trainer import EpisodeBatches, LoopConfig, episodes_of_quality, fit, save_model

logger = logging.getLogger(__name__)

LABELS = ("predicted", "true", "none")


@dataclass
class SelfSuperviseConfig(LoopConfig):
    """Reward-free online exploration in the training tasks, then more meta-training on it."""

    model: str = option("", "the offline meta-trained model folder (a `seqmeta train` model/)")
    data: str = option("", "the offline dataset it was trained on: segments, and the labeler's task context")
    output_dir: str = option("outputs/self-supervise", "iteration_*/ (online data, run) and the final model/")
    labels: str = option(
        "predicted",
        "rewards of the online episodes: predicted (reward head), true, none (no data)",
        choices=("predicted", "true", "none"),
    )
    rounds: int = option(3, "exploration rounds per task: round 0 unprompted, round r prompted by rounds < r", low=1)
    episodes_per_task: int = option(4, "episodes per training task and round", low=1)
    iterations: int = option(2, "explore-then-train cycles; each explores with the latest model", low=1)
    online_prompt_fraction: float = option(
        0.5, "fraction of training prompts cut from the online episodes", low=0, high=1
    )
    prompt_quality: str = option("", "cut the other (offline) prompts only from this quality level ('': any)")
    target_return: str = option("fixed", "the explorer's target return: fixed (best in the data) or a number")
    segment_length: int = option(0, "history steps per sample (0: the offline run's, else twice the context)", low=0)
    return_dropout: float = option(
        0.1, "fraction of samples whose returns are hidden (keeps the value head)", low=0, high=1
    )
    max_steps: int = option(1000, "optimizer steps per iteration", low=1)
    learning_rate: float = option(1e-4, "AdamW learning rate after warmup", low=0, low_open=True)
    warmup_steps: int = option(50, "linear learning-rate warmup steps", low=0)
    checkpoint_every: int = option(250, "steps between save_state checkpoints (the last two are kept)", low=1)
    log_every: int = option(50, "steps between tracker logs", low=1)


# ---- labeling -------------------------------------------------------------------------------------


class RewardLabeler:
    """Rewards from the model's reward head, step by step, for N envs with a task prompt each.

    ``label(observation, action)`` after each env step returns r_hat(s_t, a_t) (N,), predicted from
    the act token of step t+1 (which holds a_t, not r_t) over the last K steps of the episode, with
    earlier labels as the rewards in those steps and the returns hidden. Exactly the model's full
    forward pass over the episode (the K-step band), so labels do not depend on how they are batched.
    """

    def __init__(self, model, prompts: dict[str, np.ndarray]):
        self.model = model.eval()
        self.device = model.state_mean.device
        self.prompt = {k: torch.as_tensor(v, device=self.device) for k, v in prompts.items()}
        self.reset()

    def reset(self) -> None:
        self.steps: dict[str, list[torch.Tensor]] = {"observation": [], "action": [], "reward": []}

    @torch.no_grad()
    def label(self, observation: np.ndarray, action: np.ndarray) -> np.ndarray:
        s = self.steps
        s["observation"].append(torch.as_tensor(observation, dtype=torch.float32, device=self.device))
        s["action"].append(torch.as_tensor(action, dtype=torch.float32, device=self.device))
        n, t, k = len(s["observation"][0]), len(s["observation"]) - 1, self.model.config.context_length
        lo = max(0, t + 2 - k)  # steps lo..t and the model's read-out of r_t: K steps, as before
        zeros_act, zero_r = torch.zeros_like(s["action"][0]), torch.zeros(n, device=self.device)
        label = self.model.reward_of_last_step(
            observation=torch.stack(s["observation"][lo:], 1),
            action=torch.stack(s["action"][lo:], 1),
            reward=torch.stack([*s["reward"][lo:], zero_r], 1),  # labels so far; r_t unknown
            timestep=torch.arange(lo, t + 1, device=self.device).expand(n, t + 1 - lo),
            prev_action=torch.stack([s["action"][lo - 1] if lo else zeros_act, *s["action"][lo:t]], 1),
            prev_reward=torch.stack([s["reward"][lo - 1] if lo else zero_r, *s["reward"][lo:t]], 1),
            prompt=self.prompt,
        )
        s["reward"].append(label)
        return label.cpu().numpy().astype(np.float64)


# ---- exploration ----------------------------------------------------------------------------------


def explore(
    model,
    data,
    tasks,
    rounds: int,
    episodes_per_task: int,
    labels: str = "predicted",
    target_return: str = "fixed",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """The own-exploration protocol in ``tasks``, with rewards labeled by the model (or true).

    Returns ``episodes`` (``Episodes``: rewards as the agent received them, quality ``online-r<round>``),
    ``true_rewards`` (per step, for measuring the labels only: never trained on under ``predicted``)
    and ``returns`` (rounds, tasks x episodes) of true returns.
    """
    if labels not in ("predicted", "true"):
        raise ConfigError(f"explore labels must be predicted or true, got {labels!r}")
    family, params = data.family, data.task_set.params
    slot_task = np.repeat(np.asarray(tasks), episodes_per_task)
    try:
        target = data.best_training_return() if target_return == "fixed" else float(target_return)
    except ValueError:
        raise ConfigError(f"target_return must be fixed or a number, got {target_return!r}") from None
    make_labeler = None
    if labels == "predicted":  # each slot's labeler reads an offline prompt of its own task
        ep = data.episodes
        offline = ep["quality"] == "expert" if "expert" in data.meta.qualities else np.ones(len(ep["quality"]), bool)
        rows = np.flatnonzero(np.isin(ep["task_index"], slot_task) & offline)
        context = cut_prompts(model.config, data, slot_task, seed + 17, episodes=rows)
        make_labeler = partial(RewardLabeler, model, context)
    history = own_rounds(
        model,
        family.env_fns([params[t] for t in slot_task]),
        family.horizon,
        rounds,
        lambda prompts, history: np.full(len(slot_task), target),
        seed,
        progress,
        make_labeler,
    )
    episodes = []
    for r, h in enumerate(history):
        e = h.episodes
        episodes.append(
            dataclasses.replace(e, task_index=slot_task[h.slot], quality=np.full(len(h.slot), f"online-r{r}", object))
        )
    return {
        "episodes": Episodes.concatenate(episodes),
        "true_rewards": np.concatenate([h.env_rewards for h in history]).astype(np.float32),
        "returns": np.stack([h.returns for h in history]),
    }


def label_quality(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """How well labels match the true rewards: Pearson correlation and mean absolute error."""
    predicted, true = np.asarray(predicted, np.float64), np.asarray(true, np.float64)
    corr = float(np.corrcoef(predicted, true)[0, 1]) if predicted.std() > 0 and true.std() > 0 else float("nan")
    return {"correlation": corr, "mean_abs_error": float(np.abs(predicted - true).mean()), "steps": len(true)}


# ---- the phase ------------------------------------------------------------------------------------


class MixedPromptBatches(EpisodeBatches):
    """``EpisodeBatches`` whose prompts come, for a fraction of samples, from a second (online) dataset."""

    def __init__(self, data, online, online_fraction: float, **options):
        from seqmeta.data.samplers import PromptSampler

        super().__init__(data, **options)
        seed = options.get("seed", 0)
        self.online = PromptSampler(
            online,
            self.prompts.num_segments,
            self.prompts.segment_length,
            seed=seed + 3,
            start_segment=self.prompts.start_segment,
        )
        self.online_fraction = online_fraction

    def prompts_for(self, task: np.ndarray, episode: np.ndarray) -> dict[str, np.ndarray]:
        from seqmeta.data.samplers import flatten_prompt

        offline = super().prompts_for(task, episode)
        online = flatten_prompt(self.online.sample(task))
        take = self.rng.random(len(task)) < self.online_fraction
        return {k: np.where(take.reshape(-1, *[1] * (v.ndim - 1)), online[k], v) for k, v in offline.items()}

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"online": self.online.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.online.load_state_dict(state["online"])


def _check(config: SelfSuperviseConfig, model, data) -> list[int]:
    if config.labels not in LABELS:
        raise ConfigError(f"labels must be one of {', '.join(LABELS)}, got {config.labels!r}")
    if not model.config.use_prompt:
        raise ConfigError("this model takes no prompt (use_prompt=False): there is nothing to self-supervise")
    if config.rounds < 1 or config.episodes_per_task < 1 or config.iterations < 1:
        raise ConfigError("rounds, episodes_per_task and iterations must be >= 1")
    if not 0.0 <= config.online_prompt_fraction <= 1.0:
        raise ConfigError(f"online_prompt_fraction must be in [0, 1], got {config.online_prompt_fraction}")
    model.config.check_fits(data)
    if model.config.family and model.config.family != data.meta.family:
        raise ConfigError(f"the model was trained on {model.config.family}; {data.path} holds {data.meta.family}")
    task_set = data.task_set
    present = set(np.unique(data.episodes["task_index"]).tolist())
    tasks = [t for t in task_set.train_indices if t in present]
    if not tasks:
        raise ConfigError(f"{data.path} holds no episodes of the training tasks {list(task_set.train_indices)}")
    return tasks


def self_supervise(config: SelfSuperviseConfig, resume: bool = False) -> Path:
    """Run the phase; returns the final model folder (``output_dir/model``).

    Completed stages are always skipped and an interrupted iteration's training continues from its
    last checkpoint, so ``resume`` (the CLI's ``--resume``) changes nothing: running again resumes.
    """
    check_options(config)
    from seqmeta.data.dataset import load_trajectories, write_dataset
    from seqmeta.models import load_model

    if not config.model or not config.data:
        raise ConfigError("self-supervision needs --model DIR (an offline meta-trained model) and --data DIR")
    data, model = load_trajectories(config.data), load_model(config.model)
    tasks = _check(config, model, data)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_phase(config, out / "self_supervise_config.yaml")
    save_config(config, out / "self_supervise_config.yaml")
    segment = config.segment_length or _offline_segment_length(config.model, model.config.context_length)
    current = config.model
    report: dict[str, Any] = {"labels": config.labels, "iterations": []}
    for i in range(config.iterations):
        stage = out / f"iteration_{i}"
        if (stage / "model" / "config.json").exists():
            current = str(stage / "model")
            report["iterations"].append(json.loads((stage / "iteration.json").read_text()))
            continue
        online, entry = None, {"iteration": i}
        if config.labels != "none":
            online_dir = stage / "online"
            if not (online_dir / "state.json").exists() or not (stage / "exploration.json").exists():
                logger.info("iteration %d: exploring %d training tasks (%s rewards)", i, len(tasks), config.labels)
                found = explore(
                    load_model(current),
                    data,
                    tasks,
                    config.rounds,
                    config.episodes_per_task,
                    labels=config.labels,
                    target_return=config.target_return,
                    seed=config.seed + 104_729 * i,
                )
                predicted = np.full(len(found["true_rewards"]), config.labels == "predicted")
                write_dataset(
                    found["episodes"],
                    data.family,
                    online_dir,
                    task_set=data.meta.task_set,
                    behavior={q: f"{current}, own exploration" for q in set(found["episodes"].quality)},
                    command=f"seqmeta self-supervise (iteration {i}, labels {config.labels})",
                    extra_columns={"reward_predicted": predicted},
                    behavior_sees_task=False,
                    overwrite=True,
                )
                quality = label_quality(found["episodes"].rewards, found["true_rewards"])
                atomic_write_json(
                    stage / "exploration.json",
                    {"true_returns_by_round": found["returns"].mean(1).tolist(), "labels": quality},
                )
            entry |= json.loads((stage / "exploration.json").read_text())
            online = load_trajectories(online_dir)
        run = _train_iteration(config, data, online, tasks, current, segment, stage, resume=True)
        current = str(run)
        atomic_write_json(stage / "iteration.json", entry)
        report["iterations"].append(entry)
    final = out / "model"
    with atomic_directory(final, overwrite=True) as tmp:
        load_model(current).save_pretrained(tmp)
        save_config(config, tmp / "self_supervise_config.yaml")
    atomic_write_json(out / "self_supervise.json", report)
    return final


# What makes a phase's stages: a folder holding stages made with other values is not reused.
PHASE_DEFINING = (
    "model",
    "data",
    "labels",
    "seed",
    "rounds",
    "episodes_per_task",
    "online_prompt_fraction",
    "prompt_quality",
    "target_return",
    "segment_length",
    "return_dropout",
    "max_steps",
    "batch_size",
    "learning_rate",
)


def _check_same_phase(config: SelfSuperviseConfig, saved_path: Path) -> None:
    if not saved_path.exists():
        return
    saved = read_yaml(saved_path)
    current = dataclasses.asdict(config)
    changed = [k for k in PHASE_DEFINING if k in saved and saved[k] != current[k]]
    if changed:
        diffs = ", ".join(f"{k}: {saved[k]!r} -> {current[k]!r}" for k in changed)
        raise ConfigError(
            f"{saved_path.parent} holds a self-supervised phase run with other settings ({diffs}); its stages "
            "would be reused as if they were this run's: choose a new --output-dir for these settings"
        )


def _offline_segment_length(model_dir: str, context_length: int) -> int:
    saved = Path(model_dir) / "train_config.yaml"
    if saved.exists():
        return int(read_yaml(saved).get("segment_length", 2 * context_length))
    return 2 * context_length


def _train_iteration(config, data, online, tasks, model_dir, segment, stage: Path, resume: bool) -> Path:
    from seqmeta.models import load_model, load_model_config

    mcfg = load_model_config(model_dir)
    options = dict(
        segment_length=segment,
        batch_size=config.batch_size,
        num_prompt_segments=mcfg.num_prompt_segments,
        prompt_length=mcfg.prompt_length,
        prompt_from_start=getattr(mcfg, "prompt_from_start", False),
        return_dropout=config.return_dropout,
        tasks=tasks,
        prompt_episodes=episodes_of_quality(data, config.prompt_quality),
    )

    def make_batches(seed: int):
        if online is None:
            return EpisodeBatches(data, **options, seed=seed)
        return MixedPromptBatches(data, online, config.online_prompt_fraction, **options, seed=seed)

    run_config = dataclasses.replace(config, output_dir=str(stage))
    accelerator, model = fit(
        run_config,
        build_model=lambda: load_model(model_dir),
        make_batches=make_batches,
        resume=resume and (stage / "checkpoints").exists(),
        config_name="self_supervise_config.yaml",
    )
    return save_model(accelerator, model, run_config, stage / "model", "self_supervise_config.yaml")
