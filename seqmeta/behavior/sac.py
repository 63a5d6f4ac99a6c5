"""Goal-conditioned soft actor-critic: one policy for a whole task family.

Papers train one SAC per task (25-50 CPU core-hours per family). seqmeta trains one SAC per family
instead, with the task's goal features appended to the observation while acting (never stored in
datasets); its snapshots along training are the family's skill levels. See
``python -m seqmeta.behavior`` (``seqmeta/behavior/__main__.py``) for the recipe and
``seqmeta.behavior.policies`` for how the shipped actors are used.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def mlp(in_dim: int, out_dim: int, hidden: int, depth: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(in_dim, hidden), nn.ReLU()]
        in_dim = hidden
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """tanh-squashed Gaussian policy over [-1, 1]^act_dim given (observation, goal features)."""

    def __init__(self, obs_dim: int, goal_dim: int, act_dim: int, hidden: int = 256):
        super().__init__()
        self.obs_dim, self.goal_dim, self.act_dim, self.hidden = obs_dim, goal_dim, act_dim, hidden
        self.net = mlp(obs_dim + goal_dim, 2 * act_dim, hidden)

    def forward(
        self, obs_goal: torch.Tensor, deterministic: bool = False, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (action in [-1, 1], log-probability); the log-probability is 0 when deterministic.

        ``noise`` (standard normal, shaped like the action) may be given, so a caller with its own
        seeded generator gets reproducible samples.
        """
        mean, log_std = self.net(obs_goal).chunk(2, dim=-1)
        if deterministic:
            return torch.tanh(mean), torch.zeros(mean.shape[:-1], device=mean.device)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        noise = torch.randn_like(mean) if noise is None else noise
        pre_tanh = mean + noise * log_std.exp()
        action = torch.tanh(pre_tanh)
        # Gaussian log-density, then the tanh change of variables (numerically stable form).
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)
        log_prob = log_prob - (2 * (np.log(2) - pre_tanh - F.softplus(-2 * pre_tanh))).sum(-1)
        return action, log_prob


class DoubleQ(nn.Module):
    def __init__(self, in_dim: int, act_dim: int, hidden: int = 256):
        super().__init__()
        self.q1 = mlp(in_dim + act_dim, 1, hidden)
        self.q2 = mlp(in_dim + act_dim, 1, hidden)

    def forward(self, obs_goal: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs_goal, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


class ReplayBuffer:
    """Fixed-capacity ring buffer of (obs+goal, action, reward, next obs+goal, terminal)."""

    def __init__(self, in_dim: int, act_dim: int, capacity: int):
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.arrays = {
            "x": np.zeros((capacity, in_dim), np.float32),
            "action": np.zeros((capacity, act_dim), np.float32),
            "reward": np.zeros(capacity, np.float32),
            "next_x": np.zeros((capacity, in_dim), np.float32),
            "terminal": np.zeros(capacity, np.float32),
        }

    def add(self, x, action, reward, next_x, terminal) -> None:
        for key, value in zip(self.arrays, (x, action, reward, next_x, terminal), strict=True):
            self.arrays[key][self.pos] = value
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.size, size=batch_size)
        return {k: torch.from_numpy(v[idx]) for k, v in self.arrays.items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {k: v[: self.size] for k, v in self.arrays.items()}
        state["cursor"] = np.array([self.pos, self.size], np.int64)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        pos, size = (int(v) for v in state["cursor"])
        if size > self.capacity:
            raise ValueError(f"a replay buffer of {size} transitions does not fit a capacity of {self.capacity}")
        # Stored oldest-first from the cursor on, so a resumed run may also grow the buffer.
        order = np.roll(np.arange(size), -pos)
        for k, v in self.arrays.items():
            v[:size] = state[k][order]
        self.size = size
        self.pos = size % self.capacity


@dataclass
class SACHyperparameters:
    hidden: int = 256
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256


class SAC(nn.Module):
    """Actor, twin critics with target copies, and a learned temperature (target entropy -|A|)."""

    def __init__(self, obs_dim: int, goal_dim: int, act_dim: int, hp: SACHyperparameters):
        super().__init__()
        self.hp = hp
        in_dim = obs_dim + goal_dim
        self.actor = Actor(obs_dim, goal_dim, act_dim, hp.hidden)
        self.critic = DoubleQ(in_dim, act_dim, hp.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.zeros(()))
        self.target_entropy = -float(act_dim)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=hp.lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=hp.lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=hp.lr)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_action, next_log_prob = self.actor(batch["next_x"])
            q1_t, q2_t = self.critic_target(batch["next_x"], next_action)
            target_v = torch.min(q1_t, q2_t) - alpha * next_log_prob
            target_q = batch["reward"] + self.hp.gamma * (1.0 - batch["terminal"]) * target_v
        q1, q2 = self.critic(batch["x"], batch["action"])
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        action, log_prob = self.actor(batch["x"])
        self.critic.requires_grad_(False)  # the actor step must not touch the critics' grads
        q1_pi, q2_pi = self.critic(batch["x"], action)
        self.critic.requires_grad_(True)
        actor_loss = (alpha * log_prob - torch.min(q1_pi, q2_pi)).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            for p, p_t in zip(self.critic.parameters(), self.critic_target.parameters(), strict=True):
                p_t.lerp_(p, self.hp.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "alpha": alpha.item()}

    def optimizer_state(self) -> dict:
        return {
            "actor": self.actor_opt.state_dict(),
            "critic": self.critic_opt.state_dict(),
            "alpha": self.alpha_opt.state_dict(),
        }

    def load_optimizer_state(self, state: dict) -> None:
        self.actor_opt.load_state_dict(state["actor"])
        self.critic_opt.load_state_dict(state["critic"])
        self.alpha_opt.load_state_dict(state["alpha"])
