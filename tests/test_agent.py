import numpy as np
import pytest
import torch

from seqmeta.agent import Agent

from .test_model import A, S, tiny


def numpy_prompt(n, steps, seed=0, pad=0):
    rng = np.random.default_rng(seed)
    prompt = dict(
        observation=rng.standard_normal((n, steps, S)),
        action=rng.uniform(-2, 1, (n, steps, A)),
        reward=rng.standard_normal((n, steps)),
        return_to_go=rng.standard_normal((n, steps)) * 10,
        timestep=np.tile(np.arange(steps), (n, 1)),
        attention_mask=np.ones((n, steps), bool),
    )
    prompt["attention_mask"][0, :pad] = False  # env 0's prompt is left-padded
    return prompt


def run_both(model, prompt, n, steps, episodes=1, seed=1):
    cached = Agent(model, n, prompts=prompt, target_returns=np.linspace(-5, 10, n))
    recompute = Agent(model, n, prompts=prompt, target_returns=np.linspace(-5, 10, n), use_cache=False)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(episodes):
        cached.reset()
        recompute.reset()
        reward = None
        for _ in range(steps):
            obs = rng.standard_normal((n, S)).astype(np.float32)
            worst = max(worst, float(np.abs(cached.act(obs, reward) - recompute.act(obs, reward)).max()))
            reward = rng.standard_normal(n)
    return worst


def test_cached_and_uncached_agree_over_a_full_200_step_episode():
    # Three envs whose prompts hold 1, 5 and 20 real steps (left-padded to 20); context_length 4,
    # so the band binds from step 4 on and the rolling cache drops a step every step after that.
    prompt = numpy_prompt(3, 20)
    prompt["attention_mask"][0, :19] = False
    prompt["attention_mask"][1, :15] = False
    assert run_both(tiny(), prompt, 3, 200) <= 1e-5


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_reset_starts_a_fresh_cache(attention):
    model = tiny()
    model.set_attn_implementation(attention)
    assert run_both(model, numpy_prompt(2, 5), 2, 30, episodes=3) <= 1e-5


def test_each_env_has_its_own_prompt_and_target():
    model = tiny()
    prompt = numpy_prompt(2, 5)
    prompt = {k: np.stack([v[0], v[0]]) for k, v in prompt.items()}  # same prompt in both envs
    agent = Agent(model, 2, prompts=prompt, target_returns=[3.0, 3.0])
    obs = np.ones((2, S), np.float32)
    a = agent.act(obs)
    assert np.allclose(a[0], a[1])
    agent.reset(target_returns=[3.0, 30.0])
    b = agent.act(obs)
    assert np.allclose(b[0], a[0]) and not np.allclose(b[1], a[1])
    agent.reset(prompts=numpy_prompt(2, 5, seed=7))
    assert not np.allclose(agent.act(obs), b)


@pytest.mark.reliability("bad models", "clear error, nothing written")
def test_agent_refuses_bad_input():
    model = tiny()
    agent = Agent(model, 2, prompts=numpy_prompt(2, 5))
    with pytest.raises(ValueError, match=r"expected \(num_envs=2, state_dim=5\)"):
        agent.act(np.zeros((2, S + 1)))
    with pytest.raises(ValueError, match="NaN"):
        agent.act(np.full((2, S), np.nan))
    agent.act(np.zeros((2, S)))
    with pytest.raises(ValueError, match="reward of the previous action"):
        agent.act(np.zeros((2, S)))
    with pytest.raises(ValueError, match="state_dim=5"):
        Agent(model, 2, prompts={**numpy_prompt(2, 5), "observation": np.zeros((2, 5, 4))}).reset()
    with pytest.raises(ValueError, match="prompt actions"):
        Agent(model, 2, prompts={**numpy_prompt(2, 5), "action": np.zeros((2, 5, A + 1))}).reset()
    with pytest.raises(ValueError, match="target_returns must be"):
        Agent(model, 2, target_returns="best")
    with pytest.raises(ValueError, match="NaN or inf"):
        Agent(model, 2, target_returns=[1.0, np.nan])
    with pytest.raises(ValueError, match="no prompt steps"):
        Agent(model, 2, prompts=numpy_prompt(2, 0)).reset()
    bad = numpy_prompt(2, 5)
    bad["reward"][0, 0] = np.inf
    with pytest.raises(ValueError, match="prompt reward holds NaN or inf"):
        Agent(model, 2, prompts=bad).reset()


def test_prompt_free_models_act_without_prompts():
    agent = Agent(tiny(use_prompt=False), 4, target_returns=1.0)
    assert agent.act(np.zeros((4, S))).shape == (4, A)


def test_an_env_whose_prompt_is_all_masked_runs_without_a_prompt():
    model = tiny()
    prompt = numpy_prompt(2, 5)
    prompt["attention_mask"][1] = False  # env 1: no prompt
    other = {k: v.copy() for k, v in prompt.items()}
    other["observation"][1] += 3.0  # what a masked prompt holds must not matter
    obs = np.random.default_rng(0).standard_normal((2, S))
    a = Agent(model, 2, prompts=prompt).act(obs)
    b = Agent(model, 2, prompts=other).act(obs)
    assert np.allclose(a, b, atol=1e-6) and np.isfinite(a).all()


def test_no_prompt_is_the_all_masked_prompt():
    from seqmeta.prompts import empty_prompt

    model = tiny()
    obs = np.random.default_rng(0).standard_normal((3, S)).astype(np.float32)
    none = Agent(model, 3, prompts=None, target_returns=2.0).act(obs)
    masked = Agent(model, 3, prompts=empty_prompt(model.config, 3), target_returns=2.0).act(obs)
    prompted = Agent(model, 3, prompts=numpy_prompt(3, 5), target_returns=2.0).act(obs)
    assert np.array_equal(none, masked) and not np.allclose(none, prompted)


def test_target_rules_model_and_demo():
    from seqmeta.prompts import prompts_from_episodes

    model = tiny()
    rng = np.random.default_rng(1)
    demos = [
        {"observations": rng.standard_normal((9, S)), "actions": rng.uniform(-1, 1, (9, A)), "rewards": np.full(9, r)}
        for r in (0.5, 2.0)
    ]
    prompts = prompts_from_episodes(model.config, demos, num_envs=4, seed=0)
    obs = rng.standard_normal((4, S)).astype(np.float32)
    demo = Agent(model, 4, prompts=prompts, target_returns="demo")
    demo.act(obs)
    assert np.allclose(demo.targets, 18.0)  # the best demo: 9 steps of reward 2
    by_value = Agent(model, 4, prompts=prompts, target_returns="model")
    by_value.act(obs)
    expected = model.value_at_start(torch.as_tensor(obs), by_value._prompt).numpy()
    assert np.allclose(by_value.targets, expected) and not np.allclose(by_value.targets, 18.0)
    with pytest.raises(ValueError, match="demo_return"):
        Agent(model, 4, target_returns="demo").act(obs)
