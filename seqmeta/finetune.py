"""Fine-tuning a trained model on new tasks from a few of their trajectories.

    seqmeta finetune --model outputs/train/model --data new_task_data --output-dir outputs/ft --method awr

The first ``trajectories`` episodes of each chosen task are the whole training set: history
segments come from them and so do the prompts (from another of those episodes when there are two or
more). Methods:

- ``full``: every weight is trained.
- ``lora``: low-rank adapters (``peft``) on the transformer's attention and MLP projections; they
  are merged into the weights at the end, so the output loads like any other model.
- ``awr``: full fine-tuning with each action's loss weighted by ``exp(A / (beta * return_scale))``,
  capped at ``awr_max_weight``, in the spirit of MACAW. The advantage ``A = R_t - V(s_t)`` compares
  the return that followed the action with the pretrained model's own value estimate (its value
  head, with the return hidden, conditioned on the prompt): better-than-expected actions count more.

The output folder is a ``save_pretrained`` model with ``finetune_config.yaml`` and
``finetune_data.json`` (which episodes were used: the natural prompts for the adapted tasks).
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from seqmeta.configs import check_options, option
from seqmeta.errors import ConfigError, import_extra
from seqmeta.trainer import EpisodeBatches, LoopConfig, fit, save_model

METHODS = ("full", "lora", "awr")


@dataclass
class FinetuneConfig(LoopConfig):
    """Adapting a trained model to new tasks from a few of their trajectories."""

    model: str = option("", "the trained model folder (a `seqmeta train` model/ or any save_pretrained folder)")
    data: str = option("", "dataset folder holding trajectories of the new tasks")
    output_dir: str = option("outputs/finetune", "checkpoints/, logs/ and the adapted model/ go here")
    method: str = option(
        "full", "full, lora or awr (advantage-weighted, with the model's value head)", choices=("full", "lora", "awr")
    )
    tasks: str = option("all", "tasks of the dataset to adapt to: all, test, train, or indices like 2,7")
    trajectories: int = option(5, "trajectories per task to learn from: the first N episodes of each task", low=1)
    segment_length: int = option(0, "history steps per sample (0: twice the model's context_length)", low=0)
    lora_rank: int = option(8, "LoRA rank (method lora)", low=1)
    lora_alpha: float = option(16.0, "LoRA scaling numerator (method lora)", low=0, low_open=True)
    awr_beta: float = option(
        1.0, "AWR temperature, in units of the model's return_scale (method awr)", low=0, low_open=True
    )
    awr_max_weight: float = option(20.0, "AWR weight cap (method awr)", low=0, low_open=True)
    max_steps: int = option(300, "optimizer steps", low=1)
    batch_size: int = option(32, "samples per process and step", low=1)
    warmup_steps: int = option(10, "linear learning-rate warmup steps", low=0)
    checkpoint_every: int = option(100, "steps between save_state checkpoints (the last two are kept)", low=1)
    log_every: int = option(10, "steps between tracker logs", low=1)


def choose_episodes(data, tasks: str, trajectories: int) -> dict[int, list[int]]:
    """The first ``trajectories`` episodes (rows of ``data.episodes``) of each chosen task."""
    if trajectories < 1:
        raise ConfigError(f"trajectories must be >= 1, got {trajectories}")
    present = sorted(set(data.episodes["task_index"].tolist()))
    chosen = present if tasks == "all" else data.task_set.select(tasks)
    return {int(task): data.first_episodes(task, trajectories, asked_by="--trajectories") for task in chosen}


def finetune(config: FinetuneConfig, resume: bool = False) -> Path:
    """Adapt ``config.model`` to the chosen tasks of ``config.data``; returns the adapted model's folder."""
    check_options(config)
    from seqmeta.data.dataset import load_trajectories
    from seqmeta.models import load_model

    if config.method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {config.method!r}")
    if not config.model or not config.data:
        raise ConfigError("fine-tuning needs --model DIR (a trained model) and --data DIR (trajectories of new tasks)")
    if (Path(config.output_dir) / "model").resolve() == Path(config.model).resolve():
        raise ConfigError(
            f"--output-dir {config.output_dir} would write the fine-tuned model over its input {config.model}: "
            "choose another output folder"
        )
    data = load_trajectories(config.data)
    episodes = choose_episodes(data, config.tasks, config.trajectories)
    pretrained = load_model(config.model)
    pretrained.config.check_fits(data)
    mcfg = pretrained.config
    reference = copy.deepcopy(pretrained).eval().requires_grad_(False) if config.method == "awr" else None

    def build_model():
        model = copy.deepcopy(pretrained)
        if config.method == "lora":
            peft = import_extra("peft", "lora", "fine-tuning with method lora")
            lora = peft.LoraConfig(
                r=config.lora_rank,
                lora_alpha=config.lora_alpha,
                target_modules=list(model.lora_target_modules),
                fan_in_fan_out=True,  # GPT-2's projections are Conv1D (weights stored transposed)
                lora_dropout=0.0,
            )
            with warnings.catch_warnings():  # peft asks transformers a deprecated (5.x) question; nothing to act on
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                model = peft.get_peft_model(model, lora)
        return model

    def advantage_weights(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        reference.to(batch["observation"].device)
        with torch.no_grad():
            blind = torch.ones_like(batch["hide_return"], dtype=torch.bool)
            value = reference(**(batch | {"hide_return": blind})).value_preds
        advantage = batch["return_to_go"] - value
        return torch.exp(advantage / (config.awr_beta * mcfg.return_scale)).clamp(max=config.awr_max_weight)

    rows = [r for task_rows in episodes.values() for r in task_rows]
    accelerator, model = fit(
        config,
        build_model=build_model,
        make_batches=lambda seed: EpisodeBatches(
            data,
            segment_length=config.segment_length or 2 * mcfg.context_length,
            batch_size=config.batch_size,
            num_prompt_segments=mcfg.num_prompt_segments,
            prompt_length=mcfg.prompt_length,
            prompt_from_start=getattr(mcfg, "prompt_from_start", False),
            use_prompt=mcfg.use_prompt,
            episodes=rows,
            same_episode_prompts=config.trajectories == 1,
            seed=seed,
        ),
        resume=resume,
        config_name="finetune_config.yaml",
        action_weights=advantage_weights if config.method == "awr" else None,
    )
    used = {"data": str(data.path), "episodes": {str(t): r for t, r in episodes.items()}}
    return save_model(
        accelerator,
        model,
        config,
        Path(config.output_dir) / "model",
        "finetune_config.yaml",
        extra_files={"finetune_data.json": json.dumps(used, indent=2) + "\n"},
    )
