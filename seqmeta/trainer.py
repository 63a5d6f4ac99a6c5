"""Meta-training with accelerate: one loop for CPU, one GPU, or many (``accelerate launch``).

Each sample is a history segment of a training task plus a prompt cut from a different episode of
the same task; the loss is the action loss plus the weighted reward and value losses. A fraction
``return_dropout`` of samples hide their returns, which trains the value head (the model's own
return estimate) and the return-free policy.

``fit`` is the loop that training and fine-tuning share: accelerate does device placement, mixed
precision, gradient accumulation, DDP/FSDP and the trackers (tensorboard by default, plus
``train_log.jsonl``). Checkpoints are ``Accelerator.save_state`` folders (model, optimizer,
scheduler, RNG states, every rank's sampler state, the step counter) with the resolved config
beside them; ``resume=True`` continues from the latest complete one. The result is a
``save_pretrained`` folder that ``from_pretrained`` and the agent load directly, with the resolved
config beside it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from seqmeta.configs import check_options, option, read_yaml, save_config
from seqmeta.errors import ConfigError
from seqmeta.io import atomic_directory, atomic_write_text
from seqmeta.models import build_model, model_fields
from seqmeta.results import LOG_FILE, read_log

logger = logging.getLogger(__name__)

# Fields a resumed run may change: how long it runs and what it reports, not what it learns.
RESUMABLE_CHANGES = frozenset(
    {"max_steps", "checkpoint_every", "log_every", "eval_every", "eval_batches", "rollout_every", "rollout_episodes"}
    | {"report_to"}
)


def lr_factor(config: LoopConfig, step: int) -> float:
    """The learning rate at optimizer step ``step`` (0-based) as a fraction of ``learning_rate``: a linear
    warmup over ``warmup_steps``, then constant or a cosine decay reaching 0 at ``max_steps``."""
    warmup = max(config.warmup_steps, 1)
    if step + 1 < warmup or config.lr_schedule == "constant":
        return min(1.0, (step + 1) / warmup)
    progress = min(1.0, (step + 1 - warmup) / (max(config.max_steps - warmup, 0) + 1))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class LoopConfig:
    """The optimizer loop's settings: what meta-training and fine-tuning share (``fit`` reads them)."""

    max_steps: int = option(2000, "optimizer steps", low=1)
    batch_size: int = option(64, "samples per process and step", low=1)
    learning_rate: float = option(1e-4, "AdamW learning rate after warmup", low=0, low_open=True)
    weight_decay: float = option(1e-4, "AdamW weight decay", low=0)
    warmup_steps: int = option(100, "linear learning-rate warmup steps", low=0)
    lr_schedule: str = option(
        "constant", "after warmup: constant, or cosine (decays to 0 at max_steps)", choices=("constant", "cosine")
    )
    grad_clip: float = option(0.25, "gradient norm clip", low=0, low_open=True)
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step", low=1)
    mixed_precision: str = option(
        "auto", "no, fp16, bf16, or auto (bf16 on a GPU that has it, else no)", choices=("no", "fp16", "bf16", "auto")
    )
    checkpoint_every: int = option(500, "steps between save_state checkpoints (the last two are kept)", low=1)
    log_every: int = option(20, "steps between tracker logs", low=1)
    report_to: str = option("tensorboard", "accelerate trackers, comma-separated (tensorboard, wandb, ...), or none")
    seed: int = option(0, "seed of the model init, dropout and samplers (rank r samples with seed + 1000 r)", low=0)


@dataclass
class TrainConfig(LoopConfig):
    """Meta-training of a prompt- and return-conditioned decision transformer."""

    data: str = option("", "dataset folder (`seqmeta collect` output); its task set's training tasks are trained on")
    output_dir: str = option("outputs/train", "checkpoints/, logs/, train_log.jsonl and the final model/ go here")
    segment_length: int = option(
        40,
        "history steps per sample; longer than context_length trains the K-step band the agent streams with",
        low=1,
    )
    context_length: int = option(20, "K: history steps a token attends to", low=1)
    num_prompt_segments: int = option(1, "J: prompt segments per sample", low=1)
    prompt_length: int = option(5, "K*: steps per prompt segment", low=1)
    prompt_from_start: bool = option(False, "the first prompt segment is the start of its episode (K* first steps)")
    prompt_from_trial: bool = option(
        False,
        "cut each sample's prompt from the earlier episodes of its trial (none in a trial's first episode): "
        "data of a behavior with memory, e.g. the search level",
    )
    use_prompt: bool = option(True, "condition on a trajectory prompt of the task")
    prompt_quality: str = option("", "cut prompts only from episodes of this quality level, e.g. expert ('': any)")
    segment_quality: str = option(
        "",
        "cut history segments (what the model imitates) only from these quality levels, e.g. expert or "
        "search,search-corrections ('': any)",
    )
    use_return: bool = option(True, "condition on the return-to-go")
    return_dropout: float = option(
        0.1, "fraction of samples whose returns are hidden (trains the value head)", low=0, high=1
    )
    prompt_dropout: float = option(
        0.0,
        "fraction of samples whose prompt is hidden (all masked): trains how to act with no prompt (round 0)",
        low=0,
        high=1,
    )
    no_prompt_quality: str = option(
        "", "segments of the samples whose prompt is hidden come from this quality level, e.g. sweep ('': as others)"
    )
    hidden_size: int = option(128, "transformer width", low=1)
    num_layers: int = option(3, "transformer blocks", low=1)
    num_heads: int = option(1, "attention heads", low=1)
    dropout: float = option(0.1, "dropout in the transformer", low=0, high=0.99)
    eval_every: int = option(250, "steps between validation losses on held-out tasks (0: never)", low=0)
    eval_batches: int = option(4, "batches per validation (the same batches every time)", low=1)
    rollout_every: int = option(
        0,
        "steps between batched rollouts on held-out tasks, prompted with 1 expert trajectory (0: never)",
        low=0,
    )
    rollout_episodes: int = option(5, "episodes per held-out task in each of those rollouts", low=1)

    def model_options(self) -> dict:
        """The fields that configure the model: those named like a model config field."""
        fields = model_fields()
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if name in fields}


# ---- batches ------------------------------------------------------------------------------------


class EpisodeBatches:
    """Training samples: history segments, each with a prompt from another episode of its task.

    ``sample()`` returns the model's keyword arguments as numpy arrays (the prompt as a nested dict),
    with ``hide_return`` set on a ``return_dropout`` fraction of samples. ``tasks`` and ``episodes``
    restrict which episodes segments and prompts come from (``segment_episodes`` further restricts the
    segments, ``prompt_episodes`` the prompts, e.g. to expert demonstrations); with
    ``same_episode_prompts`` a prompt may come from the sample's own episode (fine-tuning on a single
    trajectory).
    """

    def __init__(
        self,
        data,
        *,
        segment_length: int,
        batch_size: int,
        num_prompt_segments: int,
        prompt_length: int,
        use_prompt: bool = True,
        return_dropout: float = 0.0,
        prompt_dropout: float = 0.0,
        prompt_from_start: bool = False,
        prompt_from_trial: bool = False,
        tasks=None,
        episodes=None,
        prompt_episodes=None,
        segment_episodes=None,
        no_prompt_episodes=None,
        same_episode_prompts: bool = False,
        seed: int = 0,
    ):
        from seqmeta.data.samplers import PromptSampler, WindowSampler

        windows = episodes
        if segment_episodes is not None:
            windows = segment_episodes if episodes is None else np.intersect1d(segment_episodes, episodes)
        self.windows = WindowSampler(data, segment_length, batch_size, tasks=tasks, seed=seed, episodes=windows)
        self.no_prompt_windows = None  # where samples with a hidden prompt take their segments, if not from windows
        if no_prompt_episodes is not None:
            self.no_prompt_windows = WindowSampler(
                data, segment_length, batch_size, tasks=tasks, seed=seed + 3, episodes=no_prompt_episodes
            )
        if prompt_episodes is not None:
            episodes = prompt_episodes if episodes is None else np.intersect1d(prompt_episodes, episodes)
        self.prompts = PromptSampler(
            data, num_prompt_segments, prompt_length, seed=seed + 1, episodes=episodes, start_segment=prompt_from_start
        )
        self.use_prompt, self.return_dropout, self.prompt_dropout = use_prompt, return_dropout, prompt_dropout
        self.same_episode_prompts, self.prompt_from_trial = same_episode_prompts, prompt_from_trial
        if prompt_from_trial and not data.episodes["trial_episode"][self.windows.episode_ids].any():
            raise ConfigError(
                f"prompt_from_trial needs trials, but the episodes trained on in {data.path} have none: collect a "
                "behavior with memory (e.g. `seqmeta collect --quality search`) and train on it (segment_quality)"
            )
        self.rng = np.random.default_rng(seed + 2)

    def sample(self) -> dict[str, Any]:

        batch = self.windows.sample()
        task, episode = batch.pop("task_index"), batch.pop("episode_index")
        if self.use_prompt:
            batch["prompt"] = self.prompts_for(task, episode)
            if self.prompt_dropout:
                hidden = self.rng.random(len(task)) < self.prompt_dropout
                batch["prompt"]["attention_mask"] = batch["prompt"]["attention_mask"] & ~hidden[:, None]
                if self.no_prompt_windows is not None:  # what to do before seeing the task: its own behavior
                    other = self.no_prompt_windows.sample()
                    for key, value in batch.items():
                        if key != "prompt":
                            batch[key] = np.where(hidden.reshape(-1, *[1] * (value.ndim - 1)), other[key], value)
        batch["hide_return"] = self.rng.random(len(task)) < self.return_dropout
        return batch

    def prompts_for(self, task: np.ndarray, episode: np.ndarray) -> dict[str, np.ndarray]:
        """One flattened prompt per sample, from another episode of its task (unless same_episode_prompts)."""
        from seqmeta.data.samplers import flatten_prompt

        if self.prompt_from_trial:
            return flatten_prompt(self.prompts.sample_trial(episode))
        exclude = None if self.same_episode_prompts else episode
        return flatten_prompt(self.prompts.sample(task, exclude))

    def state_dict(self) -> dict[str, Any]:
        state = {
            "windows": self.windows.state_dict(),
            "prompts": self.prompts.state_dict(),
            "rng": json.dumps(self.rng.bit_generator.state),
        }
        if self.no_prompt_windows is not None:
            state["no_prompt_windows"] = self.no_prompt_windows.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.windows.load_state_dict(state["windows"])
        self.prompts.load_state_dict(state["prompts"])
        if self.no_prompt_windows is not None:
            self.no_prompt_windows.load_state_dict(state["no_prompt_windows"])
        self.rng.bit_generator.state = json.loads(state["rng"])


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """numpy arrays (and nested dicts of them) -> tensors on ``device``."""
    return {
        k: to_device(v, device) if isinstance(v, dict) else torch.as_tensor(v, device=device) for k, v in batch.items()
    }


# ---- checkpointed state -------------------------------------------------------------------------


@dataclass
class _Step:
    step: int = 0


STATE_FILE = "seqmeta_state.json"  # seqmeta's own checkpointed state: the step and every rank's sampler


def _save_loop_state(accelerator, location: Path, step: int, batches) -> None:
    """The step and each process's sampler state, as JSON beside accelerate's files (never pickle)."""
    from accelerate.utils import gather_object

    ranks = gather_object([batches.state_dict()])
    if accelerator.is_main_process:
        atomic_write_text(location / STATE_FILE, json.dumps({"step": step, "ranks": ranks}))


def _load_loop_state(accelerator, location: Path, batches) -> int:
    """Restore this process's sampler state; returns the step. Refuses pickles seqmeta did not write."""
    foreign = [p.name for p in location.glob("*.pkl") if not p.name.startswith("random_states_")]
    if foreign or not (location / STATE_FILE).is_file():
        raise ConfigError(
            f"{location} is not a checkpoint seqmeta wrote ({', '.join(foreign) or f'no {STATE_FILE}'}): seqmeta "
            "loads no pickled objects; remove that folder or start a new --output-dir"
        )
    from accelerate.utils import load

    for rng_file in location.glob("random_states_*.pkl"):
        try:  # accelerate skips RNG states it cannot read, which would resume silently off the run's path
            load(rng_file)  # torch's weights-only unpickler: tensors and numpy states, no code
        except Exception as e:
            raise ConfigError(
                f"{rng_file} is not an RNG state seqmeta can load safely ({type(e).__name__}); the checkpoint is "
                "damaged or was tampered with: remove that folder or start a new --output-dir"
            ) from None
    state = json.loads((location / STATE_FILE).read_text())
    ranks = state["ranks"]
    if len(ranks) != accelerator.num_processes:
        raise ConfigError(
            f"the checkpoint was written by {len(ranks)} processes and this run has "
            f"{accelerator.num_processes}; resume with the same number of processes"
        )
    batches.load_state_dict(ranks[accelerator.process_index])
    return int(state["step"])


def _jsonl_tracker(path: Path):
    from accelerate.tracking import GeneralTracker

    class JsonLinesTracker(GeneralTracker):
        """One JSON object per log call, appended to ``train_log.jsonl`` (what seqmeta's plots read)."""

        name = "jsonl"
        requires_logging_directory = False
        main_process_only = True

        def __init__(self):
            super().__init__()
            self.path = path

        @property
        def tracker(self):
            return self.path

        def store_init_configuration(self, values: dict) -> None:
            pass

        def log(self, values: dict, step: int | None = None, **kwargs) -> None:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")

    return JsonLinesTracker()


def _complete_checkpoints(checkpoint_dir: Path, config_name: str) -> list[Path]:
    """Checkpoint folders in step order; one a killed save left without its config is removed."""
    found = sorted(checkpoint_dir.glob("checkpoint_*"), key=lambda p: int(p.name.split("_")[1]))
    complete = [p for p in found if (p / config_name).exists()]
    for p in found:
        if p not in complete:
            logger.warning("removing %s: a save that did not finish", p)
            shutil.rmtree(p, ignore_errors=True)
    return complete


def _check_resumable(config, saved_path: Path) -> None:
    saved = read_yaml(saved_path)
    current = dataclasses.asdict(config)
    changed = [k for k in current if k not in RESUMABLE_CHANGES and k in saved and saved[k] != current[k]]
    if changed:
        diffs = ", ".join(f"{k}: {saved[k]!r} -> {current[k]!r}" for k in changed)
        raise ConfigError(
            f"--resume with a config that differs from the run's ({saved_path}) in {diffs}; resume with the "
            f"same settings (only {', '.join(sorted(RESUMABLE_CHANGES))} may change) or choose a new --output-dir"
        )


def _mixed_precision(choice: str) -> str:
    if choice == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if choice not in ("no", "fp16", "bf16"):
        raise ConfigError(f"mixed_precision must be no, fp16, bf16 or auto, got {choice!r}")
    if choice == "fp16" and not torch.cuda.is_available():
        raise ConfigError("mixed_precision fp16 needs a CUDA GPU; on this machine use no (or auto)")
    return choice


def _check_launch(accelerator) -> None:
    """Several processes launched, but each trains alone (a GPU launch config on a machine without the GPUs):
    they would race on one output folder and train apart. Refused before anything is written."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes == 1:
        raise ConfigError(
            f"{launched} processes were launched but each trains alone: the launch config asks for GPUs this "
            f"machine does not have ({torch.cuda.device_count()} here). On CPUs run "
            f"`ACCELERATE_USE_CPU=1 torchrun --nproc_per_node {launched} -m seqmeta train ...` (DDP over gloo); "
            "on GPUs set num_processes in the launch config to the number of GPUs"
        )


# ---- the loop -----------------------------------------------------------------------------------


def fit(
    config,
    build_model: Callable[[], torch.nn.Module],
    make_batches: Callable[[int], EpisodeBatches],
    *,
    resume: bool = False,
    config_name: str = "train_config.yaml",
    validation_batches: Callable[[], list[dict[str, Any]]] | None = None,
    action_weights: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    rollouts: Callable[[torch.nn.Module], dict[str, float]] | None = None,
):
    """Run the optimizer loop of ``config`` (a ``LoopConfig``: ``TrainConfig`` or ``FinetuneConfig``).

    ``build_model()`` is called after seeding; ``make_batches(seed)`` makes this process's sample
    stream; ``validation_batches()`` the fixed held-out batches (or None); ``action_weights(batch)``
    per-step weights of the action loss (advantage weighting); ``rollouts(model)`` scores from acting
    in held-out tasks, run every ``rollout_every`` steps. Returns the accelerator and the
    prepared model; the caller saves the artifact (``save_model``).
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    run_dir = Path(config.output_dir)
    trackers = [] if config.report_to in ("", "none") else [t.strip() for t in config.report_to.split(",")]
    accelerator = Accelerator(
        mixed_precision=_mixed_precision(config.mixed_precision),
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=[*trackers, _jsonl_tracker(run_dir / LOG_FILE)],
        project_config=ProjectConfiguration(
            project_dir=str(run_dir),
            logging_dir=str(run_dir / "logs"),
            automatic_checkpoint_naming=True,
            total_limit=2,
        ),
    )
    _check_launch(accelerator)
    saved = _complete_checkpoints(run_dir / "checkpoints", config_name) if resume else []
    if resume and (run_dir / config_name).exists():
        _check_resumable(config, run_dir / config_name)
    if not resume and (run_dir / "checkpoints").exists():  # every rank checks: none waits for a failed one
        raise FileExistsError(
            f"{run_dir} already holds checkpoints; pass --resume to continue that run or choose a new --output-dir"
        )
    accelerator.wait_for_everyone()
    set_seed(config.seed)
    model = build_model()
    params = [p for p in model.parameters() if p.requires_grad]  # LoRA: the adapters only
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(config, s))
    batches = make_batches(config.seed + 1000 * accelerator.process_index)
    step = 0
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if saved:
        step = _load_loop_state(accelerator, saved[-1], batches)  # checks the folder before accelerate reads it
        accelerator.load_state(str(saved[-1]))
        # accelerate does not advance its checkpoint numbering on load; the next save follows the last.
        accelerator.project_configuration.iteration = int(saved[-1].name.split("_")[1]) + 1
        logger.info("resumed from %s at step %d", saved[-1], step)
    counter = _Step(step)
    if accelerator.is_main_process:
        save_config(config, run_dir / config_name)
        if (run_dir / LOG_FILE).exists():  # drop what a killed run logged after its last checkpoint
            kept = [e for e in read_log(run_dir / LOG_FILE) if e["step"] <= counter.step]
            atomic_write_text(run_dir / LOG_FILE, "".join(json.dumps(e) + "\n" for e in kept))
    accelerator.init_trackers(run_dir.name or "seqmeta", config=dataclasses.asdict(config))
    eval_every = getattr(config, "eval_every", 0)
    validation = validation_batches() if validation_batches and eval_every > 0 else None

    rollout_every = getattr(config, "rollout_every", 0)

    def due(every: int) -> bool:
        return bool(every) and (counter.step % every == 0 or counter.step == config.max_steps)

    samples_per_step = config.batch_size * config.gradient_accumulation_steps * accelerator.num_processes
    model.train()
    bar = tqdm(total=config.max_steps, initial=counter.step, desc="train", disable=not accelerator.is_main_process)
    sums: dict[str, torch.Tensor] = {}  # summed on the device; read (one sync) when logged
    window_start, window_steps = time.perf_counter(), 0
    while counter.step < config.max_steps:
        with accelerator.accumulate(model):
            batch = to_device(batches.sample(), accelerator.device)
            if action_weights is not None:
                batch["action_weight"] = action_weights(batch)
            output = model(**batch, return_loss=True)
            accelerator.backward(output.loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        for name in ("loss", "action_loss", "reward_loss", "value_loss"):
            sums[name] = sums.get(name, 0.0) + output[name].detach()
        if not accelerator.sync_gradients:
            continue
        counter.step += 1
        window_steps += 1
        bar.update(1)
        if due(config.log_every) or due(config.checkpoint_every):
            _check_finite(sums, counter.step, config.log_every)
        if due(config.log_every):
            rate = window_steps * samples_per_step / (time.perf_counter() - window_start)
            micro = window_steps * config.gradient_accumulation_steps
            logs = {k: v.item() / micro for k, v in sums.items()}
            logs |= {"lr": scheduler.get_last_lr()[0], "samples_per_s": rate}
            accelerator.log(logs, step=counter.step)
            bar.set_postfix(loss=f"{logs['loss']:.4f}", samples_s=f"{rate:,.0f}")
            sums, window_start, window_steps = {}, time.perf_counter(), 0
        if validation and due(eval_every):
            accelerator.log(validate(model, validation, accelerator.device), step=counter.step)
        if rollouts and due(rollout_every):
            if accelerator.is_main_process:  # rollouts run on one process; the others wait
                accelerator.log(rollouts(accelerator.unwrap_model(model)), step=counter.step)
                model.train()
            accelerator.wait_for_everyone()
        if due(config.checkpoint_every):
            location = accelerator.save_state()
            _save_loop_state(accelerator, Path(location), counter.step, batches)
            if accelerator.is_main_process:
                save_config(config, Path(location) / config_name)  # written last: marks the save complete
            accelerator.wait_for_everyone()
    bar.close()
    _check_finite(sums, counter.step, config.log_every)
    return accelerator, model


def _check_finite(sums: dict[str, torch.Tensor], step: int, log_every: int) -> None:
    """Stop a run whose loss went NaN or inf (checked when logging and before saving: one sync)."""
    loss = sums.get("loss")
    if loss is not None and not bool(torch.isfinite(loss)):
        raise ConfigError(
            f"the training loss is {loss.item()} by step {step} (within the last {log_every} steps); nothing was saved "
            "from these steps. Check the data for NaN or extreme values (seqmeta info), lower the learning rate, or "
            "clip gradients harder (grad_clip)"
        )


@torch.no_grad()
def validate(model, batches: list[dict[str, Any]], device: torch.device) -> dict[str, float]:
    """Mean losses over fixed held-out batches, in eval mode (no dropout)."""
    model.eval()
    totals = {"val_loss": 0.0, "val_action_loss": 0.0, "val_reward_loss": 0.0}
    for batch in batches:
        out = model(**to_device(batch, device), return_loss=True)
        for name in totals:
            totals[name] += out[name.removeprefix("val_")].item() / len(batches)
    model.train()
    return totals


def save_model(accelerator, model, config, folder: Path, config_name: str, extra_files: dict[str, str] | None = None):
    """Write the ``save_pretrained`` folder (atomically, main process) with the resolved config beside it,
    then end the run (trackers, process group)."""
    unwrapped = accelerator.unwrap_model(model)
    if hasattr(unwrapped, "merge_and_unload"):  # LoRA adapters (peft): fold them into the weights
        unwrapped = unwrapped.merge_and_unload()
        state_dict = unwrapped.state_dict()
    else:
        state_dict = accelerator.get_state_dict(model)  # every rank takes part (FSDP gathers here)
    broken = [name for name, value in state_dict.items() if value.is_floating_point() and not value.isfinite().all()]
    if broken:
        raise ConfigError(
            f"the trained weights hold NaN or inf ({', '.join(broken[:3])}...): the model is not saved. Check the data "
            "for extreme values, lower the learning rate or clip gradients harder (grad_clip)"
        )
    if accelerator.is_main_process:
        with atomic_directory(folder, overwrite=True) as tmp:
            unwrapped.save_pretrained(tmp, state_dict=state_dict)
            save_config(config, tmp / config_name)
            for name, text in (extra_files or {}).items():
                (tmp / name).write_text(text)
    accelerator.wait_for_everyone()
    accelerator.end_training()  # closes the trackers and the process group
    return folder


# ---- meta-training ------------------------------------------------------------------------------


def episodes_of_quality(data, quality: str, option_name: str = "prompt_quality"):
    """Rows of ``data.episodes`` of one quality level or a comma list of them (None: every episode)."""
    if not quality:
        return None
    chosen = [q.strip() for q in quality.split(",")]
    unknown = [q for q in chosen if q not in data.meta.qualities]
    if unknown:
        raise ConfigError(
            f"{option_name} {unknown[0]!r} is not a quality level of {data.path} ({', '.join(data.meta.qualities)})"
        )
    return np.flatnonzero(np.isin(data.episodes["quality"], chosen))


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Meta-train (or, with ``resume``, continue) and return the folder of the saved model."""
    from seqmeta.data.dataset import load_trajectories

    check_options(config)
    if not config.data:
        raise ConfigError("no training data: set data in the recipe or pass --data DIR (a `seqmeta collect` folder)")
    if config.hidden_size % config.num_heads:
        raise ConfigError(
            f"hidden_size {config.hidden_size} is not divisible by num_heads {config.num_heads}: choose a width that "
            "is a multiple of the heads"
        )
    data = load_trajectories(config.data)
    task_set = data.task_set
    train_tasks, held_out = training_tasks(data)
    if not train_tasks:
        raise ConfigError(f"{config.data} holds no episodes of the training tasks {list(task_set.train_indices)}")
    options = dict(
        segment_length=config.segment_length,
        batch_size=config.batch_size,
        num_prompt_segments=config.num_prompt_segments,
        prompt_length=config.prompt_length,
        prompt_from_start=config.prompt_from_start,
        prompt_from_trial=config.prompt_from_trial,
        use_prompt=config.use_prompt,
        prompt_episodes=episodes_of_quality(data, config.prompt_quality),
        segment_episodes=episodes_of_quality(data, config.segment_quality, "segment_quality"),
        no_prompt_episodes=episodes_of_quality(data, config.no_prompt_quality, "no_prompt_quality"),
    )

    def validation_batches():
        if not held_out:
            logger.info("no held-out tasks in %s: no validation loss", config.data)
            return None
        fixed = EpisodeBatches(data, **options, tasks=held_out, seed=config.seed + 999_983)
        return [fixed.sample() for _ in range(config.eval_batches)]

    def rollouts(model) -> dict[str, float]:
        from seqmeta.evaluation import EvalProtocol, evaluate

        quality = "expert" if "expert" in data.meta.qualities else next(iter(data.meta.qualities))
        protocol = EvalProtocol(
            data=config.data,
            tasks=",".join(map(str, held_out)),
            prompt_source=quality,
            prompt_trajectories="1" if config.use_prompt else "0",
            episodes=config.rollout_episodes,
        )
        setting = evaluate(model, protocol, progress=False)["settings"][0]
        scores = {"rollout_mean_return": setting["mean_return"]}
        return scores | ({"rollout_normalized": setting["normalized"]} if setting["normalized"] is not None else {})

    accelerator, model = fit(
        config,
        build_model=lambda: build_model(data, **config.model_options()),
        make_batches=lambda seed: EpisodeBatches(
            data,
            **options,
            return_dropout=config.return_dropout,
            prompt_dropout=config.prompt_dropout,
            tasks=train_tasks,
            seed=seed,
        ),
        resume=resume,
        validation_batches=validation_batches,
        rollouts=rollouts if held_out else None,
    )
    extra = {"train_data.json": json.dumps(training_data_summary(config.data, data), indent=1) + "\n"}
    return save_model(accelerator, model, config, Path(config.output_dir) / "model", "train_config.yaml", extra)


def training_tasks(data) -> tuple[list[int], list[int]]:
    """The tasks meta-training samples (the task set's training tasks present in ``data``) and those it
    validates on (held-out tasks present in ``data``)."""
    task_set = data.task_set
    present = set(np.unique(data.episodes["task_index"]).tolist())
    train_tasks = [t for t in task_set.train_indices if t in present]
    held_out = [t for t in task_set.test_indices if t in present and t not in task_set.train_indices]
    return train_tasks, held_out


def training_data_summary(path: str, data) -> dict[str, Any]:
    """What a model card says of the training data (``train_data.json`` beside the model): the data need
    not travel with the model."""
    train_tasks, held_out = training_tasks(data)
    return {
        "data": str(Path(path).resolve()),
        "family": data.meta.family,
        "task_set": data.meta.task_set,
        "train_tasks": train_tasks,
        "validation_tasks": held_out,
        "qualities": {q: int(v.get("episodes", 0)) for q, v in data.meta.qualities.items()},
        "num_episodes": data.meta.num_episodes,
        "train_episodes": int(np.isin(data.episodes["task_index"], train_tasks).sum()),
        "collection_command": data.meta.collection.get("command"),
    }
