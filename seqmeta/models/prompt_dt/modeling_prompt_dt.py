"""A prompt- and return-conditioned decision transformer around a stock GPT-2 backbone.

Tokens. Each step t becomes three tokens, in this order:

    act_t   = embed(a_{t-1})                       the action that led here (zero at t = 0)
    ret_t   = embed(R_t) + embed(r_{t-1})          return-to-go, and the reward just received
    state_t = embed(s_t)                           -> action head predicts a_t, value head V(s_t)

and the act token of step t+1, which holds a_t but not yet r_t, feeds the reward head: r_hat(s_t, a_t).

Value. A sample may have its returns hidden (``hide_return``): a learned "unknown return" embedding
replaces embed(R_t) in every ret token. Trained that way on a fraction of samples (the trainer's
``return_dropout``), the state token predicts V(s_t) = E[R_t | prompt, history, s_t] from the value
head without seeing R_t, and the action head learns the return-free policy too. The value is the
model's own return estimate: fine-tuning weighs actions by exp(advantage / beta) with it.

A prompt (J segments of K* steps of other episodes of the task) comes first, one token per step:
embed(s, a, r, R) of that step. It is only ever attended to, never predicted from, so one token
carries all it has to say, and a long prompt costs a third of what three tokens per step would.
Prompt tokens hold the rewards, so a prompt tells tasks apart by their rewards, not only by returns.

Attention. Prompt tokens attend causally among themselves. A history token of step t attends to
every prompt token and to the history tokens of steps t-K+1..t (a band of K steps, causal). Because
all three tokens of a step see the same steps, an agent can stream: keep the prompt's keys/values
and those of the last K-1 steps in a fixed ring (``attention_prompt_dt.PromptRingCache``), write one
step's three tokens over the step that just left the band. That is exactly the full forward pass over
the whole episode (``forward``), which the tests check. Training on segments longer than K with
this band mask is what makes the streamed model the trained one.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Model, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from seqmeta.models.prompt_dt.attention_prompt_dt import (
    PromptRingCache,
    band_mask,
    for_attention,
    step_attention,
    step_mask,
)
from seqmeta.models.prompt_dt.configuration_prompt_dt import PromptDTConfig

# transformers 5.x renamed GPT-2's ``past_key_values`` argument to ``cache`` (the old name goes in 5.40).
CACHE_ARGUMENT = "cache" if "cache" in inspect.signature(GPT2Model.forward).parameters else "past_key_values"

TOKENS_PER_STEP = 3
ACT, RET, STATE = 0, 1, 2
PROMPT_TOKEN_TYPE = TOKENS_PER_STEP  # token types 0-2: the history slots; 3: a prompt step
NORMALIZATION_BUFFERS = ("state_mean", "state_std", "action_low", "action_high")


@dataclass
class PromptDTOutput(ModelOutput):
    """
    loss: weighted sum of the action and reward losses (when ``return_loss``).
    action_preds: (B, T, act_dim) actions in the env's action box, from each state token.
    reward_preds: (B, T) predicted r_t in env units; the last step has none (0).
    value_preds: (B, T) predicted return-to-go V(s_t) in env units; meaningful where the return is hidden.
    """

    loss: torch.Tensor | None = None
    action_loss: torch.Tensor | None = None
    reward_loss: torch.Tensor | None = None
    value_loss: torch.Tensor | None = None
    action_preds: torch.Tensor | None = None
    reward_preds: torch.Tensor | None = None
    value_preds: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None


def previous_step(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x_{t-1} along dim 1 of (B, T, ...), zero at t = 0 and where step t-1 is padding."""
    shifted = F.pad(x, (0, 0) * (x.dim() - 2) + (1, 0))[:, :-1]
    valid = F.pad(mask, (1, 0))[:, :-1].to(x.dtype)
    return shifted * valid.reshape(*valid.shape, *([1] * (x.dim() - 2)))


class PromptDTPreTrainedModel(PreTrainedModel):
    config_class = PromptDTConfig
    base_model_prefix = "prompt_dt"
    main_input_name = "observation"
    supports_gradient_checkpointing = True
    _no_split_modules = ["GPT2Block"]  # noqa: RUF012  (the transformers convention)
    _supports_sdpa = True
    # Flash kernels take only padding masks and cannot express "prompt + K-step band"; eager and SDPA
    # (fused memory-efficient kernels on GPU) both take the mask this model needs.
    _supports_flash_attn = False
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, PromptDTModel):  # normalization buffers come from the config, not the weights
            for name in NORMALIZATION_BUFFERS:
                init.copy_(getattr(module, name), torch.tensor(getattr(module.config, name), dtype=torch.float32))


class PromptDTModel(PromptDTPreTrainedModel):
    lora_target_modules = ("c_attn", "c_proj", "c_fc")  # GPT-2's attention and MLP projections

    def __init__(self, config: PromptDTConfig):
        super().__init__(config)
        config.check_shapes()
        h = config.hidden_size
        self.embed_state = nn.Linear(config.state_dim, h)
        self.embed_action = nn.Linear(config.act_dim, h)
        self.embed_return = nn.Linear(1, h)
        self.embed_unknown_return = nn.Embedding(1, h)
        self.embed_reward = nn.Linear(1, h)
        self.embed_timestep = nn.Embedding(config.max_timestep, h)
        self.embed_prompt_step = nn.Linear(config.state_dim + config.act_dim + 2, h)  # (s, a, r, R)
        self.embed_token_type = nn.Embedding(TOKENS_PER_STEP + 1, h)
        self.embed_ln = nn.LayerNorm(h)
        self.backbone = GPT2Model(config.make_backbone_config())
        # Tokens arrive as inputs_embeds: the word embedding is never used (frozen, so DDP does not wait
        # for its gradient); the position embedding sees only position 0, a learned constant.
        self.backbone.wte.requires_grad_(False)
        if not config.use_prompt:  # never used: frozen too, or DDP waits for its gradient
            self.embed_prompt_step.requires_grad_(False)
        self.action_head = nn.Linear(h, config.act_dim)
        self.reward_head = nn.Linear(h, 1)
        self.value_head = nn.Linear(h, 1)
        for name in NORMALIZATION_BUFFERS:
            self.register_buffer(name, torch.tensor(getattr(config, name), dtype=torch.float32), persistent=False)
        self.post_init()

    # ---- tokens -------------------------------------------------------------------------------

    def _normalize(self, observation: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half_range = (self.action_high - self.action_low) / 2
        state = (observation - self.state_mean) / self.state_std
        return state, (action - (self.action_low + half_range)) / half_range  # actions into [-1, 1]

    def _add_time_and_type(self, tokens: torch.Tensor, timestep: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        time = self.embed_timestep(timestep.clamp(0, self.config.max_timestep - 1))
        return tokens + (time[:, :, None] if tokens.dim() == 4 else time) + self.embed_token_type(types)

    def embed_steps(
        self,
        observation: torch.Tensor,  # (B, T, S)
        prev_action: torch.Tensor,  # (B, T, A)
        prev_reward: torch.Tensor,  # (B, T)
        return_to_go: torch.Tensor,  # (B, T)
        timestep: torch.Tensor,  # (B, T)
        hide_return: torch.Tensor | None = None,  # (B,) bool
    ) -> torch.Tensor:
        """History token triples for T steps: (B, 3T, H)."""
        cfg = self.config
        state, action = self._normalize(observation, prev_action)
        rtg = return_to_go[..., None] / cfg.return_scale
        if not cfg.use_return:
            rtg = torch.zeros_like(rtg)
        returns = self.embed_return(rtg)
        # Always in the graph (a zero gradient when nothing is hidden), so DDP sees every parameter used.
        hide = torch.zeros(rtg.shape[0], dtype=torch.bool, device=rtg.device) if hide_return is None else hide_return
        unknown = self.embed_unknown_return.weight[0].expand_as(returns)
        returns = torch.where(hide.reshape(-1, 1, 1).bool(), unknown, returns)
        tokens = torch.stack(
            [
                self.embed_action(action),
                returns + self.embed_reward(prev_reward[..., None] / cfg.reward_scale),
                self.embed_state(state),
            ],
            dim=2,
        )  # (B, T, 3, H)
        types = torch.arange(TOKENS_PER_STEP, device=tokens.device)
        return self.embed_ln(self._add_time_and_type(tokens, timestep, types).flatten(1, 2))  # (B, 3T, H)

    def embed_prompt(self, prompt: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt tokens (B, P, H), one per step, and their key mask (B, P); prompt arrays are (B, P, ...)."""
        cfg = self.config
        state, action = self._normalize(prompt["observation"], prompt["action"])
        step = torch.cat(
            [
                state,
                action,
                prompt["reward"][..., None] / cfg.reward_scale,
                prompt["return_to_go"][..., None] / cfg.return_scale,
            ],
            dim=-1,
        )
        types = torch.full(step.shape[:2], PROMPT_TOKEN_TYPE, dtype=torch.long, device=step.device)
        tokens = self._add_time_and_type(self.embed_prompt_step(step), prompt["timestep"], types)
        return self.embed_ln(tokens), prompt["attention_mask"].bool()

    # ---- full forward (training, and the exact reference for the streaming agent) -------------

    def forward(
        self,
        observation: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        return_to_go: torch.Tensor,
        timestep: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        prev_action: torch.Tensor | None = None,
        prev_reward: torch.Tensor | None = None,
        prompt: dict[str, torch.Tensor] | None = None,
        hide_return: torch.Tensor | None = None,
        action_weight: torch.Tensor | None = None,
        return_loss: bool = False,
        **kwargs,
    ) -> PromptDTOutput:
        """History arrays are (B, T, ...) with left padding marked by ``attention_mask`` (B, T).

        ``action`` and ``reward`` are the actions taken and rewards received at each step; they are
        inputs to the *next* step's tokens (``prev_action``/``prev_reward``, given explicitly when a
        window starts mid-episode) and the targets of the loss. At inference the last step's action
        and reward are unknown and may be anything: no prediction depends on them. ``hide_return`` (B,)
        marks samples whose returns-to-go the model must not see; the value loss is computed on them.
        ``action_weight`` (B, T) weighs each step's action loss (advantage-weighted regression).
        """
        cfg = self.config
        self._check_widths(observation, action, "")
        if prompt is not None:
            self._check_widths(prompt["observation"], prompt["action"], "prompt ")
        batch, steps = observation.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones(batch, steps, dtype=torch.bool, device=observation.device)
        if prev_action is None:
            prev_action = previous_step(action, attention_mask.bool())
        if prev_reward is None:
            prev_reward = previous_step(reward, attention_mask.bool())
        if hide_return is None:
            hide_return = torch.zeros(batch, dtype=torch.bool, device=observation.device)
        tokens = self.embed_steps(observation, prev_action, prev_reward, return_to_go, timestep, hide_return)
        key_mask = attention_mask.bool().repeat_interleave(TOKENS_PER_STEP, dim=1)
        num_prompt_tokens = 0
        if cfg.use_prompt and prompt is not None:
            prompt_tokens, prompt_mask = self.embed_prompt(prompt)
            num_prompt_tokens = prompt_tokens.shape[1]
            tokens = torch.cat([prompt_tokens, tokens], dim=1)
            key_mask = torch.cat([prompt_mask, key_mask], dim=1)

        mask = band_mask(key_mask, num_prompt_tokens, cfg.context_length)
        hidden = self.backbone(
            inputs_embeds=tokens,
            attention_mask=for_attention(mask, self.backbone.config._attn_implementation, tokens.dtype),
            position_ids=torch.zeros(batch, tokens.shape[1], dtype=torch.long, device=tokens.device),
            use_cache=False,
        ).last_hidden_state
        hidden = hidden[:, num_prompt_tokens:].reshape(batch, steps, TOKENS_PER_STEP, -1)  # (B, T, 3, H)
        action_preds = self.action_from_hidden(hidden[:, :, STATE])
        reward_preds = self.reward_head(hidden[:, 1:, ACT]).squeeze(-1) * cfg.reward_scale  # r_t from act_{t+1}
        reward_preds = F.pad(reward_preds, (0, 1))
        value_preds = self.value_head(hidden[:, :, STATE]).squeeze(-1) * cfg.return_scale

        out = PromptDTOutput(
            action_preds=action_preds, reward_preds=reward_preds, value_preds=value_preds, last_hidden_state=hidden
        )
        if return_loss:
            valid = attention_mask.bool()
            half_range = (self.action_high - self.action_low) / 2
            action_err = ((action_preds - action) / half_range).pow(2).mean(-1)
            if action_weight is not None:
                action_err = action_err * action_weight
            out.action_loss = action_err[valid].mean()
            reward_valid = valid[:, :-1] & valid[:, 1:]
            reward_err = ((reward_preds[:, :-1] - reward[:, :-1]) / cfg.reward_scale).pow(2)
            out.reward_loss = reward_err[reward_valid].mean() if reward_valid.any() else reward_err.sum() * 0
            # The value head learns only where the return is not an input (else it would copy it).
            blind = hide_return.bool() | (not cfg.use_return)
            value_valid = valid & blind[:, None]
            value_err = ((value_preds - return_to_go) / cfg.return_scale).pow(2)
            out.value_loss = value_err[value_valid].mean() if value_valid.any() else value_err.sum() * 0
            out.loss = (
                cfg.action_loss_weight * out.action_loss
                + cfg.reward_loss_weight * out.reward_loss
                + cfg.value_loss_weight * out.value_loss
            )
        return out

    def _check_widths(self, observation: torch.Tensor, action: torch.Tensor, what: str) -> None:
        cfg = self.config
        if observation.dim() != 3 or observation.shape[-1] != cfg.state_dim:
            raise ValueError(
                f"{what}observation has shape {tuple(observation.shape)}; expected (batch, steps, {cfg.state_dim})"
            )
        if action.shape[:2] != observation.shape[:2] or action.shape[-1] != cfg.act_dim:
            raise ValueError(
                f"{what}action has shape {tuple(action.shape)}; expected {(*observation.shape[:2], cfg.act_dim)}"
            )

    @torch.no_grad()
    def value_at_start(self, observation: torch.Tensor, prompt: dict[str, torch.Tensor] | None) -> torch.Tensor:
        """V(s_0) (B,): the value head at the first state (B, S), with the prompt and the return hidden."""
        n, device = observation.shape[0], observation.device
        out = self(
            observation=observation[:, None],
            action=torch.zeros(n, 1, self.config.act_dim, device=device),
            reward=torch.zeros(n, 1, device=device),
            return_to_go=torch.zeros(n, 1, device=device),
            timestep=torch.zeros(n, 1, dtype=torch.long, device=device),
            prompt=prompt,
            hide_return=torch.ones(n, dtype=torch.bool, device=device),
        )
        return out.value_preds[:, 0]

    @torch.no_grad()
    def reward_of_last_step(
        self,
        observation: torch.Tensor,  # (B, T, S): steps lo..t
        action: torch.Tensor,  # (B, T, A): the actions taken, a_t last
        reward: torch.Tensor,  # (B, T): rewards of steps lo..t-1 (the last entry is ignored)
        timestep: torch.Tensor,  # (B, T)
        prev_action: torch.Tensor,  # (B, T, A)
        prev_reward: torch.Tensor,  # (B, T)
        prompt: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """r_hat(s_t, a_t) (B,) for the last step, returns hidden: what a reward labeler asks.

        In this architecture r_t is read from the act token of step t+1 (which holds a_t), so a
        placeholder step t+1 is appended; nothing of it but a_t reaches the prediction.
        """
        n, steps = observation.shape[:2]
        device = observation.device
        zero_r = torch.zeros(n, 1, device=device)
        out = self(
            observation=torch.cat([observation, torch.zeros_like(observation[:, :1])], 1),
            action=torch.cat([action, torch.zeros_like(action[:, :1])], 1),
            reward=torch.cat([reward, zero_r], 1),
            return_to_go=torch.zeros(n, steps + 1, device=device),
            timestep=torch.cat([timestep, timestep[:, -1:] + 1], 1),
            prev_action=torch.cat([prev_action, action[:, -1:]], 1),
            prev_reward=torch.cat([prev_reward, reward[:, -1:] * 0], 1),
            prompt=prompt,
            hide_return=torch.ones(n, dtype=torch.bool, device=device),
        )
        return out.reward_preds[:, -2]

    def action_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """tanh head mapped onto the action box."""
        unit = torch.tanh(self.action_head(hidden))
        return self.action_low + (unit + 1) * (self.action_high - self.action_low) / 2

    # ---- streaming (used by seqmeta.agent.Agent) -----------------------------------------------

    @torch.no_grad()
    def start_stream(self, prompt: dict[str, torch.Tensor] | None, batch: int) -> StreamState:
        """Compute the prompt's keys/values once for an episode; returns the state ``stream_step`` uses."""
        device = self.state_mean.device
        use_prompt = self.config.use_prompt and prompt is not None
        prompt_tokens = prompt["observation"].shape[1] if use_prompt else 0
        cache = PromptRingCache(self.config.num_layers, prompt_tokens, self.config.context_length)
        key_valid = torch.zeros(batch, cache.layers[0].capacity, dtype=torch.bool, device=device)
        if use_prompt:
            tokens, prompt_mask = self.embed_prompt(prompt)
            key_valid[:, :prompt_tokens] = prompt_mask
            mask = band_mask(prompt_mask, prompt_tokens, self.config.context_length)
            cache.expect_prompt()
            self.backbone(
                inputs_embeds=tokens,
                attention_mask=for_attention(mask, self.backbone.config._attn_implementation, tokens.dtype),
                position_ids=torch.zeros(batch, prompt_tokens, dtype=torch.long, device=device),
                **{CACHE_ARGUMENT: cache},
                use_cache=True,
            )
        weight, bias = self._step_embedding()
        ln, ln_f, head = self.embed_ln, self.backbone.ln_f, self.action_head
        return StreamState(
            cache=cache,
            key_valid=key_valid,
            embed_weight=weight,
            embed_bias=bias,
            embed_norm=(ln.weight, ln.bias, ln.eps),
            timestep_table=self.embed_timestep.weight,
            position=self.backbone.wpe.weight[0],
            blocks=self._block_weights(),
            final_norm=(ln_f.weight, ln_f.bias, ln_f.eps),
            head=(head.weight.T, head.bias, self.action_low, (self.action_high - self.action_low) / 2),
        )

    def _step_embedding(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``embed_steps`` for one step, before the timestep and LayerNorm, as one affine map: the tokens
        (act, ret, state) = [a_{t-1}, R_t, r_{t-1}, s_t] @ weight + bias, (A + 2 + S, 3H) and (3H,), with the
        normalizations, scales and token-type embeddings folded in (returns not hidden, as when acting)."""
        cfg, h = self.config, self.config.hidden_size
        half_range = (self.action_high - self.action_low) / 2
        center = self.action_low + half_range
        weight = torch.zeros(cfg.act_dim + 2 + cfg.state_dim, 3 * h, device=half_range.device)
        w_act = self.embed_action.weight / half_range  # (H, A): acts on the raw action
        weight[: cfg.act_dim, :h] = w_act.T
        if cfg.use_return:
            weight[cfg.act_dim, h : 2 * h] = self.embed_return.weight[:, 0] / cfg.return_scale
        weight[cfg.act_dim + 1, h : 2 * h] = self.embed_reward.weight[:, 0] / cfg.reward_scale
        w_state = self.embed_state.weight / self.state_std
        weight[cfg.act_dim + 2 :, 2 * h :] = w_state.T
        types = self.embed_token_type.weight[:TOKENS_PER_STEP]
        bias = torch.cat(
            [
                self.embed_action.bias - w_act @ center + types[ACT],
                self.embed_return.bias + self.embed_reward.bias + types[RET],
                self.embed_state.bias - w_state @ self.state_mean + types[STATE],
            ]
        )
        return weight, bias

    @torch.no_grad()
    def stream_step(
        self,
        state: StreamState,
        observation: torch.Tensor,  # (B, S)
        prev_action: torch.Tensor,  # (B, A)
        prev_reward: torch.Tensor,  # (B,)
        return_to_go: torch.Tensor,  # (B,)
    ) -> torch.Tensor:
        """Feed one step (three tokens) and return the actions (B, A) for it (dropout off, as in eval mode).

        The same arithmetic as ``forward`` (the streaming tests check it), less the glue a full call has
        (mask building, argument routing, output objects, one module call per op), which at three tokens
        per call costs more than the arithmetic: the embeddings are one matrix product
        (``_step_embedding``) and GPT-2's blocks run from their own weights, their keys/values written
        into the ring cache through the transformers ``Cache`` API.
        """
        batch, h = observation.shape[0], self.config.hidden_size
        step = min(state.step, self.config.max_timestep - 1)
        inputs = torch.cat([prev_action, return_to_go[:, None], prev_reward[:, None], observation], dim=1)
        tokens = torch.addmm(state.embed_bias, inputs, state.embed_weight).view(batch, TOKENS_PER_STEP, h)
        tokens = F.layer_norm(tokens + state.timestep_table[step], (h,), *state.embed_norm)
        slot = state.cache.expect_step(state.step)
        state.key_valid[:, slot : slot + TOKENS_PER_STEP] = True
        hidden = self._blocks_step(state, tokens, step_mask(state.key_valid, slot))  # (B, H): the state token
        state.step += 1
        head_weight, head_bias, low, half_range = state.head
        return low + (torch.tanh(torch.addmm(head_bias, hidden, head_weight)) + 1) * half_range

    def _block_weights(self) -> list[tuple]:
        """Each GPT-2 block's tensors, looked up once per episode (a module attribute lookup per op per step
        costs about as much as the op at three tokens): LayerNorm 1, attention, LayerNorm 2, MLP."""

        def norm(ln: nn.LayerNorm) -> tuple:
            return ln.weight, ln.bias, ln.eps

        return [
            (
                norm(b.ln_1),
                (b.attn.c_attn.weight, b.attn.c_attn.bias, b.attn.scaling, b.attn.c_proj.weight, b.attn.c_proj.bias),
                norm(b.ln_2),
                (b.mlp.c_fc.weight, b.mlp.c_fc.bias, b.mlp.act, b.mlp.c_proj.weight, b.mlp.c_proj.bias),
            )
            for b in self.backbone.h
        ]

    def _blocks_step(self, state: StreamState, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """GPT-2's blocks (pre-LayerNorm attention and MLP, residuals) on one step's (B, 3, H) tokens, from the
        blocks' own weights (``Conv1D`` stores (in, out): x @ W + b); keys/values go through the cache.
        Returns the final hidden state of the state token (B, H), the only one acting reads: the last
        block computes the keys/values of all three tokens (later steps attend to them) and the rest of
        the block for the state token alone."""
        batch, n, width = tokens.shape
        heads, shape, last = self.config.num_heads, (width,), len(state.blocks) - 1
        hidden = (tokens + state.position).reshape(batch * n, width)
        for i, (layer, weights) in enumerate(zip(state.cache.layers, state.blocks, strict=True)):
            norm_1, (qkv_w, qkv_b, scaling, proj_w, proj_b), norm_2, (fc_w, fc_b, act, out_w, out_b) = weights
            qkv = torch.addmm(qkv_b, F.layer_norm(hidden, shape, *norm_1), qkv_w)
            q, k, v = qkv.view(batch, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
            keys, values = layer.update(k, v)
            if i == last:  # from here on only the state token
                q, mask, n = q[:, :, STATE:], mask[:, :, STATE:], 1
                hidden = hidden.view(batch, TOKENS_PER_STEP, width)[:, STATE]
            out = step_attention(q, keys, values, mask, scaling)
            hidden = torch.addmm(hidden, out.transpose(1, 2).reshape(batch * n, width), proj_w).add_(proj_b)
            x = act(torch.addmm(fc_b, F.layer_norm(hidden, shape, *norm_2), fc_w))
            hidden = torch.addmm(hidden, x, out_w).add_(out_b)
        return F.layer_norm(hidden, shape, *state.final_norm)


@dataclass
class StreamState:
    """What a streaming agent keeps between steps: the cache, which of its slots hold real tokens, t."""

    cache: PromptRingCache
    key_valid: torch.Tensor  # (B, prompt tokens + 3K)
    # The tensors a step uses, looked up once (``stream_step``): the token embedding as one affine map
    # (``_step_embedding``), its LayerNorm, the timestep table, GPT-2's position-0 embedding, each block's
    # weights (``_block_weights``), the final LayerNorm, the action head (W^T, b, low, half range).
    embed_weight: torch.Tensor
    embed_bias: torch.Tensor
    embed_norm: tuple
    timestep_table: torch.Tensor
    position: torch.Tensor
    blocks: list[tuple]
    final_norm: tuple
    head: tuple
    step: int = 0


__all__ = ["PromptDTModel", "PromptDTOutput", "PromptDTPreTrainedModel"]
