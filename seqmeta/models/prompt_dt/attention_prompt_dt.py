"""Who attends to whom: the training mask, and the fixed-size streaming cache with its step mask.

Training / full forward (``band_mask``): prompt tokens attend causally among themselves; a history
token of step t attends to every prompt token and to the history tokens of steps t-K+1..t, causally.

Streaming (``PromptRingCache``): a fixed-size key/value cache, the prompt then a ring of K step slots.

The model's history attention is a band of K steps (see ``modeling_prompt_dt``), so at step t the
tokens that may be attended are the prompt's and those of steps t-K+1..t: exactly K step slots.
Step t writes its three tokens into slot t mod K, overwriting step t-K, which has just left the
band. Nothing is ever copied or concatenated: the cost of a step is three tokens through the
stack plus one attention read over (prompt + 3K) keys, whatever the episode length.

Keys carry no position (the model feeds position 0 everywhere and embeds the episode timestep
into the tokens), so the slot order inside the buffer does not matter; the mask built by
``step_mask`` says which slots each new token may see.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.cache_utils import Cache, CacheLayerMixin

TOKENS_PER_STEP = 3


class _PromptRingLayer(CacheLayerMixin):
    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.write_at = 0  # first slot the next update writes
        self.return_upto = capacity  # how many slots update() hands to attention

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        batch, heads, _, dim = key_states.shape
        self.keys = key_states.new_zeros(batch, heads, self.capacity, dim)
        self.values = value_states.new_zeros(batch, heads, self.capacity, value_states.shape[-1])
        self.dtype, self.device = key_states.dtype, key_states.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[2]
        self.keys[:, :, self.write_at : self.write_at + n] = key_states
        self.values[:, :, self.write_at : self.write_at + n] = value_states
        return self.keys[:, :, : self.return_upto], self.values[:, :, : self.return_upto]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.return_upto, 0

    def get_seq_length(self) -> int:
        return self.return_upto

    def get_max_length(self) -> int:
        return self.capacity


class PromptRingCache(Cache):
    """Per layer: ``prompt_tokens`` slots, then ``context_length`` step slots of three tokens."""

    def __init__(self, num_layers: int, prompt_tokens: int, context_length: int):
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length
        capacity = prompt_tokens + TOKENS_PER_STEP * context_length
        super().__init__(layers=[_PromptRingLayer(capacity) for _ in range(num_layers)])

    def _point(self, write_at: int, return_upto: int) -> None:
        for layer in self.layers:
            layer.write_at, layer.return_upto = write_at, return_upto

    def expect_prompt(self) -> None:
        """The next forward pass writes the prompt and attends only to it."""
        self._point(0, self.prompt_tokens)

    def expect_step(self, step: int) -> int:
        """The next forward pass writes step ``step``; returns the first slot it writes."""
        slot = self.prompt_tokens + TOKENS_PER_STEP * (step % self.context_length)
        self._point(slot, self.layers[0].capacity)
        return slot


def band_mask(key_valid: torch.Tensor, num_prompt_tokens: int, context_length: int) -> torch.Tensor:
    """(B, 1, N, N) boolean mask over [prompt tokens | history tokens], ``key_valid`` (B, N) marking padding.

    Each token may also see itself, so a padded token's attention row is never empty (an empty row
    would give NaN, which would then leak through the zero-weighted values into real tokens).
    """
    n = key_valid.shape[1]
    idx = torch.arange(n, device=key_valid.device)
    step = (idx - num_prompt_tokens).div(TOKENS_PER_STEP, rounding_mode="floor")
    causal = idx[:, None] >= idx[None, :]
    in_band = (idx[None, :] < num_prompt_tokens) | (step[:, None] - step[None, :] < context_length)
    allowed = (causal & in_band)[None] & key_valid[:, None, :]
    return (allowed | torch.eye(n, dtype=torch.bool, device=key_valid.device))[:, None]


def step_mask(key_valid: torch.Tensor, slot: int) -> torch.Tensor:
    """(B, 1, 3, L) boolean mask for one step's three tokens written at ``slot``.

    ``key_valid`` (B, L) marks the real prompt tokens and the filled step slots, the new step's
    included; among the new step's own tokens attention is causal.
    """
    mask = key_valid[:, None, None, :].expand(-1, 1, TOKENS_PER_STEP, -1).clone()
    own = torch.ones(TOKENS_PER_STEP, TOKENS_PER_STEP, dtype=torch.bool, device=mask.device).tril()
    mask[:, :, :, slot : slot + TOKENS_PER_STEP] = own
    return mask


# From this many (sample, head) pairs on, ``step_attention`` runs its batched products instead of SDPA's one call:
# chosen by timing both on CPU (1 and 2 threads, 65 keys, 1 to 400 samples), SDPA the faster for a few samples.
BATCHED_ATTENTION_FROM = 128


def step_attention(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, scale: float
) -> torch.Tensor:
    """Attention of a step's few query tokens (B, heads, n, D) over the cache (B, heads, L, D); ``mask`` (B, 1, n, L).

    The same arithmetic as ``scaled_dot_product_attention`` with that mask. SDPA's CPU kernels are tiled for
    long query blocks; for many samples of n <= 3 queries this runs as batched products laid out for them:
    scores as keys @ queries (L x n per sample, the mask added as a bias in the same call), softmax over the
    keys, then weights @ values.
    """
    batch, heads, n, dim = query.shape
    if batch * heads < BATCHED_ATTENTION_FROM:
        return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=scale)
    length = keys.shape[2]
    bias = for_attention(mask[:, 0].transpose(1, 2), "eager", query.dtype)  # (B, L, n): 0 or the dtype's min
    if heads > 1:
        bias = bias.repeat_interleave(heads, dim=0)
    flat_query = query.reshape(batch * heads, n, dim).transpose(1, 2)
    scores = torch.baddbmm(bias, keys.reshape(batch * heads, length, dim), flat_query, alpha=scale)  # (B * heads, L, n)
    weights = scores.softmax(dim=1).transpose(1, 2)
    return torch.bmm(weights, values.reshape(batch * heads, length, dim)).view(batch, heads, n, dim)


def for_attention(mask: torch.Tensor, implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """Boolean masks are what SDPA takes; eager attention adds a float mask to its scores."""
    if implementation == "eager":
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    return mask
