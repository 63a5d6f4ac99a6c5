"""Your own task: a plain gymnasium env seqmeta does not know, prompted with in-memory demos."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

import seqmeta
from seqmeta.agent import Agent
from seqmeta.errors import EnvMismatchError
from seqmeta.prompts import prompts_from_episodes


class Slide(gym.Env):
    """A 2-d point that slides toward where it is pushed; reward: -|x - goal| summed over axes (L1, not
    seqmeta's L2), success within 0.1 of the goal. No seqmeta family has this reward."""

    def __init__(self, goal=(0.5, -0.3), horizon=15, obs_dim=2, act_high=0.1):
        self.goal = np.asarray(goal, np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-act_high, act_high, (2,), np.float32)
        self.horizon = horizon

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.x = 0, self.np_random.uniform(-0.1, 0.1, 2).astype(np.float32)
        return self._obs(), {}

    def _obs(self):
        return np.resize(self.x, self.observation_space.shape).astype(np.float32)

    def step(self, action):
        self.x = self.x + np.clip(action, -0.1, 0.1).astype(np.float32)
        self.t += 1
        distance = float(np.abs(self.x - self.goal).sum())
        return self._obs(), -distance, False, self.t >= self.horizon, {"success": distance < 0.1}


def expert_demos(n=2, seed=0):
    demos = []
    for k in range(n):
        env = Slide()
        obs, _ = env.reset(seed=100 + seed + k)
        steps = {"observations": [], "actions": [], "rewards": []}
        done = False
        while not done:
            action = np.clip(env.goal - obs, -0.1, 0.1)
            steps["observations"].append(obs)
            steps["actions"].append(action)
            obs, reward, term, trunc, _ = env.step(action)
            steps["rewards"].append(reward)
            done = term or trunc
        demos.append({k: np.asarray(v) for k, v in steps.items()})
    return demos


@pytest.fixture(scope="module")
def model(tiny_trained_model):
    return seqmeta.load_model(tiny_trained_model)


def hand_written_loop(model, demos, episodes, seed, target):
    """The loop a user would write: one env per episode, seeded seed + i, the agent for all of them."""
    envs = [Slide() for _ in range(episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    prompts = prompts_from_episodes(model.config, demos, episodes, seed=seed)
    agent = Agent(model, episodes, prompts=prompts, target_returns=target)
    returns, alive, reward = np.zeros(episodes), np.ones(episodes, bool), None
    for _ in range(15):
        action = agent.act(obs, reward)
        steps = [env.step(a) for env, a in zip(envs, action, strict=True)]
        obs = np.stack([s[0] for s in steps])
        reward = np.array([s[1] for s in steps])
        returns += reward * alive
        alive &= ~np.array([s[2] or s[3] for s in steps])
    return returns


def test_user_env_with_in_memory_demos_equals_a_hand_written_loop(model):
    demos = expert_demos()
    result = seqmeta.evaluate_env(model, Slide, demos=demos, episodes=6, seed=11, max_steps=15)
    expected = hand_written_loop(model, demos, 6, 11, target=float(max(d["rewards"].sum() for d in demos)))
    assert np.array_equal(result.returns, expected)
    assert result.rollouts.lengths.tolist() == [15] * 6 and result.success.shape == (6,)
    assert np.allclose(result.target_returns, max(d["rewards"].sum() for d in demos))
    # the prompt is read: demos with other rewards change what the model does
    other = [dict(d, rewards=d["rewards"] * 0.2) for d in demos]
    changed = seqmeta.evaluate_env(model, Slide, demos=other, episodes=6, seed=11, max_steps=15)
    assert not np.array_equal(changed.returns, expected)


def test_no_prompt_and_value_target(model):
    result = seqmeta.evaluate_env(model, Slide, demos=None, episodes=3, seed=0, target_return="model", max_steps=15)
    episodes = result.rollouts.episodes
    first = torch.as_tensor(episodes.observations[episodes.starts])
    expected = model.value_at_start(first, None).numpy()  # the value head at each episode's first state, no prompt
    np.testing.assert_allclose(result.target_returns, expected, rtol=1e-6)
    assert len(np.unique(np.round(result.target_returns, 6))) == 3  # one estimate per env, from its own start


def test_success_is_any_step_of_the_episode(model):
    from seqmeta.rollout import run_episodes

    class Expert:
        def start_episodes(self, slots, observations):
            pass

        def act(self, observations, rewards):
            return np.clip(np.array([0.5, -0.3]) - observations, -0.1, 0.1)

    out = run_episodes([Slide, lambda: Slide(goal=(5.0, 5.0))], Expert(), max_steps=15, seed=0)
    assert out.success.tolist() == [True, False]
    assert np.allclose(out.returns, [out.env_rewards[:15].sum(), out.env_rewards[15:].sum()])


@pytest.mark.parametrize(
    ("env", "kwargs", "match"),
    [
        (lambda: Slide(obs_dim=3), {}, "width 2"),
        (lambda: Slide(act_high=0.05), {}, "RescaleAction"),
        (lambda: Slide(horizon=40), {"max_steps": 40}, "trained horizon"),
        (Slide, {"demos": [dict(d, rewards=d["rewards"] * 1e4) for d in expert_demos()]}, "rescale the env's rewards"),
    ],
)
@pytest.mark.reliability("bad models", "clear error, nothing written")
def test_an_env_that_does_not_fit_is_refused_before_it_runs(model, env, kwargs, match):
    with pytest.raises(EnvMismatchError, match=match):
        seqmeta.evaluate_env(model, env, episodes=2, **({"max_steps": 15} | kwargs))


class _Declares2Returns3(Slide):
    def _obs(self):
        return np.zeros(3, np.float32)  # the space says (2,)


class _OldReset(Slide):
    def reset(self, seed=None, options=None):
        return super().reset(seed=seed)[0]  # gym < 0.26: the observation alone


class _FourTuple(Slide):
    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated or truncated, info  # gym < 0.26: one done flag


class _RewardAt(Slide):
    def __init__(self, reward, at=1):
        super().__init__()
        self.bad, self.at = reward, at

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, self.bad if self.t == self.at else reward, terminated, truncated, info


@pytest.mark.parametrize(
    ("env", "match"),
    [
        (_Declares2Returns3, r"env.reset\(\) returned an observation of shape \(3,\), but its observation_space"),
        (_OldReset, r"env.reset\(\) returned ndarray, not \(observation, info\)"),
        (_FourTuple, r"env.step\(\) returned tuple of 4, not \(observation, reward, terminated, truncated, info\)"),
        (lambda: _RewardAt(float("nan")), "env.step\\(\\) returned the reward nan: give one finite number"),
        (lambda: _RewardAt(np.ones(2)), "returned the reward array"),
    ],
)
@pytest.mark.reliability("bad models", "clear error, nothing written")
def test_an_env_off_gymnasiums_api_is_named_before_it_runs(model, env, match):
    """What a vector env would fail on deep inside (numpy's "wrong shape", an AttributeError) is named."""
    with pytest.raises(EnvMismatchError, match=match):
        seqmeta.evaluate_env(model, env, episodes=2, max_steps=15)


@pytest.mark.reliability("bad models", "clear error, nothing written")
def test_the_engine_names_a_policy_whose_actions_do_not_fit(model):
    from seqmeta.errors import RolloutError
    from seqmeta.rollout import run_episodes

    class Policy:
        def __init__(self, action):
            self.action = action

        def start_episodes(self, slots, observations):
            pass

        def act(self, observations, rewards):
            return self.action

    with pytest.raises(RolloutError, match=r"returned actions of shape \(2, 3\); the envs take \(2, 2\)"):
        run_episodes([Slide, Slide], Policy(np.zeros((2, 3))), max_steps=15)
    with pytest.raises(RolloutError, match="returned an action with NaN or inf for env 1"):
        run_episodes([Slide, Slide], Policy(np.array([[0.0, 0.0], [np.nan, 0.0]])), max_steps=15)
    with pytest.raises(seqmeta.errors.ConfigError, match=r"episodes must be a whole number >= 1, got 2\.5"):
        seqmeta.evaluate_env(model, Slide, episodes=2.5, max_steps=15)
    with pytest.raises(seqmeta.errors.ConfigError, match="seed must be a whole number >= 0, got -1"):
        seqmeta.evaluate_env(model, Slide, episodes=2, max_steps=15, seed=-1)


@pytest.mark.reliability("bad models", "clear error, nothing written")
def test_a_reward_that_turns_nan_mid_episode_stops_the_rollout_by_name(model):
    from seqmeta.errors import RolloutError

    with pytest.raises(RolloutError, match="env 0 returned the reward inf at step 4 of its episode"):
        seqmeta.evaluate_env(model, lambda: _RewardAt(float("inf"), at=4), episodes=2, max_steps=15)
    with pytest.raises(seqmeta.errors.ConfigError, match="max_steps must be >= 1, got 0"):
        seqmeta.evaluate_env(model, Slide, episodes=2, max_steps=0)


@pytest.mark.reliability("bad models", "clear error, nothing written")
def test_the_agent_refuses_steps_past_its_horizon(model):
    agent = Agent(model, 1, target_returns=0.0)
    obs = np.zeros((1, 2), np.float32)
    agent.act(obs)
    for _ in range(model.config.max_timestep - 1):
        agent.act(obs, np.zeros(1))
    with pytest.raises(EnvMismatchError, match="trained horizon"):
        agent.act(obs, np.zeros(1))


@pytest.mark.reliability("bad data", "clear error, nothing written")
def test_bad_demos_are_refused(model):
    with pytest.raises(ValueError, match="demos"):
        prompts_from_episodes(model.config, [], 2)
    with pytest.raises(ValueError, match="NaN"):
        prompts_from_episodes(model.config, [dict(expert_demos()[0], rewards=np.full(15, np.nan))], 2)
    with pytest.raises(ValueError, match="3-dimensional"):
        prompts_from_episodes(model.config, [dict(expert_demos()[0], observations=np.zeros((15, 3)))], 2)


def test_a_user_family_registers_and_collects_at_any_parameter(tmp_path):
    from seqmeta.data.collect import collect_episodes

    family = seqmeta.get_family("point-robot")
    episodes = collect_episodes(family, "expert", [{"goal": [3.0, -2.0]}, {"goal": [0.2, 0.2]}], 2, progress=False)
    assert episodes.num_episodes == 4 and episodes.task_index.tolist() == [0, 0, 1, 1]
    last = episodes.observations[episodes.starts[1] + episodes.lengths[1] - 1]
    assert np.linalg.norm(last - [3.0, -2.0]) < np.linalg.norm([3.0, -2.0])  # it heads for the new goal
    if "test/Slide-v0" not in gym.registry:
        gym.register("test/Slide-v0", entry_point=Slide, max_episode_steps=15)
    mine = seqmeta.TaskFamily(
        name="test-slide",
        env_id="test/Slide-v0",
        horizon=15,
        task_sets={"default": seqmeta.TaskSet("default", ({"goal": [0.5, -0.3]}, {"goal": [-0.4, 0.2]}), (1,), "2")},
        default_task_set="default",
        goal_features=lambda p: np.asarray(p["goal"], np.float32),
        sample_params=lambda rng: {"goal": rng.uniform(-1, 1, 2).tolist()},
    )
    seqmeta.register_family(mine, replace=True)
    assert seqmeta.get_family("test-slide") is mine and "test-slide" in seqmeta.list_families()
    with pytest.raises(KeyError, match="exists already"):
        seqmeta.register_family(mine)
    with pytest.raises(KeyError, match="max_envs=0; give the number of its envs"):
        seqmeta.register_family(dataclasses.replace(mine, name="test-slide-0", max_envs=0))
    assert "test-slide-0" not in seqmeta.list_families()


def test_collect_a_task_list_of_your_own(tmp_path):
    goals = ({"goal": [2.0, 2.0]}, {"goal": [-3.0, 1.0]}, {"goal": [0.0, -2.5]})
    mine = seqmeta.TaskSet("far-goals", goals, (2,), "far")
    data = seqmeta.collect_dataset("point-robot", "expert", str(tmp_path / "d"), episodes_per_task=2, task_set=mine)
    again = seqmeta.load_trajectories(tmp_path / "d")
    assert again.task_set == mine and again.task_set.train_indices == (0, 1)
    assert data.meta.num_episodes == 6 and again.reference_returns()["expert"] == [None, None, None]
    card = (tmp_path / "d" / "README.md").read_text()
    assert "far-goals" in card and "-3.0" in card


@pytest.mark.reliability("bad models", "clear error, nothing written")
def test_the_engine_refuses_what_it_cannot_run(model):
    from gymnasium.vector import SyncVectorEnv

    from seqmeta.errors import RolloutError
    from seqmeta.rollout import run_episodes

    with pytest.raises(RolloutError, match="factories"):
        run_episodes([Slide()], Agent(model, 1), max_steps=15)
    with pytest.raises(RolloutError, match="one episode per env"):
        run_episodes([Slide, Slide], Agent(model, 2), max_steps=15, episodes_per_env=2)

    class Still:
        def start_episodes(self, slots, observations):
            pass

        def act(self, observations, rewards):
            return np.zeros((len(observations), 2), np.float32)

    next_step = SyncVectorEnv([Slide, Slide])  # gymnasium's default autoreset: one step late
    with pytest.raises(RolloutError, match="SAME_STEP"):
        run_episodes(next_step, Still(), max_steps=15, episodes_per_env=[1, 3])
    next_step.close()


class _Linear:
    """A deterministic closed-loop policy: actions depend on the observations, so any difference in
    the physics shows up in every later step."""

    def __init__(self, obs_dim, act_dim):
        self.weight = np.random.default_rng(0).standard_normal((obs_dim, act_dim)) * 0.3

    def start_episodes(self, slots, observations):
        pass

    def act(self, observations, rewards):
        return np.tanh(np.asarray(observations) @ self.weight).astype(np.float32)


@pytest.mark.parametrize("name", ["cheetah-vel", "cheetah-dir", "ant-dir", "hopper-params", "walker-params"])
def test_batched_envs_are_the_gymnasium_envs_bit_for_bit(name):
    """The batched envs (seqmeta.tasks.vector) against gymnasium's SyncVectorEnv of the same envs: the same
    observations, actions, rewards, returns and infos, through two episodes per env (the reset in the step an
    episode ends, by the time limit or, for Hopper and Walker2d, by falling; each env's own noise generator;
    the Params families: tasks of their own dynamics, two envs per task)."""
    from seqmeta.rollout import make_vector_env, run_episodes
    from seqmeta.tasks.vector import MujocoVectorEnv

    family = seqmeta.get_family(name)
    params = [family.sample_params(np.random.default_rng(i // 2)) for i in range(6)]
    runs = []
    for batched in (True, False):
        venv = make_vector_env(family.env_fns(params), batched=batched)
        assert isinstance(venv, MujocoVectorEnv) == batched
        policy = _Linear(venv.single_observation_space.shape[0], venv.single_action_space.shape[0])
        runs.append(run_episodes(venv, policy, family.horizon, seed=5, episodes_per_env=2))
        venv.close()
    fast, slow = runs
    for field in ("observations", "actions", "rewards", "lengths", "truncated", "terminated"):
        np.testing.assert_array_equal(getattr(fast.episodes, field), getattr(slow.episodes, field))
    np.testing.assert_array_equal(fast.returns, slow.returns)
    assert fast.info.keys() == slow.info.keys() and "x_velocity" in fast.info
    for key in slow.info:
        np.testing.assert_array_equal(fast.info[key], slow.info[key])
    assert len(fast.returns) == 12 and np.unique(fast.returns).size == 12
    if not name.startswith("cheetah"):  # some episodes end by a fall, before the time limit
        assert fast.episodes.terminated.any() and (fast.episodes.lengths < family.horizon).any()


def test_batched_envs_only_for_the_families_own_envs():
    """A family made from a Cheetah family with an env of its own runs on gymnasium envs; a bad task parameter
    is refused in the batched envs as the gymnasium env refuses it."""
    import dataclasses

    from gymnasium.vector import SyncVectorEnv

    from seqmeta.rollout import make_vector_env
    from seqmeta.tasks.locomotion import CheetahVelEnv

    class Faster(CheetahVelEnv):
        pass

    gym.register("test/FasterCheetah-v0", entry_point=Faster, max_episode_steps=200)
    own = dataclasses.replace(seqmeta.get_family("cheetah-vel"), name="faster", env_id="test/FasterCheetah-v0")
    venv = make_vector_env(own.env_fns([{"goal_velocity": 1.0}] * 2))
    assert isinstance(venv, SyncVectorEnv)
    venv.close()
    bad = seqmeta.get_family("cheetah-dir").env_fns([{"direction": 1.0}, {"direction": 0.5}])
    with pytest.raises(ValueError, match=r"direction must be -1 or \+1, got 0.5"):
        make_vector_env(bad)
    with pytest.raises(ValueError, match=r"direction must be -1 or \+1, got 0.5"):
        make_vector_env(bad, batched=False).reset(seed=0)
