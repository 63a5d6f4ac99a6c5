"""The goal-conditioned SAC training loop: resumable, with actor snapshots as skill levels.

Layout of a run folder::

    run/
      config.json                 resolved config
      log.jsonl                   one line per evaluation (returns, velocities per eval task)
      snapshots/step_0010000.safetensors   actor weights at each evaluation (the skill levels)
      checkpoints/step_0020000/   full training state (nets, optimizers, replay, RNG)
      checkpoints/latest          name of the newest complete checkpoint
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file
from tqdm.auto import tqdm

from seqmeta.behavior.evaluate import run_goal_conditioned
from seqmeta.behavior.sac import SAC, ReplayBuffer, SACHyperparameters
from seqmeta.errors import ConfigError
from seqmeta.io import atomic_write_json, atomic_write_text
from seqmeta.tasks import TaskFamily, get_family

logger = logging.getLogger(__name__)

TASK_SAMPLING = ("law", "task-set")
EVAL_SEED = 10_000  # the env seed of every snapshot evaluation (during training and at export)


@dataclass
class BehaviorTrainConfig:
    """Goal-conditioned SAC for one task family (defaults: the measured Cheetah-Vel recipe)."""

    family: str = "cheetah-vel"
    """task family whose tasks are sampled per episode (``family.sample_params``)"""
    output_dir: str = "runs/behavior/cheetah-vel"
    """run folder; an existing one is resumed from its latest checkpoint"""
    total_steps: int = 300_000
    """environment steps (= gradient updates after warm-up)"""
    warmup_steps: int = 5_000
    """uniform-random steps before the first update"""
    eval_every: int = 10_000
    """steps between deterministic evaluations; each saves an actor snapshot"""
    checkpoint_every: int = 20_000
    """steps between full, resumable checkpoints"""
    seed: int = 0
    task_sampling: str = "law"
    """each episode's task: ``law`` draws fresh parameters from the family's law (``family.sample_params``);
    ``task-set`` one of the default task set's tasks, held-out ones included (the expert serves them all: the
    demos of held-out tasks are its episodes, and their scores are normalized by its returns)"""
    sac: SACHyperparameters = field(default_factory=SACHyperparameters)


def _scale_action(action: np.ndarray, space) -> np.ndarray:
    return space.low + (action + 1.0) * 0.5 * (space.high - space.low)


def _eval_tasks(family: TaskFamily) -> list[int]:
    """The default task set's test tasks plus its first, middle and last training task."""
    ts = family.task_set()
    train = ts.train_indices
    return sorted(set(ts.test_indices) | {train[0], train[len(train) // 2], train[-1]})


def evaluate_actor(actor, family: TaskFamily, task_indices: list[int], seed: int) -> dict[str, list[float]]:
    """One deterministic episode per task, all tasks stepped as one batch."""

    @torch.no_grad()
    def act(obs: np.ndarray, goals: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.concatenate([obs, goals], -1).astype(np.float32))
        return _scale_action(actor(x, deterministic=True)[0].numpy(), family.action_space)

    result = run_goal_conditioned(family, task_indices, act, episodes=1, seed=seed)
    return {"return": result["return"][0].tolist(), "mean_velocity": result["mean_velocity"][0].tolist()}


class _Checkpointer:
    def __init__(self, root: Path):
        self.root = root / "checkpoints"

    def latest(self) -> Path | None:
        pointer = self.root / "latest"
        if not pointer.exists():
            return None
        path = self.root / pointer.read_text().strip()
        return path if path.exists() else None

    def save(self, step: int, minutes: float, sac: SAC, replay: ReplayBuffer, rng: np.random.Generator) -> None:
        name = f"step_{step:07d}"
        tmp = self.root / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(
            {
                "step": step,
                "minutes": minutes,
                "model": sac.state_dict(),
                "optimizers": sac.optimizer_state(),
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": json.dumps(rng.bit_generator.state),
            },
            tmp / "state.pt",
        )
        save_numpy(replay.state_dict(), str(tmp / "replay.safetensors"))
        shutil.rmtree(self.root / name, ignore_errors=True)
        os.replace(tmp, self.root / name)
        atomic_write_text(self.root / "latest", name)
        for old in self.root.glob("step_*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)

    def load(self, path: Path, sac: SAC, replay: ReplayBuffer, rng: np.random.Generator) -> tuple[int, float]:
        # weights_only: a checkpoint can hold tensors and plain containers, never code.
        state = torch.load(path / "state.pt", weights_only=True)
        sac.load_state_dict(state["model"])
        sac.load_optimizer_state(state["optimizers"])
        torch.set_rng_state(state["torch_rng"])
        rng.bit_generator.state = json.loads(state["numpy_rng"])
        replay.load_state_dict(load_numpy(str(path / "replay.safetensors")))
        return int(state["step"]), float(state.get("minutes", 0.0))


def train_behavior_policy(config: BehaviorTrainConfig) -> Path:
    """Train (or resume) a goal-conditioned SAC; returns the run folder."""
    family = get_family(config.family)
    if config.task_sampling not in TASK_SAMPLING:
        raise ConfigError(f"task_sampling {config.task_sampling!r}: choose one of {', '.join(TASK_SAMPLING)}")
    out = Path(config.output_dir)
    if (out / "checkpoints" / "latest").exists():  # a resumed run keeps its tasks: the recipe must reproduce it
        before = json.loads((out / "config.json").read_text()).get("task_sampling", "law")
        if before != config.task_sampling:
            raise ConfigError(
                f"{out} was trained with --task-sampling {before}; resume it with the same, "
                "or train into another --output-dir"
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", asdict(config))
    torch.set_num_threads(1)  # small MLPs: one thread is fastest and leaves the other core free
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    obs_dim = family.observation_space.shape[0]
    act_dim = family.action_space.shape[0]
    goal_dim = family.goal_features(family.task_set().params[0]).shape[0]
    sac = SAC(obs_dim, goal_dim, act_dim, config.sac)
    replay = ReplayBuffer(obs_dim + goal_dim, act_dim, config.total_steps)
    checkpointer = _Checkpointer(out)
    step, minutes_before = 0, 0.0  # training time is counted across resumes
    if (latest := checkpointer.latest()) is not None:
        step, minutes_before = checkpointer.load(latest, sac, replay, rng)
        logger.info("resumed %s at step %d", out, step)
    eval_tasks = _eval_tasks(family)

    task_params = family.task_set().params

    def new_episode():
        if config.task_sampling == "law":
            params = family.sample_params(rng)
        else:
            params = task_params[int(rng.integers(len(task_params)))]
        env = family.make_env(params)
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        return env, family.goal_features(params), obs

    env, goal, obs = new_episode()
    bar = tqdm(total=config.total_steps, initial=step, desc=f"SAC {family.name}", unit="step")
    start, stats = time.time() - 60 * minutes_before, {}
    while step < config.total_steps:
        x = np.concatenate([obs, goal]).astype(np.float32)
        if step < config.warmup_steps:
            action = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
        else:
            with torch.no_grad():
                action = sac.actor(torch.from_numpy(x)[None])[0][0].numpy()
        next_obs, reward, terminated, truncated, _ = env.step(_scale_action(action, env.action_space))
        replay.add(x, action, reward, np.concatenate([next_obs, goal]), float(terminated))
        obs = next_obs
        if terminated or truncated:
            env.close()
            env, goal, obs = new_episode()
        step += 1
        if step >= config.warmup_steps:
            stats = sac.update(replay.sample(config.sac.batch_size, rng))
        bar.update(1)
        if step % config.eval_every == 0:
            result = evaluate_actor(sac.actor, family, eval_tasks, seed=EVAL_SEED)
            record = {
                "step": step,
                "minutes": (time.time() - start) / 60,
                "tasks": eval_tasks,
                **result,
                **stats,
            }
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            snapshot = out / "snapshots" / f"step_{step:07d}.safetensors"
            snapshot.parent.mkdir(exist_ok=True)
            save_file(
                {k: v.contiguous() for k, v in sac.actor.state_dict().items()},
                str(snapshot),
                metadata={
                    "family": family.name,
                    "step": str(step),
                    "dims": json.dumps(
                        {
                            "obs_dim": obs_dim,
                            "goal_dim": goal_dim,
                            "act_dim": act_dim,
                            "hidden": config.sac.hidden,
                        }
                    ),
                    "eval": json.dumps({"tasks": eval_tasks, **result}),
                },
            )
            bar.set_postfix(mean_return=f"{np.mean(result['return']):.1f}")
        if step % config.checkpoint_every == 0 or step == config.total_steps:
            checkpointer.save(step, (time.time() - start) / 60, sac, replay, rng)
    bar.close()
    return out
