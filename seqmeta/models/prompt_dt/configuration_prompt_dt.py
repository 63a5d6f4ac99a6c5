"""Configuration of the prompt- and return-conditioned decision transformer."""

from __future__ import annotations

import numpy as np
from transformers import GPT2Config, PreTrainedConfig

from seqmeta.errors import ConfigError

NORMALIZATION_VALUES = ("state_mean", "state_std", "action_low", "action_high", "return_scale", "reward_scale")


class PromptDTConfig(PreTrainedConfig):
    r"""
    state_dim (`int`): observation width.
    act_dim (`int`): action width.
    hidden_size (`int`, defaults to 128), num_layers (`int`, 3), num_heads (`int`, 1), dropout (`float`, 0.1):
        the GPT-2 backbone (fed `inputs_embeds`; its position embedding is unused, the episode timestep
        embedding is the positional signal).
    context_length (`int`, defaults to 20): K, the history steps a token may attend to. Attention over the
        history is a band of K steps, so a rolling key/value cache of the last K-1 steps is exact.
    prompt_length (`int`, defaults to 5): K*, steps per prompt segment. num_prompt_segments (`int`, 1): J.
    prompt_from_start (`bool`, defaults to False): the first prompt segment is the start of its episode.
    prompt_from_trial (`bool`, defaults to False): trained on prompts from the latest J earlier episodes of
        a trial, one segment each; the own-exploration rounds prompt it with its own latest J episodes.
    max_timestep (`int`, defaults to 1000): size of the timestep embedding (longer episodes are clipped).
    use_prompt, use_return (`bool`): the conditioning mode. Both on: Prompt-DT. Prompt only, return only
        (a multi-task decision transformer) and neither (behavior cloning) come from the same code.
    action_loss_weight, reward_loss_weight, value_loss_weight (`float`): weights of the action loss and of
        the auxiliary reward and value losses.
    state_mean, state_std (`list[float]`): observation normalization, from the training data.
    return_scale (`float`): returns-to-go are divided by this before embedding.
    reward_scale (`float`): rewards are divided by this before embedding, and predicted in these units.
    action_low, action_high (`list[float]`): the action box; the action head's tanh is mapped onto it.
    family, task_set (`str`): the task family and task set the model was trained on ("" if none).
    """

    model_type = "seqmeta_prompt_dt"

    state_dim: int = 17
    act_dim: int = 6
    hidden_size: int = 128
    num_layers: int = 3
    num_heads: int = 1
    dropout: float = 0.1
    context_length: int = 20
    prompt_length: int = 5
    num_prompt_segments: int = 1
    prompt_from_start: bool = False
    prompt_from_trial: bool = False
    max_timestep: int = 1000
    use_prompt: bool = True
    use_return: bool = True
    action_loss_weight: float = 1.0
    reward_loss_weight: float = 0.1
    value_loss_weight: float = 0.1
    state_mean: list[float] | None = None
    state_std: list[float] | None = None
    return_scale: float = 1.0
    reward_scale: float = 1.0
    action_low: list[float] | None = None
    action_high: list[float] | None = None
    family: str = ""
    task_set: str = ""

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.state_mean = list(self.state_mean) if self.state_mean is not None else [0.0] * self.state_dim
        self.state_std = list(self.state_std) if self.state_std is not None else [1.0] * self.state_dim
        self.action_low = list(self.action_low) if self.action_low is not None else [-1.0] * self.act_dim
        self.action_high = list(self.action_high) if self.action_high is not None else [1.0] * self.act_dim

    @classmethod
    def from_dataset(cls, dataset, **kwargs) -> PromptDTConfig:
        """Widths, normalization stats, action box and family from a ``seqmeta.TrajectoryDataset``."""
        meta, stats = dataset.meta, dataset.stats
        values = dict(
            state_dim=meta.observation_dim,
            act_dim=meta.action_dim,
            state_mean=stats["observation_mean"],
            state_std=stats["observation_std"],
            return_scale=stats["return_scale"],
            reward_scale=stats["reward_std"] if stats["reward_std"] > 1e-6 else 1.0,
            action_low=meta.action_low,
            action_high=meta.action_high,
            max_timestep=max(meta.horizon, 1),
            family=meta.family,
            task_set=meta.task_set,
        )
        values.update(kwargs)
        return cls(**values)

    def check_fits(self, dataset) -> None:
        """Refuse a dataset whose observation or action width is not the model's."""
        meta = dataset.meta
        if (self.state_dim, self.act_dim) != (meta.observation_dim, meta.action_dim):
            raise ConfigError(
                f"the model takes observations of width {self.state_dim} and actions of width {self.act_dim}; "
                f"{dataset.path} has {meta.observation_dim} and {meta.action_dim} ({meta.family}): "
                f"use a model trained on that family"
            )

    def check_shapes(self) -> None:
        for name, width in (
            ("state_mean", self.state_dim),
            ("state_std", self.state_dim),
            ("action_low", self.act_dim),
            ("action_high", self.act_dim),
        ):
            if len(getattr(self, name)) != width:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries; the config says {width}")
        for name in (
            "state_dim",
            "act_dim",
            "hidden_size",
            "num_layers",
            "num_heads",
            "context_length",
            "max_timestep",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} is {getattr(self, name)}; it must be at least 1")
        for name in ("prompt_length", "num_prompt_segments"):
            if self.use_prompt and int(getattr(self, name)) < 1:
                raise ValueError(f"{name} is {getattr(self, name)}; a prompted model needs at least 1")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        values = {name: np.asarray(getattr(self, name), np.float64) for name in NORMALIZATION_VALUES}
        for name, value in values.items():
            if not np.isfinite(value).all():
                raise ValueError(f"{name} holds NaN or inf: {getattr(self, name)}")
        for name in ("state_std", "return_scale", "reward_scale"):
            if (values[name] <= 0).any():
                raise ValueError(f"{name} must be positive (it divides the inputs), got {getattr(self, name)}")
        if (values["action_low"] >= values["action_high"]).any():
            raise ValueError(
                f"action_low {self.action_low} must be below action_high {self.action_high} in every dimension"
            )

    def make_backbone_config(self) -> GPT2Config:
        """The stock GPT-2 that runs the token sequence."""
        return GPT2Config(
            n_embd=self.hidden_size,
            n_layer=self.num_layers,
            n_head=self.num_heads,
            n_inner=4 * self.hidden_size,
            n_positions=1,  # positions are all 0: the timestep embedding carries position
            vocab_size=1,
            activation_function="relu",
            resid_pdrop=self.dropout,
            embd_pdrop=self.dropout,
            attn_pdrop=self.dropout,
            bos_token_id=None,
            eos_token_id=None,
            attn_implementation=self._attn_implementation,
        )


__all__ = ["PromptDTConfig"]
