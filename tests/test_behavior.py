import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import seqmeta
from seqmeta.behavior import export
from seqmeta.behavior.policies import ScriptedPolicy, available_qualities, load_actor, load_behavior_policy
from seqmeta.behavior.sac import Actor, ReplayBuffer, SACHyperparameters
from seqmeta.behavior.train import BehaviorTrainConfig, train_behavior_policy
from seqmeta.errors import BehaviorPolicyError, ConfigError
from seqmeta.tasks import get_family


def test_point_robot_expert_is_the_clipped_goal_direction(point_family):
    policy = load_behavior_policy(point_family, "expert", 3)
    assert isinstance(policy, ScriptedPolicy)
    obs = np.array([[0.0, 0.0], [0.5, 0.5], [-1.0, 0.0]], np.float32)
    goals = np.array([[0.05, -0.3], [0.5, 0.45], [1.0, 0.0]], np.float32)
    policy.start_episodes(np.arange(3), np.random.default_rng(0))
    actions = policy.act(obs, goals, np.random.default_rng(0))
    np.testing.assert_allclose(actions, [[0.05, -0.1], [0.0, -0.05], [0.1, 0.0]], atol=1e-7)


# Every family with an expert, as families gain one (Meta-World's scripted experts: tests/test_metaworld.py).
WITH_EXPERTS = [
    n
    for n in seqmeta.list_families()
    if not n.startswith("metaworld") and "expert" in available_qualities(seqmeta.get_family(n))
]


def test_the_expert_check_covers_the_families_known_to_have_experts():
    assert {"point-robot", "point-robot-sparse", "cheetah-vel", "cheetah-dir"} <= set(WITH_EXPERTS)


@pytest.mark.parametrize("name", WITH_EXPERTS)
def test_shipped_experts_earn_their_reference_returns_measured_again(name):
    """Rolled out afresh (other seeds, held-out tasks), the shipped expert scores about 100 and random about 0:
    the reference table matches the shipped policies and envs, and the expert is far above random."""
    from seqmeta.data.collect import rollout

    family = seqmeta.get_family(name)
    tasks = family.task_set().test_indices[:2]
    scores, n = {}, 2000 // family.horizon  # 10 episodes of 200 steps, 100 of 20 (their returns vary more)
    for quality in ("expert", "random"):
        episodes = rollout(family, quality, tasks, n, seed=11, progress=False)
        scores[quality] = [
            family.normalized_score(episodes.episode_returns[episodes.task_index == t].mean(), t) for t in tasks
        ]
    assert all(85 < s < 115 for s in scores["expert"]), scores  # a few points of noise
    assert all(-25 < s < 25 for s in scores["random"]), scores


def test_families_without_an_expert_say_how_to_get_one():
    # A family of the user's own (Ant-Dir under another name): no behavior policy ships for it.
    ant = dataclasses.replace(seqmeta.get_family("ant-dir"), name="my-ant-dir")
    assert available_qualities(ant) == ["random"]
    with pytest.raises(BehaviorPolicyError, match=r"python -m seqmeta\.behavior train --family my-ant-dir"):
        load_behavior_policy(ant, "expert", 1)
    assert load_behavior_policy(ant, "random", 2).act(
        np.zeros((2, 27)), np.zeros((2, 2)), np.random.default_rng(0)
    ).shape == (2, 8)


def _snapshot(path, actor, step):
    dims = {"obs_dim": actor.obs_dim, "goal_dim": actor.goal_dim, "act_dim": actor.act_dim, "hidden": actor.hidden}
    save_file(actor.state_dict(), str(path), metadata={"step": str(step), "dims": json.dumps(dims)})


def test_snapshot_round_trip(tmp_path):
    actor = Actor(17, 1, 6, hidden=16)
    _snapshot(tmp_path / "a.safetensors", actor, 10)
    loaded = load_actor(tmp_path / "a.safetensors")
    x = torch.randn(5, 18)
    torch.testing.assert_close(loaded(x, deterministic=True)[0], actor(x, deterministic=True)[0], rtol=0, atol=0)
    action, log_prob = loaded(x)
    assert action.abs().max() <= 1 and torch.isfinite(log_prob).all()


def _logged_run(run, returns: dict[int, float]):
    """A run folder whose log holds ``returns`` (step -> mean return on logged tasks 2 and 7), with snapshots."""
    (run / "snapshots").mkdir(parents=True)
    with open(run / "log.jsonl", "w") as f:
        for step, r in returns.items():
            f.write(
                json.dumps(
                    {"step": step, "minutes": step / 10, "tasks": [2, 7], "return": [r, r], "mean_velocity": [0.0, 0.0]}
                )
                + "\n"
            )
            _snapshot(run / "snapshots" / f"step_{step:07d}.safetensors", Actor(17, 1, 6, 8), step)
    (run / "config.json").write_text(json.dumps({"total_steps": 100, "seed": 0}))  # stopped after its last step


def test_export_picks_levels_by_evaluated_return(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _logged_run(run, {10: -300.0, 20: -250.0, 30: -200.0, 40: -120.0, 50: -100.0, 60: -110.0})
    monkeypatch.setattr(export, "random_return_on", lambda family, tasks: -300.0)
    levels = export.export_skill_levels("cheetah-vel", run, tmp_path / "weights", choose_on="logged")
    assert levels["levels"]["expert"] == {"snapshots": ["step_0000050"], "deterministic": True}
    assert levels["recipe"].endswith("--total-steps 60 --seed 0")  # the steps it ran: what reproduces it
    assert levels["levels"]["medium"]["snapshots"] == ["step_0000030"]  # level 50 exactly
    assert levels["levels"]["mixed"]["snapshots"] == ["step_0000020", "step_0000030", "step_0000040", "step_0000050"]
    shipped = sorted(p.name for p in (tmp_path / "weights").glob("*.safetensors"))
    assert shipped == [f"step_00000{s}.safetensors" for s in (20, 30, 40, 50)]
    assert levels["evaluation"]["chosen_on"] == "logged" and levels["evaluation"]["tasks"] == [2, 7]


def test_export_chooses_the_expert_on_the_training_tasks_never_the_held_out_ones(tmp_path, monkeypatch):
    """The logged evaluations (held-out tasks among them) rank step 30 first; measured on the training tasks,
    step 20 is the best: the default export takes step 20, and evaluates every snapshot on exactly the
    training tasks."""
    run = tmp_path / "run"
    _logged_run(run, {10: -300.0, 20: -250.0, 30: -100.0})
    on_train = iter([-300.0, -50.0, -200.0])  # steps 10, 20, 30, evaluated in that order
    seen = []

    def evaluate_actor(actor, family, tasks, seed):
        seen.append(list(tasks))
        r = next(on_train)
        return {"return": [r] * len(tasks), "mean_velocity": [0.0] * len(tasks)}

    monkeypatch.setattr("seqmeta.behavior.train.evaluate_actor", evaluate_actor)
    monkeypatch.setattr(export, "random_return_on", lambda family, tasks: -300.0)
    levels = export.export_skill_levels("cheetah-vel", run, tmp_path / "weights")
    family = get_family("cheetah-vel")
    train, test = family.task_set().train_indices, family.task_set().test_indices
    assert seen == [list(train)] * 3 and not set(test) & set(seen[0])
    assert levels["levels"]["expert"]["snapshots"] == ["step_0000020"]
    assert levels["evaluation"]["chosen_on"] == "train" and levels["evaluation"]["tasks"] == list(train)
    assert levels["evaluation"]["snapshots"]["step_0000020"]["mean_return"] == -50.0


def test_status_shows_a_runs_evaluations_and_plots_them(tmp_path, capsys, monkeypatch):
    from seqmeta.behavior.__main__ import main

    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    with open(run / "log.jsonl", "w") as f:
        for step, returns in ((10, [-50.0, 10.0]), (20, [40.0, 80.0]), (30, [0.0, 20.0])):
            f.write(json.dumps({"step": step, "minutes": step / 10, "tasks": [2, 7], "return": returns}) + "\n")
            _snapshot(run / "snapshots" / f"step_{step:07d}.safetensors", Actor(17, 1, 6, 8), step)
    monkeypatch.setattr("sys.argv", ["prog", "status", "--family", "cheetah-vel", "--output-dir", str(run)])
    main()
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    # step, minutes, mean return, worst task; the best evaluation (what export takes as the expert) marked
    expected = [("10", "-20.0", "-50.0"), ("20", "60.0", "40.0"), ("30", "10.0", "0.0")]
    assert [(r[0], r[2], r[3]) for r in rows] == expected
    assert "best" in " ".join(rows[1]) and "best" not in " ".join(rows[0] + rows[2])
    assert (run / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"

    monkeypatch.setattr("sys.argv", ["prog", "export", "--output-dir", str(tmp_path / "empty")])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert "no evaluated snapshots yet" in capsys.readouterr().err  # one line, and how to get some


def test_sac_training_checkpoints_and_resumes(tmp_path):
    config = BehaviorTrainConfig(
        family="point-robot",
        output_dir=str(tmp_path / "run"),
        total_steps=200,
        warmup_steps=50,
        eval_every=100,
        checkpoint_every=100,
        sac=SACHyperparameters(hidden=16, batch_size=32),
    )
    train_behavior_policy(config)
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text() == "step_0000200"
    config.total_steps = 300
    train_behavior_policy(config)  # resumes at 200, not from scratch
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert steps == [100, 200, 300]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["latest", "step_0000300"]


@pytest.mark.parametrize("sampling", ["law", "task-set"])
def test_sac_trains_on_the_task_law_or_on_the_task_set(tmp_path, sampling):
    from safetensors.numpy import load_file

    family = seqmeta.get_family("point-robot")
    config = BehaviorTrainConfig(
        family=family.name,
        output_dir=str(tmp_path / sampling),
        total_steps=400,  # 20 episodes of 20 steps, no update (warm-up)
        warmup_steps=1000,
        checkpoint_every=400,
        task_sampling=sampling,
    )
    train_behavior_policy(config)
    replay = load_file(str(tmp_path / sampling / "checkpoints" / "step_0000400" / "replay.safetensors"))
    goals = {tuple(g) for g in replay["x"][:, family.observation_space.shape[0] :].round(5).tolist()}
    task_set = {tuple(np.round(family.goal_features(p), 5).tolist()) for p in family.task_set().params}
    assert len(goals) > 1
    assert goals <= task_set if sampling == "task-set" else not goals & task_set
    assert json.loads((tmp_path / sampling / "config.json").read_text())["task_sampling"] == sampling
    other = "law" if sampling == "task-set" else "task-set"
    with pytest.raises(ConfigError, match=f"trained with --task-sampling {sampling}; resume it with the same"):
        train_behavior_policy(dataclasses.replace(config, task_sampling=other, total_steps=800))


def test_an_unknown_task_sampling_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="choose one of law, task-set"):
        train_behavior_policy(BehaviorTrainConfig(family="point-robot", output_dir=str(tmp_path), task_sampling="all"))


def test_replay_buffer_resumes_into_a_larger_capacity():
    small = ReplayBuffer(2, 1, capacity=4)
    for i in range(6):  # wraps: holds transitions 2, 3, 4, 5 with the oldest at index 2
        small.add([i, i], [i], i, [i, i], 0.0)
    big = ReplayBuffer(2, 1, capacity=8)
    big.load_state_dict(small.state_dict())
    assert big.size == 4 and big.arrays["reward"][:4].tolist() == [2, 3, 4, 5]
    big.add([6, 6], [6], 6, [6, 6], 0.0)
    assert big.size == 5 and big.arrays["reward"][:5].tolist() == [2, 3, 4, 5, 6]
    assert set(big.sample(200, np.random.default_rng(0))["reward"].tolist()) == {2.0, 3.0, 4.0, 5.0, 6.0}


@pytest.mark.parametrize("quality", ["explore", "sweep"])
def test_explore_and_sweep_behave_the_same_in_every_task_only_rewards_differ(quality):
    from seqmeta.data.collect import collect_episodes

    family = seqmeta.get_family("point-robot")
    a = collect_episodes(family, quality, [{"goal": [0.9, 0.9]}], 3, seed=5, progress=False)
    b = collect_episodes(family, quality, [{"goal": [-0.9, -0.4]}], 3, seed=5, progress=False)
    np.testing.assert_array_equal(a.observations, b.observations)  # point-robot dynamics ignore the goal
    np.testing.assert_array_equal(a.actions, b.actions)
    assert not np.allclose(a.rewards, b.rewards)
    expert = collect_episodes(family, "expert", [{"goal": [0.9, 0.9]}], 3, seed=5, progress=False)
    assert not np.allclose(expert.actions, a.actions)


def test_sweep_is_one_fixed_schedule_of_tasks_over_the_episode():
    family = seqmeta.get_family("point-robot")
    policy = load_behavior_policy(family, "sweep", 2)
    rng = np.random.default_rng(0)
    policy.start_episodes(np.arange(2), rng)
    obs, true_goals = np.zeros((2, 2), np.float32), np.array([[0.9, 0.9], [-0.9, -0.9]], np.float32)
    actions = [policy.act(obs, true_goals, rng) for _ in range(family.horizon)]
    assert all(np.array_equal(a[0], a[1]) for a in actions)  # the true goals are ignored
    schedule = policy.schedule
    assert len({tuple(g) for g in schedule}) == 4  # four training tasks, one per quarter of the episode
    for t, action in enumerate(actions):
        np.testing.assert_allclose(action[0], np.clip(schedule[t * 4 // family.horizon] - obs[0], -0.1, 0.1))


def test_perturbed_expert_takes_noisy_actions_but_stores_the_experts_own():
    """DART: the env is stepped with noisy actions, so the states stray from the expert's path; each stored
    action is what the expert does from the state actually met, which leads back."""
    from seqmeta.data.collect import collect_episodes

    family = seqmeta.get_family("point-robot")
    goal = np.array([0.9, 0.9], np.float32)
    episodes = collect_episodes(family, "perturbed", [{"goal": goal.tolist()}], 4, seed=3, progress=False)
    obs, actions = episodes.observations, episodes.actions
    np.testing.assert_allclose(actions, np.clip(goal - obs, -0.1, 0.1), atol=1e-6)  # the expert's, state by state
    spans = list(zip(episodes.starts, episodes.lengths, strict=True))
    moved = np.concatenate([obs[s + 1 : s + n] - obs[s : s + n - 1] for s, n in spans])
    taken = np.concatenate([actions[s : s + n - 1] for s, n in spans])
    assert not np.allclose(moved, taken, atol=1e-3)  # the noise moved the robot, and was not recorded
    expert = collect_episodes(family, "expert", [{"goal": goal.tolist()}], 4, seed=3, progress=False)
    assert not np.allclose(expert.observations, obs)
    assert "perturbed" in available_qualities(family)
