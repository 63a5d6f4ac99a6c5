import os

import numpy as np
import pytest

import seqmeta
from seqmeta.data.collect import collect_dataset
from seqmeta.data.episodes import Episodes
from tests.hub_server import HubServer


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


@pytest.fixture(scope="session")
def tiny_trained_model(point_robot_dataset, tmp_path_factory):
    """A `seqmeta train` model folder: a few steps of a tiny Prompt-DT on Point-Robot (K = 4)."""
    from seqmeta.trainer import TrainConfig, train

    config = TrainConfig(
        data=str(point_robot_dataset.path),
        output_dir=str(tmp_path_factory.mktemp("tiny-run")),
        max_steps=4,
        batch_size=8,
        segment_length=8,
        context_length=4,
        hidden_size=32,
        num_layers=1,
        report_to="none",
    )
    return train(config)


@pytest.fixture
def point_family():
    return seqmeta.get_family("point-robot")


@pytest.fixture
def hub_server():
    """A loopback Hub (tests/hub_server.py) for one test."""
    with HubServer() as server:
        yield server


@pytest.fixture
def hub_env(hub_server, tmp_path) -> dict[str, str]:
    """Environment for client code run in a subprocess against ``hub_server``: huggingface_hub, datasets and
    transformers read it at import. Inherited HF_* variables (HF_HUB_OFFLINE, caches, tokens) are dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    return env | {
        "HF_ENDPOINT": hub_server.url,
        "HF_HUB_DISABLE_XET": "1",  # uploads use the LFS basic transfer that the server speaks
        "HF_TOKEN": "hf_fake_token_for_the_loopback_hub",
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",  # else load_dataset sends a HEAD to s3.amazonaws.com
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
