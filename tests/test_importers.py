import sys

import gymnasium as gym
import h5py
import numpy as np
import pytest

import seqmeta
from seqmeta.data.dataset import load_trajectories
from seqmeta.data.importers import import_hdf5, import_minari
from seqmeta.errors import ConfigError, DatasetFormatError, DatasetNotFoundError, TaskSelectionError


def write_d4rl(path, n=450, obs_dim=17, act_dim=6, horizon=200, seed=0, drop=None, **overrides):
    """A D4RL-style file: 2 full 200-step episodes, then 50 steps of an unfinished one."""
    rng = np.random.default_rng(seed)
    arrays = {
        "observations": rng.standard_normal((n, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        "rewards": rng.standard_normal(n).astype(np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": (np.arange(n) % horizon) == horizon - 1,
    }
    arrays.update(overrides)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if key != drop:
                f[key] = value
    return arrays


def test_hdf5_round_trip(tmp_path):
    a0 = write_d4rl(tmp_path / "t0.hdf5", seed=0)
    terminals = np.zeros(300, bool)
    terminals[99] = True  # an episode that ends early in a terminal state
    a3 = write_d4rl(tmp_path / "t3.hdf5", n=300, seed=1, terminals=terminals)
    d = import_hdf5({0: tmp_path / "t0.hdf5", 3: tmp_path / "t3.hdf5"}, "cheetah-vel", tmp_path / "out")
    ep = d.episodes
    assert ep["length"].tolist() == [200, 200, 50, 100, 100, 100]
    assert ep["task_index"].tolist() == [0, 0, 0, 3, 3, 3]
    np.testing.assert_array_equal(d.column("observation")[:450], a0["observations"])
    np.testing.assert_array_equal(d.column("action")[450:], a3["actions"])
    term, trunc = d.column("terminated"), d.column("truncated")
    assert term.sum() == 1 and term[450 + 99]
    ends = ep["start"] + ep["length"] - 1
    assert (term[ends] | trunc[ends]).all() and trunc.sum() == 5  # the unfinished tail is truncated
    assert d.meta.qualities["imported"]["episodes"] == 6


@pytest.mark.reliability("bad data", "clear error, nothing written")
def test_hdf5_bad_files_name_the_problem(tmp_path):
    write_d4rl(tmp_path / "nokey.hdf5", drop="rewards")
    with pytest.raises(DatasetFormatError, match="no 'rewards' dataset"):
        import_hdf5({0: tmp_path / "nokey.hdf5"}, "cheetah-vel", tmp_path / "o1")
    write_d4rl(tmp_path / "wide.hdf5", obs_dim=20)
    with pytest.raises(DatasetFormatError, match="17-dimensional"):
        import_hdf5({0: tmp_path / "wide.hdf5"}, "cheetah-vel", tmp_path / "o2")
    rewards = np.zeros(450, np.float32)
    rewards[10] = np.inf
    write_d4rl(tmp_path / "inf.hdf5", rewards=rewards)
    with pytest.raises(DatasetFormatError, match="NaN or inf at step 10"):
        import_hdf5({0: tmp_path / "inf.hdf5"}, "cheetah-vel", tmp_path / "o3")
    write_d4rl(tmp_path / "empty.hdf5", n=0)
    with pytest.raises(DatasetFormatError, match="no steps"):
        import_hdf5({0: tmp_path / "empty.hdf5"}, "cheetah-vel", tmp_path / "o4")
    write_d4rl(tmp_path / "short.hdf5", actions=np.zeros((100, 6), np.float32))
    with pytest.raises(DatasetFormatError, match="actions has 100 rows"):
        import_hdf5({0: tmp_path / "short.hdf5"}, "cheetah-vel", tmp_path / "o5")
    write_d4rl(tmp_path / "cut.hdf5")
    data = (tmp_path / "cut.hdf5").read_bytes()
    (tmp_path / "cut.hdf5").write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetFormatError, match="truncated or not HDF5"):
        import_hdf5({0: tmp_path / "cut.hdf5"}, "cheetah-vel", tmp_path / "o6")
    with pytest.raises(DatasetNotFoundError):
        import_hdf5({0: tmp_path / "missing.hdf5"}, "cheetah-vel", tmp_path / "o7")
    with pytest.raises(TaskSelectionError, match="do not exist"):
        import_hdf5({40: tmp_path / "t.hdf5"}, "cheetah-vel", tmp_path / "o8")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("o")]


@pytest.fixture
def minari_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path


def make_minari(dataset_id, env, episodes=3, steps=20, seed=0):
    from minari import create_dataset_from_buffers
    from minari.data_collector import EpisodeBuffer

    buffers = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        observations, actions, rewards = [obs], [], []
        for _ in range(steps):
            a = env.action_space.sample()
            obs, r, *_ = env.step(a)
            observations.append(obs)
            actions.append(a)
            rewards.append(r)
        buffers.append(
            EpisodeBuffer(
                observations=np.asarray(observations),
                actions=np.asarray(actions),
                rewards=np.asarray(rewards),
                terminations=np.zeros(steps, bool),
                truncations=np.arange(steps) == steps - 1,
            )
        )
    return create_dataset_from_buffers(
        dataset_id, buffers, env=env, eval_env=env, algorithm_name="random", description="test data"
    )


def test_minari_import_finds_the_task_from_recorded_kwargs(minari_home):
    pytest.importorskip("minari")
    family = seqmeta.get_family("point-robot")
    params = family.task_set().params
    make_minari("seqmeta/point-robot/expert-v0", gym.make(family.env_id, **params[4]), seed=0)
    make_minari("seqmeta/point-robot/random-v0", gym.make(family.env_id, **params[9]), seed=9)
    d = import_minari(["seqmeta/point-robot/expert-v0", "seqmeta/point-robot/random-v0"], family, minari_home / "o")
    assert d.episodes["task_index"].tolist() == [4, 4, 4, 9, 9, 9]
    assert set(d.meta.qualities) == {"expert", "random"}
    assert d.column("observation").shape == (120, 2)


def test_minari_import_of_a_plain_env_needs_the_task_index(minari_home):
    pytest.importorskip("minari")
    make_minari("test/cheetah/random-v0", gym.make("HalfCheetah-v5", max_episode_steps=200), episodes=2)
    with pytest.raises(TaskSelectionError, match="--task-index"):
        import_minari(["test/cheetah/random-v0"], "cheetah-vel", minari_home / "o")
    d = import_minari(["test/cheetah/random-v0"], "cheetah-vel", minari_home / "o", task_indices=[7])
    assert set(d.episodes["task_index"].tolist()) == {7}
    with pytest.raises(DatasetNotFoundError, match="minari list local"):
        import_minari(["test/none/expert-v0"], "cheetah-vel", minari_home / "o2")


@pytest.mark.reliability("bad data", "right result")
def test_hdf5_several_files_of_one_task_are_all_imported(tmp_path, capsys):
    from seqmeta.cli import main

    write_d4rl(tmp_path / "a.hdf5", n=200, seed=0)
    write_d4rl(tmp_path / "b.hdf5", n=300, seed=1)
    args = ["import-hdf5", "--family", "cheetah-vel", "--out", str(tmp_path / "out")]
    assert main([*args, "--file", f"2={tmp_path / 'a.hdf5'}", "--file", f"2={tmp_path / 'b.hdf5'}"]) == 0
    data = load_trajectories(tmp_path / "out")
    assert data.meta.num_steps == 500 and set(data.episodes["task_index"].tolist()) == {2}
    # The same file twice would count its episodes twice: refused, nothing written.
    out2 = tmp_path / "out2"
    assert (
        main([*args[:-1], str(out2), "--file", f"2={tmp_path / 'a.hdf5'}", "--file", f"3={tmp_path / 'a.hdf5'}"]) == 2
    )
    assert "is given twice" in capsys.readouterr().err and not out2.exists()
    assert main([*args[:-1], str(out2), "--file", "2"]) == 2
    assert "--file takes TASK_INDEX=PATH" in capsys.readouterr().err


@pytest.mark.reliability("bad options", "clear error, nothing written")
def test_minari_import_without_minari_says_how_to_install_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "minari", None)  # import minari raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'seqmeta\[minari\]'"):
        import_minari(["seqmeta/cheetah-vel-v0"], "cheetah-vel", tmp_path / "out")


@pytest.mark.reliability("faults", "clear error, nothing written")
def test_a_missing_optional_package_names_its_extra(tmp_path, monkeypatch):
    """HDF5 import without h5py installed: one message naming `pip install 'seqmeta[hdf5]'`, nothing written."""
    write_d4rl(tmp_path / "t0.hdf5")
    monkeypatch.setitem(sys.modules, "h5py", None)  # what `import h5py` meets when it is not installed
    with pytest.raises(ConfigError, match=r"pip install 'seqmeta\[hdf5\]'"):
        import_hdf5({0: tmp_path / "t0.hdf5"}, "cheetah-vel", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_every_extra_a_message_names_exists():
    """Each `import_extra(module, extra, ...)` in seqmeta names an extra that pyproject.toml declares, and that
    extra installs the module's package."""
    import re
    import tomllib
    from pathlib import Path

    root = Path(seqmeta.__file__).parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = set()
    for path in Path(seqmeta.__file__).parent.rglob("*.py"):
        named |= set(re.findall(r'import_extra\(\s*"([\w.]+)",\s*"(\w+)"', path.read_text()))
    assert {extra for _, extra in named} >= {"plots", "hdf5", "lora", "video", "minari"}
    in_all = set(re.fullmatch(r"seqmeta\[([\w,]+)\]", extras["all"][0]).group(1).split(","))
    packages = {"av": "av", "h5py": "h5py", "matplotlib": "matplotlib", "peft": "peft", "minari": "minari"}
    for module, extra in named:
        assert extra in extras, f"import_extra names [{extra}], which pyproject.toml does not declare"
        assert any(req.startswith(packages[module]) for req in extras[extra]), (module, extra, extras[extra])
        assert extra in in_all, f"[all] leaves out [{extra}]"
