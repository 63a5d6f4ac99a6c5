import numpy as np
import pytest

import seqmeta
from seqmeta.data.collect import collect_dataset
from seqmeta.data.episodes import Episodes


@pytest.fixture(scope="session")
def point_robot_dataset(tmp_path_factory):
    """Point-Robot, every quality, 4 episodes on each of the 50 tasks."""
    out = tmp_path_factory.mktemp("data") / "point-robot"
    return collect_dataset("point-robot", "expert,medium,mixed,random", str(out), episodes_per_task=4, progress=False)


def make_episodes(lengths, obs_dim=2, act_dim=2, tasks=None, seed=0, quality="expert") -> Episodes:
    """Synthetic episodes whose observation encodes (episode, step) for exact checks."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    n = int(lengths.sum())
    episode = np.repeat(np.arange(len(lengths)), lengths)
    step = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    obs = np.zeros((n, obs_dim), np.float32)
    obs[:, 0], obs[:, 1] = episode, step
    return Episodes(
        observations=obs,
        actions=rng.uniform(-0.1, 0.1, (n, act_dim)).astype(np.float32),
        rewards=rng.standard_normal(n).astype(np.float32),
        terminated=np.zeros(n, bool),
        truncated=np.isin(np.arange(n), np.cumsum(lengths) - 1),
        lengths=lengths,
        task_index=np.asarray(tasks if tasks is not None else np.arange(len(lengths)) % 5),
        quality=np.array([quality] * len(lengths), dtype=object),
    )


@pytest.fixture
def point_family():
    return seqmeta.get_family("point-robot")
