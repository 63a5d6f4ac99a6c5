"""A batched policy over N envs, each with its own prompt and target return; numpy in, numpy out.

    agent = model.agent(num_envs=16, prompts=prompt, target_returns=0.0)
    agent.reset()
    action = agent.act(observation)                # first step
    action = agent.act(observation, reward)        # every later step: the reward of the last action

Streaming: the prompt's keys/values are computed once per episode (``reset``); each ``act`` writes
one step (three tokens) into a fixed ring of K step slots over the step that left the band, which
is exact because the model's history attention is a K-step band (see ``modeling_prompt_dt``).
``use_cache=False`` instead recomputes the full forward pass over the prompt and the whole episode
every step: the reference the cached path is tested against.

An env whose prompt row is all masked (``attention_mask`` False) acts with no prompt; the evaluator
uses that to run "no prompt" settings in the same batch as prompted ones.

All envs step together: ``reset`` starts a new episode in every env (an env whose episode ended
early keeps being fed until the batch resets; its actions are ignored by the caller).
"""

from __future__ import annotations

import numpy as np
import torch

from seqmeta.models.prompt_dt.modeling_prompt_dt import PromptDTModel

PROMPT_KEYS = ("observation", "action", "reward", "return_to_go", "timestep", "attention_mask")


class Agent:
    def __init__(
        self,
        model: PromptDTModel,
        num_envs: int,
        prompts: dict[str, np.ndarray] | None = None,
        target_returns: float | np.ndarray = 0.0,
        use_cache: bool = True,
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.model = model.eval()
        self.config = model.config
        self.num_envs = num_envs
        self.use_cache = use_cache
        self.device = model.state_mean.device
        self.prompts = prompts
        self.target_returns = target_returns
        self._started = False

    # ---- validation ---------------------------------------------------------------------------

    def _prompt_tensors(self, prompts: dict[str, np.ndarray] | None) -> dict[str, torch.Tensor] | None:
        cfg = self.config
        if not cfg.use_prompt:
            return None
        if prompts is None:
            raise ValueError(
                "this model is prompt-conditioned (config.use_prompt=True) and needs prompts: a dict of "
                f"arrays {PROMPT_KEYS} of shape (num_envs, P, ...), e.g. from seqmeta.data.samplers.PromptSampler"
            )
        missing = [k for k in PROMPT_KEYS if k not in prompts]
        if missing:
            raise ValueError(f"prompts lack {missing}; a prompt needs {PROMPT_KEYS}")
        obs = np.asarray(prompts["observation"])
        if obs.ndim != 3 or obs.shape[0] != self.num_envs or obs.shape[2] != cfg.state_dim:
            raise ValueError(
                f"prompt observations have shape {obs.shape}; expected (num_envs={self.num_envs}, P, "
                f"state_dim={cfg.state_dim})"
            )
        steps = obs.shape[1]
        act = np.asarray(prompts["action"])
        if act.shape != (self.num_envs, steps, cfg.act_dim):
            raise ValueError(f"prompt actions have shape {act.shape}; expected {(self.num_envs, steps, cfg.act_dim)}")
        if steps == 0:
            raise ValueError("the prompts have no prompt steps; give them at least one (an all-masked row: no prompt)")
        tensors = {}
        for key, value in prompts.items():
            value = np.asarray(value)
            if key not in ("timestep", "attention_mask") and not np.isfinite(value).all():
                raise ValueError(f"prompt {key} holds NaN or inf")
            dtype = torch.long if key == "timestep" else torch.bool if key == "attention_mask" else torch.float32
            tensors[key] = torch.as_tensor(value, dtype=dtype, device=self.device)
        return tensors

    def _observation(self, observation: np.ndarray) -> torch.Tensor:
        obs = np.asarray(observation, dtype=np.float32)
        if obs.shape != (self.num_envs, self.config.state_dim):
            raise ValueError(
                f"observation has shape {obs.shape}; expected (num_envs={self.num_envs}, "
                f"state_dim={self.config.state_dim})"
            )
        if not np.isfinite(obs).all():
            raise ValueError("observation holds NaN or inf")
        return torch.from_numpy(obs).to(self.device)

    # ---- episode ------------------------------------------------------------------------------

    def reset(self, prompts: dict[str, np.ndarray] | None = None, target_returns=None) -> None:
        """Start a new episode in every env; new prompts / target returns replace the old ones."""
        if prompts is not None:
            self.prompts = prompts
        if target_returns is not None:
            self.target_returns = target_returns
        n, cfg = self.num_envs, self.config
        target = np.broadcast_to(np.asarray(self.target_returns, dtype=np.float32), (n,))
        self._prompt = self._prompt_tensors(self.prompts)
        self._rtg = torch.as_tensor(target.copy(), device=self.device)
        self._prev_action = torch.zeros(n, cfg.act_dim, device=self.device)
        self._prev_reward = torch.zeros(n, device=self.device)
        self._t = 0
        if self.use_cache:
            self._stream = self.model.start_stream(self._prompt, n)
        else:
            self._history: dict[str, list[torch.Tensor]] = {k: [] for k in ("observation", "rtg", "timestep")}
            self._actions: list[torch.Tensor] = []
            self._rewards: list[torch.Tensor] = []
        self._started = True

    @torch.no_grad()
    def act(self, observation: np.ndarray, reward: np.ndarray | None = None) -> np.ndarray:
        """Actions (num_envs, act_dim) for the current observations.

        ``reward`` is the reward each env returned for the previous action: required from the
        second step of an episode on, and it lowers each env's return-to-go.
        """
        if not self._started:
            self.reset()
        obs = self._observation(observation)
        if self._t > 0:
            if reward is None:
                raise ValueError("act() needs the reward of the previous action from the second step on")
            r = np.asarray(reward, dtype=np.float32).reshape(-1)
            if r.shape != (self.num_envs,) or not np.isfinite(r).all():
                raise ValueError(f"reward must be {self.num_envs} finite numbers, got shape {r.shape}")
            self._prev_reward = torch.from_numpy(r).to(self.device)
            self._rtg = self._rtg - self._prev_reward
        if self.use_cache:
            action = self.model.stream_step(self._stream, obs, self._prev_action, self._prev_reward, self._rtg)
        else:
            timestep = torch.full((self.num_envs,), self._t, dtype=torch.long, device=self.device)
            action = self._recompute(obs, timestep)
        self._prev_action = action
        self._t += 1
        return action.float().cpu().numpy()

    def _recompute(self, obs: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """The reference: one full forward pass over the prompt and the whole episode so far."""
        self._history["observation"].append(obs)
        self._history["rtg"].append(self._rtg)
        self._history["timestep"].append(timestep)
        if self._t > 0:
            self._actions.append(self._prev_action)
            self._rewards.append(self._prev_reward)
        placeholder_a = torch.zeros_like(self._prev_action)  # the action being chosen: not an input
        placeholder_r = torch.zeros_like(self._prev_reward)
        out = self.model(
            observation=torch.stack(self._history["observation"], 1),
            action=torch.stack([*self._actions, placeholder_a], 1),
            reward=torch.stack([*self._rewards, placeholder_r], 1),
            return_to_go=torch.stack(self._history["rtg"], 1),
            timestep=torch.stack(self._history["timestep"], 1),
            prompt=self._prompt,
        )
        return out.action_preds[:, -1]
