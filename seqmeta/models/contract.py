"""What any seqmeta model provides: the contract the agent, the trainer, fine-tuning and the reward
labeler are written against. A second architecture lives in its own folder under ``models/`` and
implements this; nothing outside ``models/`` names a concrete model.

A seqmeta model is a ``transformers.PreTrainedModel`` (save/load, Auto classes, safetensors) whose
config has the fields of ``SequenceModelConfig``, and which provides:

- ``forward(observation, action, reward, return_to_go, timestep, attention_mask=None, prev_action=None,
  prev_reward=None, prompt=None, hide_return=None, action_weight=None, return_loss=False)``: history arrays
  (B, T, ...) as ``seqmeta.data.samplers.WindowSampler`` cuts them, prompt arrays (B, P, ...) as
  ``seqmeta.prompts`` cuts them. Returns ``action_preds`` (B, T, A), ``reward_preds`` (B, T): r_t
  predicted from (s_t, a_t) and the history before, ``value_preds`` (B, T): V(s_t) (meaningful where
  ``hide_return``), and with ``return_loss`` the scalar ``loss`` the trainer minimizes (plus
  ``action_loss``, ``reward_loss``, ``value_loss`` for logging).
- streaming: ``start_stream(prompt, batch)`` -> state, ``stream_step(state, observation, prev_action,
  prev_reward, return_to_go)`` -> actions (B, A); the streamed actions equal ``forward``'s.
- ``value_at_start(observation, prompt)`` -> (B,) the value estimate at an episode's first state.
- ``reward_of_last_step(observation, action, reward, timestep, prev_action, prev_reward, prompt)`` -> (B,)
  r_hat(s_t, a_t) of the last of T history steps, returns hidden (what ``RewardLabeler`` asks).
- ``lora_target_modules``: the module names LoRA adapters attach to.
- buffers ``state_mean`` (its device is the model's).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


class SequenceModelConfig(Protocol):
    state_dim: int
    act_dim: int
    context_length: int  # K: history steps a token attends to
    prompt_length: int  # K*: steps per prompt segment
    num_prompt_segments: int  # J
    max_timestep: int  # episodes longer than this are beyond what the model was trained on
    use_prompt: bool
    use_return: bool
    return_scale: float
    reward_scale: float
    family: str
    task_set: str


@runtime_checkable
class SequenceModel(Protocol):
    config: Any
    state_mean: torch.Tensor
    lora_target_modules: tuple[str, ...]

    def __call__(self, **inputs: Any) -> Any: ...

    def start_stream(self, prompt: dict[str, torch.Tensor] | None, batch: int) -> Any: ...

    def stream_step(
        self,
        state: Any,
        observation: torch.Tensor,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        return_to_go: torch.Tensor,
    ) -> torch.Tensor: ...

    def value_at_start(self, observation: torch.Tensor, prompt: dict[str, torch.Tensor] | None) -> torch.Tensor: ...

    def reward_of_last_step(self, **history: Any) -> torch.Tensor: ...

    def eval(self) -> Any: ...
