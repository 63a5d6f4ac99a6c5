"""Meta-training with accelerate: one loop for CPU, one GPU, or many (``accelerate launch``).

Each sample is a context segment of a training task plus a prompt cut from a different episode of
the same task; the loss is the action loss plus the weighted reward loss. Checkpoints are
``Accelerator.save_state`` folders (model, optimizer, scheduler, RNG states, the samplers' states
and the step counter); ``resume=True`` continues from the latest one. The result is a
``save_pretrained`` folder that ``from_pretrained`` and the agent load directly, with the resolved
training config beside it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from seqmeta.io import atomic_write_json
from seqmeta.models import PromptDTConfig, PromptDTModel

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Meta-training of a prompt- and return-conditioned decision transformer."""

    data: str = ""
    """dataset folder (``seqmeta collect`` output); its task set's training tasks are used"""
    output_dir: str = "outputs/train"
    """checkpoints/ and the final model/ go here"""
    max_steps: int = 2000
    """optimizer steps"""
    batch_size: int = 64
    """samples per process and step"""
    segment_length: int = 20
    """history steps per sample; longer than context_length trains the band the agent streams with"""
    context_length: int = 20
    """K: history steps a token attends to"""
    num_prompt_segments: int = 1
    """J: prompt segments per sample"""
    prompt_length: int = 5
    """K*: steps per prompt segment"""
    use_prompt: bool = True
    use_return: bool = True
    hidden_size: int = 128
    num_layers: int = 3
    num_heads: int = 1
    dropout: float = 0.1
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 0.25
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    """no, fp16 or bf16 (where the device supports it)"""
    checkpoint_every: int = 500
    seed: int = 0

    def model_options(self) -> dict:
        """The fields that configure the model: those named like a ``PromptDTConfig`` field."""
        model_fields = PromptDTConfig.__dataclass_fields__
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if name in model_fields}


class _StepCounter:
    """The optimizer-step count, checkpointed with everything else."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


def _to_tensors(arrays: dict, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v, device=device) for k, v in arrays.items() if k not in ("task_index", "episode_index")}


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train (or, with ``resume``, continue) and return the folder of the saved model."""
    from accelerate import Accelerator  # imported here: `seqmeta --help` stays quick
    from accelerate.utils import ProjectConfiguration, set_seed

    from seqmeta.data.dataset import load_trajectories
    from seqmeta.data.samplers import PromptSampler, WindowSampler, flatten_prompt

    run_dir = Path(config.output_dir)
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        project_config=ProjectConfiguration(project_dir=str(run_dir), automatic_checkpoint_naming=True, total_limit=2),
    )
    set_seed(config.seed)
    data = load_trajectories(config.data)
    tasks = data.family.task_set(data.meta["task_set"]).train_indices
    model = PromptDTModel(PromptDTConfig.from_dataset(data, **config.model_options()))
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(config.warmup_steps, 1)))
    # Each process samples its own stream: different data per rank, reproducible per seed.
    seed = config.seed + 1000 * accelerator.process_index
    windows = WindowSampler(data, config.segment_length, config.batch_size, tasks=tasks, seed=seed)
    prompts = PromptSampler(data, config.num_prompt_segments, config.prompt_length, seed=seed + 1)
    counter = _StepCounter()
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    accelerator.register_for_checkpointing(windows, prompts, counter)
    saved = sorted((run_dir / "checkpoints").glob("checkpoint_*"), key=lambda p: int(p.name.split("_")[1]))
    if resume and saved:
        accelerator.load_state()  # the latest automatic checkpoint
        # accelerate does not advance its checkpoint numbering on load; the next save follows the last.
        accelerator.project_configuration.iteration = int(saved[-1].name.split("_")[1]) + 1
        logger.info("resumed from %s at step %d", saved[-1], counter.step)
    if accelerator.is_main_process:
        atomic_write_json(run_dir / "train_config.json", asdict(config))

    model.train()
    bar = tqdm(total=config.max_steps, initial=counter.step, desc="train", disable=not accelerator.is_main_process)
    while counter.step < config.max_steps:
        with accelerator.accumulate(model):
            batch = windows.sample()
            prompt = flatten_prompt(prompts.sample(batch["task_index"], batch["episode_index"]))
            output = model(
                **_to_tensors(batch, accelerator.device),
                prompt=_to_tensors(prompt, accelerator.device),
                return_loss=True,
            )
            accelerator.backward(output.loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if accelerator.sync_gradients:
            counter.step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{output.loss.item():.4f}")
            if counter.step % config.checkpoint_every == 0 or counter.step == config.max_steps:
                accelerator.save_state()
    bar.close()

    accelerator.wait_for_everyone()
    final = run_dir / "model"
    accelerator.unwrap_model(model).save_pretrained(
        final, is_main_process=accelerator.is_main_process, save_function=accelerator.save
    )
    if accelerator.is_main_process:
        (final / "train_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    return final
