import numpy as np
import pytest

from seqmeta.data.dataset import load_trajectories, write_dataset
from seqmeta.data.samplers import PromptSampler, WindowSampler
from seqmeta.errors import TaskSelectionError

from .conftest import make_episodes


@pytest.fixture
def dataset(tmp_path, point_family):
    # 12 episodes: lengths 5..60, tasks 0..3 (three episodes each); obs = (episode, step)
    lengths = [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60]
    eps = make_episodes(lengths, tasks=np.arange(12) % 4)
    return load_trajectories(write_dataset(eps, point_family, tmp_path / "d"))


def _check_slice(batch, i, dataset, length):
    """Brute-force reference: the slice must be the episode's own steps, right-aligned."""
    ep = dataset.episodes
    e = batch["episode_index"][i]
    mask = batch["attention_mask"][i]
    steps = batch["timestep"][i][mask]
    assert np.array_equal(steps, np.arange(steps[0], steps[0] + len(steps)))  # contiguous
    assert mask[-1] and (not mask.any() or mask[np.argmax(mask) :].all())  # padding only on the left
    assert len(steps) == min(length, steps[-1] + 1)
    rows = ep["start"][e] + steps
    np.testing.assert_array_equal(batch["observation"][i][mask], dataset.column("observation")[rows])
    np.testing.assert_array_equal(batch["action"][i][mask], dataset.column("action")[rows])
    np.testing.assert_array_equal(batch["return_to_go"][i][mask], dataset.column("return_to_go")[rows])
    assert (batch["observation"][i][~mask] == 0).all() and (batch["reward"][i][~mask] == 0).all()
    # Each step carries its predecessor's action and reward, zero before the episode's first step.
    prev_ok = mask & (batch["timestep"][i] > 0)
    np.testing.assert_array_equal(batch["prev_action"][i][prev_ok], dataset.column("action")[rows[steps > 0] - 1])
    np.testing.assert_array_equal(batch["prev_reward"][i][prev_ok], dataset.column("reward")[rows[steps > 0] - 1])
    assert (batch["prev_action"][i][~prev_ok] == 0).all()


def test_windows_are_contiguous_left_padded_slices(dataset):
    sampler = WindowSampler(dataset, context_length=8, batch_size=64, seed=0)
    batch = sampler.sample()
    assert batch["observation"].shape == (64, 8, 2) and batch["attention_mask"].shape == (64, 8)
    for i in range(64):
        _check_slice(batch, i, dataset, 8)
        assert batch["task_index"][i] == dataset.episodes["task_index"][batch["episode_index"][i]]
    assert (~batch["attention_mask"]).any()  # short episodes and early steps do get padded


def test_episodes_are_chosen_in_proportion_to_their_length(dataset):
    sampler = WindowSampler(dataset, context_length=4, batch_size=20_000, seed=1)
    counts = np.bincount(sampler.sample()["episode_index"], minlength=12)
    lengths = dataset.episodes["length"]
    np.testing.assert_allclose(counts / counts.sum(), lengths / lengths.sum(), atol=0.01)


def test_sampler_is_seeded_and_resumable(dataset):
    a, b = WindowSampler(dataset, 8, 16, seed=3), WindowSampler(dataset, 8, 16, seed=3)
    np.testing.assert_array_equal(a.sample()["observation"], b.sample()["observation"])
    state = a.state_dict()
    expected = a.sample()["observation"]
    c = WindowSampler(dataset, 8, 16, seed=99)
    c.load_state_dict(state)
    np.testing.assert_array_equal(c.sample()["observation"], expected)
    assert not np.array_equal(WindowSampler(dataset, 8, 16, seed=4).sample()["observation"], expected)


def test_windows_only_come_from_the_requested_tasks(dataset):
    batch = WindowSampler(dataset, 8, 256, tasks=[1, 3], seed=0).sample()
    assert set(batch["task_index"].tolist()) == {1, 3}
    with pytest.raises(TaskSelectionError):
        WindowSampler(dataset, 8, 4, tasks=[7])


def test_prompts_come_from_other_episodes_of_the_same_task(dataset):
    windows = WindowSampler(dataset, 8, 200, seed=0).sample()
    prompts = PromptSampler(dataset, num_segments=3, segment_length=12, seed=0)
    batch = prompts.sample(windows["task_index"], windows["episode_index"])
    assert batch["observation"].shape == (200, 3, 12, 2) and batch["reward"].shape == (200, 3, 12)
    ep = dataset.episodes
    prompt_episode = batch["episode_index"]
    assert (ep["task_index"][prompt_episode] == windows["task_index"][:, None]).all()
    assert (prompt_episode != windows["episode_index"][:, None]).all()
    flat = {k: v.reshape(600, *v.shape[2:]) for k, v in batch.items() if k != "episode_index"}
    flat["episode_index"] = prompt_episode.reshape(600)
    for i in range(0, 600, 7):
        _check_slice(flat, i, dataset, 12)
    # The 5-step episode (task 0) is shorter than a segment: taken whole.
    short = flat["episode_index"] == 0
    assert short.any() and (flat["attention_mask"][short].sum(1) == 5).all()


def test_prompt_needs_a_second_episode_of_the_task(tmp_path, point_family):
    eps = make_episodes([10, 10, 10], tasks=[0, 0, 1])
    d = load_trajectories(write_dataset(eps, point_family, tmp_path / "d"))
    prompts = PromptSampler(d, 1, 5)
    assert prompts.sample(np.array([0]), np.array([0]))["episode_index"].item() == 1
    with pytest.raises(TaskSelectionError, match=r"tasks \[1\] have too few episodes"):
        prompts.sample(np.array([1]), np.array([2]))
    assert prompts.sample(np.array([1]))["episode_index"].item() == 2  # no exclusion: its own episode will do


def test_samplers_restricted_to_some_episodes(tmp_path, point_family):
    eps = make_episodes([10, 10, 10, 10], tasks=[0, 0, 0, 1])
    d = load_trajectories(write_dataset(eps, point_family, tmp_path / "d"))
    windows = WindowSampler(d, 4, 64, episodes=[1, 3])
    assert set(windows.sample()["episode_index"]) == {1, 3}
    prompts = PromptSampler(d, 2, 3, episodes=[0, 2])
    drawn = prompts.sample(np.zeros(64, int), np.zeros(64, int))["episode_index"]
    assert (drawn == 2).all()  # episode 0 excluded, 1 outside the pool
    drawn = prompts.sample(np.zeros(64, int), np.ones(64, int))["episode_index"]  # 1 is not in the pool
    assert set(drawn.ravel()) == {0, 2}


def test_prompt_from_start_takes_the_first_steps_of_an_episode(point_robot_dataset):
    sampler = PromptSampler(point_robot_dataset, num_segments=3, segment_length=5, seed=0, start_segment=True)
    prompt = sampler.sample(np.array([0, 1, 2, 3]))
    assert (prompt["timestep"][:, 0] == np.arange(5)).all()  # segment 0: steps 0..4
    assert (prompt["timestep"][:, 1:, -1] > 4).any()  # the others anywhere


def test_hidden_prompt_samples_take_segments_from_their_own_pool(point_robot_dataset):
    from seqmeta.trainer import EpisodeBatches

    data = point_robot_dataset
    quality = data.episodes["quality"]
    batches = EpisodeBatches(
        data,
        segment_length=6,
        batch_size=256,
        num_prompt_segments=1,
        prompt_length=4,
        prompt_dropout=0.3,
        segment_episodes=np.flatnonzero(quality == "expert"),
        no_prompt_episodes=np.flatnonzero(quality == "random"),
        seed=0,
    )
    batch = batches.sample()
    hidden = ~batch["prompt"]["attention_mask"].any(axis=1)
    assert 0.15 < hidden.mean() < 0.45
    # random actions are uniform in the box; the expert's are clipped towards the goal: tell them apart by
    # matching each sample's first action to the rows of its pool
    rows = {
        q: data.column("action")[np.isin(np.repeat(quality, data.episodes["length"]), [q])]
        for q in ("expert", "random")
    }
    first = batch["action"][:, -1]
    in_pool = {q: (np.abs(first[:, None] - rows[q][None]).sum(-1) < 1e-7).any(1) for q in rows}
    assert in_pool["random"][hidden].all() and in_pool["expert"][~hidden].all()
