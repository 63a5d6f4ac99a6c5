"""The rollout engine: every episode seqmeta runs (collection, evaluation, own-exploration rounds,
self-supervision, training-time evaluation, a user's own env) goes through ``run_episodes``.

    out = run_episodes(env_fns, policy, max_steps=200, seed=0)        # one episode per env
    out.episodes          # Episodes, in (env, episode) order, rewards as the policy received them
    out.returns           # (E,) the environment's returns
    out.success           # (E,) bool where the env reports info["success"], else None

A *policy* acts for all envs of a vector env at once:

- ``start_episodes(slots, observations)``: these envs reset and start an episode (all of them at
  first; later, each env whose episode ended, also one past its quota whose episodes are no longer
  recorded); ``restarts_per_env = False`` on a policy that can only start all envs together (it then
  runs one episode per env);
- ``act(observations, rewards)``: (N, act_dim) actions; ``rewards`` is what each env returned for
  the previous action (``None`` on the first step; after a restart the engine passes 0 for that env).

seqmeta's ``Agent`` (a prompted model) and its behavior policies are such policies. Envs given as a
family's ``env_fns`` run on the family's batched envs when it has them (``TaskFamily.vector_env``: the
MuJoCo locomotion families, ``seqmeta.tasks.vector``, step for step the gymnasium envs), else in a
``SyncVectorEnv``.
``reward_fn(observations, actions)``, when given, replaces the rewards the policy receives (the
self-supervised phase feeds its reward labels this way); the environment's rewards are still
recorded in ``env_rewards``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from tqdm.auto import tqdm

from seqmeta.data.episodes import Episodes
from seqmeta.errors import RolloutError
from seqmeta.tasks.family import TaskEnvs

EnvFactory = Callable[[], gym.Env]


class Policy(Protocol):
    """``act`` returns the (N, act_dim) actions to take, or a pair ``(taken, recorded)`` when the episodes
    should store other actions than the ones the envs were stepped with (a behavior that perturbs its own
    actions and records the ones it meant, as in DART)."""

    def start_episodes(self, slots: np.ndarray, observations: np.ndarray) -> None: ...

    def act(
        self, observations: np.ndarray, rewards: np.ndarray | None
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...


@dataclass
class Rollouts:
    """What ``run_episodes`` returns: the episodes and what the environment said about them.

    Attributes:
        episodes: ``Episodes`` (task_index = the env slot unless ``task_index`` was given); rewards
            as the policy received them.
        slot: (E,) the env each episode ran in; episodes are ordered by (slot, episode).
        env_rewards: (steps,) the environment's rewards, aligned with ``episodes.rewards``.
        returns: (E,) undiscounted returns of the environment's rewards (summed step by step).
        info: per-step numeric values the env reported in ``info`` (e.g. ``success``, ``x_velocity``),
            each (steps,) aligned with the episodes' steps.
    """

    episodes: Episodes
    slot: np.ndarray
    env_rewards: np.ndarray
    returns: np.ndarray
    info: dict[str, np.ndarray]
    targets: np.ndarray | None = None  # the target returns an agent aimed for, per env

    @property
    def lengths(self) -> np.ndarray:
        return self.episodes.lengths

    @property
    def success(self) -> np.ndarray | None:
        """(E,) whether ``info["success"]`` was true at any step of each episode; None if never reported."""
        if self.episodes.success is None:
            return None
        return np.maximum.reduceat(self.episodes.success, self.episodes.starts)

    @classmethod
    def concatenate(cls, parts: Sequence[Rollouts], num_envs: Sequence[int]) -> Rollouts:
        """One ``Rollouts`` of runs on consecutive groups of envs (``num_envs[i]`` envs in run i), slots
        numbered as if they had been one run."""
        offsets = np.cumsum([0, *num_envs[:-1]])
        keys = set.intersection(*(set(p.info) for p in parts))
        return cls(
            episodes=Episodes.concatenate([p.episodes for p in parts]),
            slot=np.concatenate([p.slot + o for p, o in zip(parts, offsets, strict=True)]),
            env_rewards=np.concatenate([p.env_rewards for p in parts]),
            returns=np.concatenate([p.returns for p in parts]),
            info={k: np.concatenate([p.info[k] for p in parts]) for k in sorted(keys)},
            targets=None if any(p.targets is None for p in parts) else np.concatenate([p.targets for p in parts]),
        )

    def episode_arrays(self) -> list[dict[str, np.ndarray]]:
        """Each episode as a dict of arrays (observations, actions, rewards, env_rewards)."""
        out = []
        for start, n in zip(self.episodes.starts, self.episodes.lengths, strict=True):
            s = slice(int(start), int(start + n))
            out.append(
                {
                    "observations": self.episodes.observations[s],
                    "actions": self.episodes.actions[s],
                    "rewards": self.episodes.rewards[s],
                    "env_rewards": self.env_rewards[s],
                }
            )
        return out


def make_vector_env(env_fns: Sequence[EnvFactory] | VectorEnv, batched: bool = True) -> VectorEnv:
    """A vector env (episodes reset in the step they end) from env factories, or the given one: the
    family's batched envs for a family's tasks (``TaskFamily.env_fns``) that has them (``batched``), else a
    ``SyncVectorEnv``."""
    if isinstance(env_fns, VectorEnv):
        return env_fns
    if batched and isinstance(env_fns, TaskEnvs):
        venv = env_fns.batched()
        if venv is not None:
            return venv
    if not env_fns:
        raise RolloutError("no envs were given: pass one env factory (a function that makes an env) per env")
    bad = [f for f in env_fns if not callable(f)]
    if bad:
        raise RolloutError(
            f"envs must be factories (functions that return a gymnasium env), got {type(bad[0]).__name__}; "
            "wrap each env as `lambda: MyEnv(...)` or `lambda: gymnasium.make(env_id, **kwargs)`"
        )
    return SyncVectorEnv(list(env_fns), autoreset_mode=AutoresetMode.SAME_STEP)


def run_episodes(
    envs: Sequence[EnvFactory] | VectorEnv,
    policy: Policy,
    max_steps: int,
    seed: int | None = 0,
    episodes_per_env: int | np.ndarray = 1,
    reward_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    task_index: np.ndarray | None = None,
    quality: str | Sequence[str] = "rollout",
    progress: bool | str = False,
    frames: Callable[[int, VectorEnv], None] | None = None,
) -> Rollouts:
    """Run ``episodes_per_env`` episodes (a number, or one per env) in each env of ``envs``.

    ``envs`` is a list of env factories (stepped as one ``SyncVectorEnv``) or a gymnasium vector env
    (closed by the caller). Env i is reset with seed ``seed + i``. An episode ends when the env
    terminates or truncates it, or after ``max_steps`` steps (then it is recorded as truncated;
    with several episodes per env the env itself must end them, e.g. with ``TimeLimit``).
    ``frames(step, envs)`` is called after every reset and step (e.g. to render a video).
    """
    owned = not isinstance(envs, VectorEnv)
    venv = make_vector_env(envs)
    try:
        n = venv.num_envs
        quota = np.broadcast_to(np.asarray(episodes_per_env, dtype=np.int64), (n,)).copy()
        if (quota < 1).any():
            raise RolloutError(f"episodes_per_env must be >= 1 for every env, got {episodes_per_env}")
        if max_steps < 1:
            raise RolloutError(f"max_steps must be >= 1, got {max_steps}")
        mode = venv.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if quota.max() > 1 and not getattr(policy, "restarts_per_env", True):
            raise RolloutError(
                f"{type(policy).__name__} starts episodes in all its envs together: run one episode per env "
                "(episodes_per_env=1) and a new rollout for the next episodes"
            )
        if quota.max() > 1 and mode != AutoresetMode.SAME_STEP:
            raise RolloutError(
                "several episodes per env need a vector env that resets an env in the step its episode ends: "
                "make it with autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP, or pass env factories"
            )
        return _run(venv, policy, max_steps, seed, quota, reward_fn, task_index, quality, progress, frames)
    finally:
        if owned:
            venv.close()


def _run(venv, policy, max_steps, seed, quota, reward_fn, task_index, quality, progress, frames) -> Rollouts:
    n = venv.num_envs
    obs, _ = venv.reset(seed=seed)
    _check_observations(obs, n)
    if frames is not None:
        frames(0, venv)
    policy.start_episodes(np.arange(n), obs)
    trace = _Trace(n)
    count = np.zeros(n, np.int64)  # finished episodes per env
    step_in_episode = np.zeros(n, np.int64)
    feedback: np.ndarray | None = None
    label = progress if isinstance(progress, str) else "rollout"
    total = int(quota.sum())
    bar = tqdm(total=total, desc=label, unit="ep", disable=not progress, leave=False)
    while (count < quota).any():
        active = count < quota
        acted = policy.act(obs, feedback)
        action, recorded = (np.asarray(a) for a in (acted if isinstance(acted, tuple) else (acted, acted)))
        _check_actions(action, venv, policy)
        next_obs, env_reward, terminated, truncated, info = venv.step(action)
        env_reward = np.asarray(env_reward, np.float64)
        if not np.isfinite(env_reward[active]).all():
            bad = int(np.flatnonzero(active & ~np.isfinite(env_reward))[0])
            raise RolloutError(
                f"env {bad} returned the reward {env_reward[bad]} at step {int(step_in_episode[bad]) + 1} of its "
                "episode; check the env's reward"
            )
        fed = env_reward if reward_fn is None else np.asarray(reward_fn(obs, action), np.float64)
        step_in_episode += 1
        ended = (np.asarray(terminated) | np.asarray(truncated) | (step_in_episode >= max_steps)) & active
        cut = ended & ~(np.asarray(terminated) | np.asarray(truncated))
        if cut.any() and quota[cut].max() > 1:
            raise RolloutError(
                f"an episode ran past max_steps={max_steps} without the env ending it; with several episodes "
                "per env the env must end its episodes: wrap it in gymnasium.wrappers.TimeLimit"
            )
        trace.add(obs, recorded, fed, env_reward, terminated, truncated | cut, _step_info(info, ended), active)
        if frames is not None:
            frames(int(step_in_episode.max()), venv)
        if ended.any():
            trace.close(np.flatnonzero(ended))
            count += ended
            bar.update(int(ended.sum()))
            step_in_episode[ended] = 0
            fed = np.where(ended, 0.0, fed)  # a new episode receives no reward for the last one's action
        if (count >= quota).all():
            break
        if ended.any():  # those envs reset in this step (an env past its quota runs on, unrecorded)
            policy.start_episodes(np.flatnonzero(ended), next_obs)
        obs, feedback = next_obs, fed
        if not np.isfinite(np.asarray(obs, np.float64)).all():
            bad = int(np.flatnonzero(~np.isfinite(np.asarray(obs, np.float64)).all(axis=1))[0])
            raise RolloutError(f"env {bad} returned an observation with NaN or inf; check the env's dynamics")
    bar.close()
    return trace.build(task_index, quality)


def _check_actions(action: np.ndarray, venv: VectorEnv, policy: Policy) -> None:
    """A policy's actions fit the envs' Box: one per env, finite (named here, not deep inside an env)."""
    space = getattr(venv, "single_action_space", None)
    if not isinstance(space, gym.spaces.Box):
        return
    expected = (venv.num_envs, *space.shape)
    if action.shape != expected:
        raise RolloutError(
            f"{type(policy).__name__} returned actions of shape {action.shape}; the envs take {expected} "
            "(one action per env)"
        )
    if np.issubdtype(action.dtype, np.floating) and not np.isfinite(action).all():
        bad = int(np.flatnonzero(~np.isfinite(action.reshape(len(action), -1)).all(axis=1))[0])
        raise RolloutError(f"{type(policy).__name__} returned an action with NaN or inf for env {bad}")


def _check_observations(obs: Any, n: int) -> None:
    obs = np.asarray(obs)
    if obs.ndim != 2 or obs.shape[0] != n:
        raise RolloutError(
            f"the envs return observations of shape {obs.shape}; seqmeta needs flat vector observations "
            "(num_envs, obs_dim): flatten them with gymnasium.wrappers.FlattenObservation"
        )


def _step_info(info: dict[str, Any], ended: np.ndarray) -> dict[str, np.ndarray]:
    """Numeric per-env scalars of a vector step's info; for envs whose episode ended in this step
    (and were reset in it) the values of the final step (``final_info``)."""
    values = _numeric(info)
    final = info.get("final_info")
    if isinstance(final, dict) and ended.any():
        for key, value in _numeric(final).items():
            mask = np.asarray(final.get(f"_{key}", np.ones(len(value), bool)), bool) & ended
            values.setdefault(key, np.zeros(len(value)))
            values[key] = np.where(mask, value, values[key])
    return values


def _numeric(info: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in info.items():
        if key.startswith("_") or key in ("final_info", "final_obs", "final_observation", "episode"):
            continue
        array = np.asarray(value) if isinstance(value, np.ndarray) else None
        if array is not None and array.ndim == 1 and (array.dtype.kind in "biuf"):
            mask = np.asarray(info.get(f"_{key}", np.ones(len(array), bool)), bool)
            out[key] = np.where(mask, array.astype(np.float64), 0.0)
    return out


class _Trace:
    """Steps as (N, ...) arrays per global step; episodes cut out by (env, first step, last step)."""

    def __init__(self, n: int):
        self.n = n
        self.steps: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "act", "fed", "env", "term", "trunc")}
        self.info: dict[str, dict[int, np.ndarray]] = {}
        self.start = np.zeros(n, np.int64)
        self.running = np.zeros(n)  # the env's return so far, summed step by step
        self.returns: list[float] = []
        self.spans: list[tuple[int, int, int, float]] = []  # (slot, first global step, end, return)

    def add(self, obs, action, fed, env_reward, terminated, truncated, info, active) -> None:
        t = len(self.steps["obs"])
        for key, value in (
            ("obs", obs),
            ("act", action),
            ("fed", fed),
            ("env", env_reward),
            ("term", terminated),
            ("trunc", truncated),
        ):
            self.steps[key].append(np.asarray(value))
        self.running += np.where(active, env_reward, 0.0)
        for key, value in info.items():
            self.info.setdefault(key, {})[t] = value
        self.start[~active] = t + 1  # idle envs start nothing

    def close(self, slots: np.ndarray) -> None:
        end = len(self.steps["obs"])
        for i in slots:
            self.spans.append((int(i), int(self.start[i]), end, float(self.running[i])))
            self.start[i], self.running[i] = end, 0.0

    def build(self, task_index, quality) -> Rollouts:
        self.spans.sort(key=lambda s: (s[0], s[1]))
        stacked = {k: np.stack(v) for k, v in self.steps.items()}  # (T, N, ...)
        t_total = len(self.steps["obs"])
        info = {k: np.stack([d.get(t, np.zeros(self.n)) for t in range(t_total)]) for k, d in self.info.items()}

        def cut(array):
            return np.concatenate([array[a:b, i] for i, a, b, _ in self.spans]) if self.spans else array[:0, 0]

        slot = np.array([s[0] for s in self.spans], np.int64)
        lengths = np.array([b - a for _, a, b, _ in self.spans], np.int64)
        truncated = cut(stacked["trunc"]).astype(bool)
        terminated = cut(stacked["term"]).astype(bool)
        last = np.cumsum(lengths) - 1
        truncated[last] |= ~terminated[last]  # an episode cut by max_steps ends truncated
        tasks = slot if task_index is None else np.asarray(task_index, np.int64)[slot]
        steps_info = {k: cut(v) for k, v in info.items()}
        qualities = [quality] * len(slot) if isinstance(quality, str) else [quality[i] for i in slot]
        episodes = Episodes(
            observations=cut(stacked["obs"]).astype(np.float32),
            actions=cut(stacked["act"]).astype(np.float32),
            rewards=cut(stacked["fed"]).astype(np.float32),
            terminated=terminated,
            truncated=truncated,
            lengths=lengths,
            task_index=tasks,
            quality=np.array(qualities, dtype=object),
            success=steps_info["success"] > 0 if "success" in steps_info else None,
        )
        return Rollouts(
            episodes=episodes,
            slot=slot,
            env_rewards=cut(stacked["env"]).astype(np.float64),
            returns=np.array([s[3] for s in self.spans]),
            info=steps_info,
        )
