import re

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import seqmeta
from seqmeta.errors import TaskSelectionError, UnknownFamilyError


@pytest.mark.parametrize("name", seqmeta.list_families())
def test_every_family_passes_check_env_and_rebuilds_from_kwargs(name):
    family = seqmeta.get_family(name)
    ts = family.task_set()
    params = ts.params[ts.train_indices[0]]
    env = gym.make(family.env_id, **params)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.spec.max_episode_steps == family.horizon
    rebuilt = gym.make(env.spec)  # the recorded spec alone rebuilds the same task
    assert {k: rebuilt.spec.kwargs[k] for k in params} == params
    actions = np.random.default_rng(0).uniform(-1, 1, (5, *family.action_space.shape))
    steps = [_rollout(e, actions) for e in (env, rebuilt)]
    np.testing.assert_array_equal([s[1] for s in steps[0]], [s[1] for s in steps[1]])


@pytest.mark.parametrize("name", seqmeta.list_families())
def test_same_seed_same_trajectory(name):
    family = seqmeta.get_family(name)
    params = family.task_set().params[0]
    runs = []
    for _ in range(2):
        env = family.make_env(params)
        obs, _ = env.reset(seed=3)
        env.action_space.seed(3)
        trace = [obs]
        for _ in range(10):
            obs, reward, *_ = env.step(env.action_space.sample())
            trace += [obs, [reward]]
        runs.append(np.concatenate([np.ravel(t) for t in trace]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_splits_match_the_papers():
    vel = seqmeta.get_family("cheetah-vel").task_set("prompt-dt")
    # MACAW's config: 40 velocities 0.075 apart from 0.075 to 3.0, held out {2, 7, 15, 23, 26}.
    assert vel.test_indices == (2, 7, 15, 23, 26)
    held_out = [vel.params[i]["goal_velocity"] for i in vel.test_indices]
    np.testing.assert_allclose(held_out, [0.225, 0.6, 1.2, 1.8, 2.025], atol=1e-6)
    np.testing.assert_allclose(np.diff([p["goal_velocity"] for p in vel.params]), 0.075, atol=1e-6)
    assert len(vel.train_indices) == 35 and not set(vel.train_indices) & set(vel.test_indices)
    ant = seqmeta.get_family("ant-dir").task_set()
    assert len(ant) == 50 and ant.test_indices == (6, 17, 23, 30, 41)
    assert all(0 <= p["angle"] < 2 * np.pi for p in ant.params)
    cheetah_dir = seqmeta.get_family("cheetah-dir").task_set()
    assert cheetah_dir.train_indices == cheetah_dir.test_indices == (0, 1)
    sparse = seqmeta.get_family("point-robot-sparse").task_set()
    goals = np.array([p["goal"] for p in sparse.params])
    # PEARL's sparse point robot: goals at angles linspace(0, pi, n) on the unit circle (here shuffled).
    angles = np.sort(np.arctan2(goals[:, 1], goals[:, 0]))
    np.testing.assert_allclose(angles, np.linspace(0, np.pi, 50), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(goals, axis=1), 1.0, atol=1e-5)


def _rollout(env, actions, seed=0):
    env.reset(seed=seed)
    return [env.step(a) for a in actions]


def test_cheetah_vel_reward_is_minus_velocity_error_minus_control_cost():
    family = seqmeta.get_family("cheetah-vel")
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (30, 6))
    slow = _rollout(family.make_env({"goal_velocity": 0.5}), actions)
    fast = _rollout(family.make_env({"goal_velocity": 2.5}), actions)
    for a, (o1, r1, _, _, i1), (o2, r2, _, _, i2) in zip(actions, slow, fast, strict=True):
        np.testing.assert_array_equal(o1, o2)  # the task changes the reward, not the dynamics
        ctrl = 0.05 * np.sum(a**2)
        assert r1 == pytest.approx(-abs(i1["x_velocity"] - 0.5) - ctrl)
        assert r2 == pytest.approx(-abs(i2["x_velocity"] - 2.5) - ctrl)


def test_cheetah_dir_reward_flips_with_direction():
    family = seqmeta.get_family("cheetah-dir")
    actions = np.random.default_rng(1).uniform(-1, 1, (30, 6))
    fwd = _rollout(family.make_env({"direction": 1.0}), actions)
    bwd = _rollout(family.make_env({"direction": -1.0}), actions)
    for a, f, b in zip(actions, fwd, bwd, strict=True):
        ctrl = 0.05 * np.sum(a**2)
        assert f[1] == pytest.approx(f[4]["x_velocity"] - ctrl)
        assert b[1] == pytest.approx(-b[4]["x_velocity"] - ctrl)
    with pytest.raises(ValueError, match="direction"):
        family.make_env({"direction": 0.5})


def test_ant_dir_reward_projects_velocity_on_the_direction():
    family = seqmeta.get_family("ant-dir")
    assert family.observation_space.shape == (27,)
    actions = np.random.default_rng(2).uniform(-1, 1, (20, 8))
    for angle in (0.0, 2.0):
        for a, (_, r, _, _, info) in zip(actions, _rollout(family.make_env({"angle": angle}), actions), strict=True):
            heading = info["x_velocity"] * np.cos(angle) + info["y_velocity"] * np.sin(angle)
            ctrl = 0.5 * np.sum(a**2)
            assert r == pytest.approx(heading - ctrl + info["reward_contact"] + 1.0)
            assert info["heading_velocity"] == pytest.approx(heading)  # what behavior evaluations report


def test_point_robot_dense_and_sparse_rewards():
    dense = seqmeta.get_family("point-robot").make_env({"goal": [0.3, 0.0]})
    dense.reset(seed=0)
    dense.unwrapped._state = np.zeros(2)
    obs, r, *_ = dense.step(np.array([0.1, 0.0]))
    assert r == pytest.approx(-0.2) and np.allclose(obs, [0.1, 0.0])
    sparse = seqmeta.get_family("point-robot-sparse").make_env({"goal": [0.0, 0.35]})
    obs, _ = sparse.reset(seed=0)
    assert np.allclose(obs, 0.0)  # sparse episodes start at the origin
    rewards = [sparse.step(np.array([0.0, 0.1]))[1] for _ in range(3)]
    # distances 0.25 (outside radius 0.2), 0.15, 0.05
    assert rewards == pytest.approx([0.0, 0.85, 0.95])


@pytest.mark.parametrize("name, base", [("hopper-params", "Hopper-v5"), ("walker-params", "Walker2d-v5")])
def test_params_families_scale_physics_by_the_rand_param_laws(name, base):
    family = seqmeta.get_family(name)
    params = family.task_set().params[0]
    env = family.make_env(params).unwrapped
    reference = gym.make(base).unwrapped.model
    np.testing.assert_allclose(env.model.body_mass, reference.body_mass * 1.5 ** np.array(params["body_mass"]))
    np.testing.assert_allclose(env.model.dof_damping, reference.dof_damping * 1.3 ** np.array(params["dof_damping"]))
    np.testing.assert_allclose(
        env.model.geom_friction, reference.geom_friction * 1.5 ** np.array(params["geom_friction"])
    )
    exps = np.concatenate([np.ravel(v) for v in params.values()])
    assert np.abs(exps).max() <= 3.0
    # Different tasks, same actions from the same state: different motion.
    actions = np.random.default_rng(0).uniform(-1, 1, (10, family.action_space.shape[0]))
    a = _rollout(family.make_env(family.task_set().params[0]), actions)
    b = _rollout(family.make_env(family.task_set().params[1]), actions)
    assert not np.allclose(a[-1][0], b[-1][0])


@pytest.mark.reliability("bad options", "clear error, nothing written")
def test_task_selection_and_bad_names():
    ts = seqmeta.get_family("cheetah-vel").task_set()
    assert ts.select("test") == [2, 7, 15, 23, 26]
    assert ts.select("0,3") == [0, 3] and ts.select(5) == [5]
    assert len(ts.select("all")) == 40
    with pytest.raises(TaskSelectionError, match=r"0\.\.39"):
        ts.select([40])
    with pytest.raises(TaskSelectionError, match="--tasks test"):
        ts.select("held-out")
    with pytest.raises(UnknownFamilyError, match="cheetah-vel"):
        seqmeta.get_family("cheetah-speed")
    with pytest.raises(TaskSelectionError, match="uniform-50"):
        seqmeta.get_family("cheetah-vel").task_set("macaw")


def test_scores_are_not_normalized_on_an_expert_worse_than_random(monkeypatch):
    """A reference table whose expert scores below random on a task (an undertrained behavior policy) would turn
    better returns into lower scores, or blow them up: refused with the fix, the other tasks scored as before."""
    from seqmeta.tasks import family as family_module

    cheetah = seqmeta.get_family("cheetah-dir")
    table = {"cheetah-dir": {"default": {"random": [-300.0, -300.0], "expert": [500.0, -320.0]}}}
    monkeypatch.setattr(family_module, "_reference_table", lambda: table)
    assert cheetah.normalized_score(100.0, 0) == pytest.approx(50.0)
    with pytest.raises(TaskSelectionError, match=r"task 1: the expert's reference return \(-320\) is below"):
        cheetah.normalized_score(100.0, 1)


@pytest.mark.parametrize(
    ("family", "params", "message"),
    [
        ("cheetah-vel", {"goal_velocity": float("nan")}, "goal_velocity holds NaN or inf"),
        ("cheetah-vel", {"goal_velocity": float("inf")}, "goal_velocity holds NaN or inf"),
        ("cheetah-vel", {"goal_velocity": "fast"}, "goal_velocity must be numbers, got 'fast'"),
        ("cheetah-vel", {}, "lack ['goal_velocity']: the family's are ['goal_velocity']"),
        ("cheetah-vel", {"goal_velocity": 1.0, "mass": 3.0}, "have unknown ['mass']"),
        ("ant-dir", {"direction": 1.0}, "lack ['angle'] and have unknown ['direction']"),
        ("point-robot", {"goal": [0.1, 0.2, 0.3]}, "goal has shape (3,); the family's is (2,)"),
        ("hopper-params", "body_mass=0", "body_mass has shape (); the family's is (5,)"),
        ("metaworld-ml1-push", "task_class=reach-v3", "task_class='reach-v3' is not one of ['push-v3']"),
        ("point-robot", [0.1, 0.2], "are a list; give a dict like {goal="),
    ],
)
@pytest.mark.reliability("bad data", "clear error, nothing written")
def test_task_parameters_an_env_cannot_take_are_refused_before_any_env(family, params, message):
    fam = seqmeta.get_family(family)
    if isinstance(params, str):  # one parameter of the family's first task changed
        key, value = params.split("=")
        params = {**fam.task_set().params[0], key: value if key == "task_class" else float(value)}
    with pytest.raises(TaskSelectionError, match=re.escape(message)):
        fam.env_fns([fam.task_set().params[0], params])
    with pytest.raises(TaskSelectionError, match=re.escape(message)):
        seqmeta.collect_episodes(family, "random", [params], 1)


def test_task_parameters_outside_every_split_are_welcome():
    """Any finite value of the family's parameters runs: the checks refuse only what no env can take."""
    episodes = seqmeta.collect_episodes("cheetah-vel", "random", [{"goal_velocity": -5.0}], 1, progress=False)
    assert episodes.lengths.tolist() == [200]
    far = seqmeta.collect_episodes("point-robot", "expert", [{"goal": [40.0, -40.0]}], 1, progress=False)
    assert np.isfinite(far.rewards).all() and far.rewards.sum() < -100


def test_a_family_of_your_own_checks_its_own_parameters():
    """A family made from another with a task list of its own: names every task gives are required, the
    others optional; the check is its own, not the family it was made from (no shared cache)."""
    import dataclasses

    from seqmeta.tasks import TaskSet

    base = seqmeta.get_family("cheetah-vel")
    base.check_params([{"goal_velocity": 1.0}])  # fills the base family's cache first
    tasks = TaskSet("mine", ({"goal_velocity": 1.0}, {"goal_velocity": 2.0, "mass": 1.0}), (0,), "two tasks")
    mine = dataclasses.replace(base, name="mine", task_sets={"mine": tasks}, default_task_set="mine")
    mine.check_params([{"goal_velocity": 3.0}, {"goal_velocity": 0.5, "mass": 2.0}])
    with pytest.raises(TaskSelectionError, match=re.escape("lack ['goal_velocity']")):
        mine.check_params([{"mass": 2.0}])
    with pytest.raises(TaskSelectionError, match=re.escape("have unknown ['mass']")):
        base.check_params([{"goal_velocity": 0.5, "mass": 2.0}])
