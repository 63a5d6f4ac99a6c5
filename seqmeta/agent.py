"""A batched policy over N envs, each with its own prompt and target return; numpy in, numpy out.

    agent = seqmeta.Agent(model, num_envs=16, prompts=prompts, target_returns="model")
    agent.reset()
    action = agent.act(observation)                # first step
    action = agent.act(observation, reward)        # every later step: the reward of the last action

``prompts``: a dict of (N, P, ...) arrays in the model's prompt shape (``seqmeta.prompts_from_episodes``
makes them from episodes), or ``None``: no prompt (an all-masked prompt for a prompted model). A row
whose ``attention_mask`` is all False acts with no prompt; the evaluator uses that to run "no prompt"
settings in the same batch as prompted ones.

``target_returns``: the return each env aims for, a number or (N,) array, or a rule:

- ``"model"``: the model's own value estimate V(s_0) at each env's first observation, with its prompt
  and the return hidden;
- ``"demo"``: the best return among the prompt's episodes (prompts from ``prompts_from_episodes``
  carry it as ``demo_return``).

Streaming: the prompt's keys/values are computed once per episode (``reset``); each ``act`` writes
one step (three tokens) into a fixed ring of K step slots over the step that left the band, which
is exact because the model's history attention is a K-step band (see ``modeling_prompt_dt``).
``use_cache=False`` instead recomputes the full forward pass over the prompt and the whole episode
every step: the reference the cached path is tested against.

The agent is a policy of ``seqmeta.run_episodes``: all envs start their episodes together
(``start_episodes`` with every env), so each env runs one episode per rollout.
"""

from __future__ import annotations

import numpy as np
import torch

from seqmeta.errors import ConfigError, EnvMismatchError
from seqmeta.models.contract import SequenceModel
from seqmeta.prompts import PROMPT_KEYS, empty_prompt

TARGET_RULES = ("model", "demo")
# Target returns (and demo returns, ``seqmeta.check_env``) beyond this many times the largest |return| of the
# training data are outside anything the model has seen: its return embedding would extrapolate without bound.
RETURN_SCALE_LIMIT = 10.0


class Agent:
    def __init__(
        self,
        model: SequenceModel,
        num_envs: int,
        prompts: dict[str, np.ndarray] | None = None,
        target_returns: float | np.ndarray | str = 0.0,
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
        self._check_target(target_returns)
        self._started = False

    # ---- validation ---------------------------------------------------------------------------

    def _check_target(self, target) -> None:
        if isinstance(target, str):
            if target not in TARGET_RULES:
                raise ConfigError(f"target_returns must be a number, an array or one of {TARGET_RULES}, got {target!r}")
            return
        value = np.asarray(target, dtype=np.float64)
        if value.ndim > 1 or (value.ndim == 1 and len(value) != self.num_envs):
            raise ConfigError(f"target_returns has shape {value.shape}; give one number or {self.num_envs} numbers")
        if not np.isfinite(value).all():
            raise ConfigError("target_returns holds NaN or inf; give finite returns to aim for")
        limit = RETURN_SCALE_LIMIT * float(self.config.return_scale)
        if np.abs(value).max(initial=0.0) > limit:
            raise ConfigError(
                f"a target return of {float(value.flat[np.abs(value).argmax()]):.4g} is over {RETURN_SCALE_LIMIT:g}x "
                f"the largest |return| the model was trained on ({self.config.return_scale:.4g}): aim within "
                f"+-{limit:.4g}, or use the rules 'model' or 'demo'"
            )

    def _prompt_tensors(self, prompts: dict[str, np.ndarray] | None) -> dict[str, torch.Tensor] | None:
        cfg = self.config
        if not cfg.use_prompt:
            if prompts is not None and np.asarray(prompts.get("attention_mask", False)).any():
                raise ConfigError("this model takes no prompt (config.use_prompt=False): act with prompts=None")
            return None
        if prompts is None:
            prompts = empty_prompt(cfg, self.num_envs)
        missing = [k for k in PROMPT_KEYS if k not in prompts]
        if missing:
            raise ValueError(
                f"prompts lack {missing}; a prompt needs {PROMPT_KEYS} (seqmeta.prompts_from_episodes makes them)"
            )
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
        for key in PROMPT_KEYS:
            value = np.asarray(prompts[key])
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
            self._check_target(target_returns)
            self.target_returns = target_returns
        n, cfg = self.num_envs, self.config
        self._prompt = self._prompt_tensors(self.prompts)
        self._rtg = None  # resolved at the first observation (a rule may need it)
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

    restarts_per_env = False  # the rollout engine runs one episode per env with this policy

    def start_episodes(self, slots: np.ndarray, observations: np.ndarray) -> None:
        """The rollout engine's call: envs in ``slots`` reset. All of them: a new episode everywhere;
        some: those envs' episodes are over and the batch runs on (their actions are not recorded)."""
        if len(slots) == self.num_envs:
            self.reset()

    def resolve_targets(self, observation: np.ndarray) -> np.ndarray:
        """The (N,) target returns for episodes whose first observations are ``observation``."""
        target = self.target_returns
        if isinstance(target, str) and target == "model":
            obs = torch.as_tensor(np.asarray(observation), dtype=torch.float32, device=self.device)
            values = self.model.value_at_start(obs, self._prompt if self._prompt is not None else None)
            return values.cpu().numpy().astype(np.float64)
        if isinstance(target, str):  # demo
            if self.prompts is None or "demo_return" not in self.prompts:
                raise ConfigError(
                    "target_returns='demo' needs prompts that carry demo_return (seqmeta.prompts_from_episodes "
                    "makes them); or give a number"
                )
            return np.asarray(self.prompts["demo_return"], np.float64)
        return np.broadcast_to(np.asarray(target, np.float64), (self.num_envs,)).copy()

    @torch.no_grad()
    def act(self, observation: np.ndarray, reward: np.ndarray | None = None) -> np.ndarray:
        """Actions (num_envs, act_dim) for the current observations.

        ``reward`` is the reward each env returned for the previous action: required from the
        second step of an episode on, and it lowers each env's return-to-go. ``targets`` holds the
        episode's (N,) target returns after the first step.
        """
        if not self._started:
            self.reset()
        obs = self._observation(observation)
        if self._t >= self.config.max_timestep:
            raise EnvMismatchError(
                f"step {self._t} of an episode is past the model's trained horizon of {self.config.max_timestep} "
                "steps (its timestep embedding has no later steps): end episodes by then (max_steps)"
            )
        if self._rtg is None:
            self.targets = self.resolve_targets(observation)
            self._rtg = torch.as_tensor(self.targets.astype(np.float32), device=self.device)
        if self._t > 0:
            if reward is None:
                raise ValueError("act() needs the reward of the previous action from the second step on")
            r = np.asarray(reward, dtype=np.float32).reshape(-1)
            if r.shape != (self.num_envs,):
                raise ValueError(f"reward must be {self.num_envs} numbers, one per env, got shape {r.shape}")
            if not np.isfinite(r).all():
                raise ValueError(f"reward holds NaN or inf (env {int(np.flatnonzero(~np.isfinite(r))[0])})")
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
