"""Meta-World families: the goal stays hidden in stored data, stored expert episodes replay to success,
the scripted experts still solve their tasks on the installed MuJoCo, evaluation reports success rate."""

import numpy as np
import pytest

import seqmeta
from seqmeta.data.collect import collect_dataset, rollout
from seqmeta.evaluation import EvalProtocol, evaluate
from seqmeta.hub import render_model_card
from seqmeta.results import format_table
from seqmeta.tasks.metaworld import GOAL_DIMS

pytest.importorskip("metaworld")


@pytest.fixture(scope="module")
def reach_data(tmp_path_factory):
    """One expert episode on each of two training goals and one held-out goal of ML1 reach."""
    out = tmp_path_factory.mktemp("mw") / "reach"
    return collect_dataset(
        "metaworld-ml1-reach", "expert", str(out), tasks="0,7,50", episodes_per_task=1, progress=False
    )


def test_splits_are_meta_worlds_own_train_and_test_goals():
    family = seqmeta.get_family("metaworld-ml1-push")
    ts = family.task_set()
    assert len(ts) == 100 and ts.test_indices == tuple(range(50, 100)) and ts.train_indices == tuple(range(50))
    vecs = np.array([p["rand_vec"] for p in ts.params])
    assert len(np.unique(vecs, axis=0)) == 100  # 100 distinct goals, none shared by train and test
    assert {p["task_class"] for p in ts.params} == {"push-v3"}
    assert family.horizon == 500


def test_the_shipped_task_lists_are_what_metaworld_draws():
    """The families read seqmeta/tasks/metaworld_tasks.json; metaworld draws the same tasks again."""
    from seqmeta.tasks.families import SEED
    from seqmeta.tasks.metaworld import benchmark_tasks, shipped_tasks

    assert benchmark_tasks("ML1", "reach-v3", SEED) == shipped_tasks("ML1", "reach-v3")
    ts = seqmeta.get_family("metaworld-ml10").task_set()
    classes = [p["task_class"] for p in ts.params]
    assert (
        len(set(classes[:500])) == 10 and len(set(classes[500:])) == 5 and not set(classes[:500]) & set(classes[500:])
    )


def test_stored_observations_hide_the_goal_and_expert_episodes_replay_to_success(reach_data):
    family = reach_data.family
    obs = np.asarray(reach_data.hf["observation"])
    assert obs.shape[1] == 39 and not obs[:, GOAL_DIMS].any()  # the goal's 3 numbers are zeros everywhere
    success = np.asarray(reach_data.hf["success"])
    episodes = reach_data.episodes
    for start, length, task in zip(episodes["start"], episodes["length"], episodes["task_index"], strict=True):
        steps = slice(int(start), int(start + length))
        assert success[steps].any()  # the scripted expert reached the goal
        env = family.make_env(reach_data.task_set.params[task])
        first, _ = env.reset(seed=123)  # the task fixes the start: any seed gives the stored one
        np.testing.assert_array_equal(first, obs[steps][0])
        replayed = []
        for action in np.asarray(reach_data.hf["action"])[steps]:
            _, reward, _, _, info = env.step(action)
            replayed.append((reward, info["success"]))
        np.testing.assert_allclose([r for r, _ in replayed], np.asarray(reach_data.hf["reward"])[steps], rtol=1e-5)
        np.testing.assert_array_equal([s > 0 for _, s in replayed], success[steps])
        env.close()


@pytest.mark.parametrize("name", ["metaworld-ml1-push", "metaworld-ml1-pick-place"])
def test_scripted_experts_solve_their_tasks_on_the_installed_mujoco(name):
    """Meta-World pins MuJoCo 3.3; seqmeta runs it on MuJoCo 4 (the weld fix in seqmeta.tasks.metaworld)."""
    family = seqmeta.get_family(name)
    ts = family.task_set()
    out = rollout(family, "expert", [ts.train_indices[3], ts.test_indices[3]], 1, progress=False)
    assert np.maximum.reduceat(out.success, out.starts).all()
    random = rollout(family, "random", [ts.test_indices[3]], 1, progress=False)
    assert out.episode_returns.min() > 5 * random.episode_returns.max()


def test_the_faster_contact_test_answers_as_meta_worlds_own_along_expert_episodes():
    """seqmeta replaces Meta-World's gripper-object contact test (a Python loop over contacts); both must
    agree at every step of an expert episode, before the grasp and while it holds the object."""
    from seqmeta.tasks.metaworld import ScriptedExperts, _touching_object, goal_features

    family = seqmeta.get_family("metaworld-ml1-pick-place")
    task = family.task_set().params[family.task_set().test_indices[3]]
    env = family.make_env(task)
    obs, _ = env.reset()
    sim, expert = env.unwrapped.sim, ScriptedExperts(("pick-place-v3",))
    goal, obj = goal_features(task, ("pick-place-v3",))[None], sim._get_id_main_object()
    answers = []
    for _ in range(200):
        obs, *_ = env.step(expert(obs[None], goal)[0])
        answers.append((_touching_object(sim, obj), _touching_object.replaces(sim, obj)))
    env.close()
    assert [ours for ours, _ in answers] == [theirs for _, theirs in answers]
    assert 0 < sum(theirs for _, theirs in answers) < len(answers)  # both answers occur


def test_evaluation_reports_success_rate(reach_data, tmp_path):
    from seqmeta.models import PromptDTConfig, PromptDTModel

    config = PromptDTConfig.from_dataset(reach_data, hidden_size=16, num_layers=1, context_length=4)
    model = PromptDTModel(config)
    protocol = EvalProtocol(data=str(reach_data.path), tasks="50", prompt_trajectories="0,1", episodes=1)
    model.save_pretrained(tmp_path / "model")
    results = evaluate(model, protocol, output_dir=tmp_path / "model" / "eval", progress=False)
    for setting in results["settings"]:
        assert setting["success_rate"] in (0.0, 1.0)
        assert setting["per_task"][0]["success_rate"] == setting["success_rate"]
    assert "success" in format_table(results).splitlines()[1]
    card = render_model_card(tmp_path / "model", "someone/reach")  # the card states the success rate
    rates = [f"{100 * s['success_rate']:.1f}%" for s in results["settings"]]
    assert "| mean return | normalized score | success rate |" in card.text
    assert all(f"| {rate} |" in card.text for rate in rates)
    metrics = [m for m in card.data.eval_results if m.metric_type == "success_rate"]
    assert [m.metric_value for m in metrics] == [round(100 * s["success_rate"], 1) for s in results["settings"]]


def test_meta_worlds_own_protocol_runs_a_seqmeta_model_on_the_familys_held_out_goals(reach_data, monkeypatch):
    """eval/metaworld_protocol.py: Meta-World's ML1 test envs (benchmark seed 1337) start where the
    family's held-out tasks start, and its metalearning_evaluation runs a seqmeta model prompted with
    the episodes it gathered while adapting."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "eval"))
    from metaworld.evaluation import metalearning_evaluation
    from metaworld_protocol import BENCHMARK_SEED, MetaLearner, make_test_envs

    from seqmeta.models import PromptDTConfig, PromptDTModel

    family = seqmeta.get_family("metaworld-ml1-reach")
    ts = family.task_set()
    held_out = np.array([ts.params[t]["rand_vec"] for t in ts.test_indices])
    envs = make_test_envs(family.name, 5, BENCHMARK_SEED)
    envs.call("sample_tasks")
    obs, _ = envs.reset(seed=0)
    rand_vec = np.asarray(envs.envs[0].unwrapped._last_rand_vec)
    match = np.abs(held_out - rand_vec).max(axis=1)
    assert match.min() < 1e-6  # one of the family's held-out goals
    ours, _ = family.make_env(ts.params[ts.test_indices[int(match.argmin())]]).reset(seed=0)
    np.testing.assert_allclose(ours, obs[0], atol=1e-6)
    assert not obs[:, GOAL_DIMS].any()  # the goal is hidden there too

    config = PromptDTConfig.from_dataset(reach_data, hidden_size=16, num_layers=1, context_length=4)
    learner = MetaLearner(PromptDTModel(config), envs.num_envs, target_return=1000.0, seed=0)
    success, mean_return, per_class = metalearning_evaluation(
        learner, envs, num_evals=1, adaptation_episodes=1, evaluation_episodes=2
    )
    assert len(learner.history) == 1 and learner.history[0].lengths.tolist() == [500] * 5
    assert learner.eval_prompts["attention_mask"].all()  # prompted with its own adaptation episode
    own = learner.history[0].observations
    assert np.isin(learner.eval_prompts["observation"][0, :, 0], own[:500, 0]).all()  # env 0's own steps
    assert set(per_class) == {"reach-v3"} and 0.0 <= success <= 1.0 and np.isfinite(mean_return)


def test_the_reach_expert_puts_its_fingertips_on_the_goal():
    """Meta-World's scripted reach policy steers the hand (the observation's first 3 numbers) onto the goal it
    sees, but success measures the fingertips' center, 4.5 cm below the hand, within 5 cm of the goal: aimed
    as shipped, the expert would end 5 mm inside success, and a model imitating it would fail when it stops a
    few millimeters off its path. seqmeta's expert is shown the goal raised by 4.5 cm, so the fingertips end
    on the goal and a model has 5 cm of room."""
    from seqmeta.behavior.policies import load_behavior_policy
    from seqmeta.data.collect import BehaviorActor
    from seqmeta.rollout import run_episodes

    family = seqmeta.get_family("metaworld-ml1-reach")
    params = [family.task_set().params[t] for t in (3, 53)]
    goals = np.stack([family.goal_features(p) for p in params])
    actor = BehaviorActor(load_behavior_policy(family, "expert", 2), goals, np.random.default_rng(0))
    out = run_episodes(family.env_fns(params), actor, max_steps=family.horizon)
    last = out.episodes.starts + out.episodes.lengths - 1
    hand = out.episodes.observations[last, :3]
    goal = np.array([p["rand_vec"][3:] for p in params])
    np.testing.assert_allclose(hand - goal, [[0.0, 0.0, 0.045]] * 2, atol=2e-3)  # the hand 4.5 cm above the goal
    np.testing.assert_allclose(out.info["obj_to_target"][last], 0.0, atol=5e-3)  # the fingertips on it
    assert out.success.all()


def test_the_reach_wall_expert_puts_its_fingertips_on_the_goal_too():
    """reach-wall's scripted policy aims the hand as reach's does (no seqmeta family has it: a user's family
    would); shown the raised goal, it too ends with the fingertips on the goal."""
    from seqmeta.tasks.metaworld import MetaWorldEnv, ScriptedExperts, benchmark_tasks, goal_features

    classes = ("reach-wall-v3",)
    params = benchmark_tasks("ML1", classes[0], seed=1337)[0][0]
    env, expert = MetaWorldEnv(**params), ScriptedExperts(classes)
    goal = goal_features(params, classes)[None]
    obs, _ = env.reset()
    for _ in range(500):  # the horizon
        obs, _, _, _, info = env.step(expert(obs[None], goal)[0])
    env.close()
    np.testing.assert_allclose(obs[:3] - goal[0, :3], [0.0, 0.0, 0.045], atol=2e-3)
    assert info["obj_to_target"] < 5e-3 and info["success"] == 1.0
