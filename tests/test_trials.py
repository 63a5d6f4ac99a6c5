"""Trials: the search behavior's episodes with memory, stored in order, and prompts cut from them."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from seqmeta.data.collect import collect_dataset, collect_episodes
from seqmeta.data.dataset import load_trajectories
from seqmeta.data.samplers import PromptSampler
from seqmeta.errors import ConfigError, DatasetFormatError
from seqmeta.prompts import EpisodePool, cut_prompts
from seqmeta.tasks import get_family
from seqmeta.trainer import EpisodeBatches
from tests.conftest import make_episodes


@pytest.fixture(scope="module")
def search_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "sparse"
    return collect_dataset("point-robot-sparse", "search,expert", str(out), episodes_per_task=6, progress=False)


def test_search_trials_are_numbered_and_end_as_the_expert_once_found():
    family = get_family("point-robot-sparse")
    params = list(family.task_set().params)
    search = collect_episodes(family, "search", params, 4, progress=False)
    expert = collect_episodes(family, "expert", params, 1, progress=False)
    assert search.trial_episode.tolist() == [0, 1, 2, 3] * len(params)
    returns = search.episode_returns.reshape(len(params), 4)
    # Round 0 knows nothing: it finds some goals late and misses others; by the last episode of a trial
    # nearly every goal has been found and the behavior is the expert's from the first step (its actions
    # noisy, up to 0.8 of the half range: slower than the expert, so short of the expert's return).
    assert (returns[:, 0] < 0.5 * expert.episode_returns).mean() > 0.5
    assert (returns[:, 3] > 0).mean() > 0.9 and (returns[:, 3] > 0.5 * expert.episode_returns).mean() > 0.85
    # Trials resume the search: on average each episode does better than the one before, until all are found.
    means = returns.mean(0)
    assert means[0] < means[1] < means[2] and means[3] > means[2] - 0.5


def test_search_goes_to_the_end_of_its_range():
    """The goal past the last candidate (0 degrees; the training goals end at 7.3): a path that turns away from
    the last candidate once near it never comes within the reward radius there, so most trials never found it."""
    family = get_family("point-robot-sparse")
    trials = collect_episodes(family, "search", [{"goal": [1.0, 0.0]}] * 20, 4, progress=False)
    expert = collect_episodes(family, "expert", [{"goal": [1.0, 0.0]}], 1, progress=False)
    last = trials.episode_returns[trials.trial_episode == 3]
    assert (last > 0).all() and (last > 0.5 * expert.episode_returns[0]).mean() >= 0.9


def test_search_moves_with_noise_but_stores_the_actions_it_meant():
    """DART: the envs are stepped with noisy actions (varied trials); the data keeps the plan's clean actions,
    so a model imitating it moves as fast and as straight as the plan."""
    from seqmeta.behavior.policies import SearchPolicy

    family = get_family("point-robot-sparse")
    search = collect_episodes(family, "search", [family.task_set().params[0]], 8, progress=False)
    first = SearchPolicy(family.make_env(family.task_set().params[0]).action_space, 1, None, family).candidates[0]
    obs, actions = search.observations, search.actions
    for start, n in zip(search.starts, search.lengths, strict=True):
        steps = slice(int(start), int(start + n - 1))
        moved = obs[start + 1 : start + n] - obs[steps]  # what the env did: the noisy actions
        if search.trial_episode[search.starts.tolist().index(start)] == 0:  # heading for the first candidate
            np.testing.assert_allclose(actions[start], np.clip(first - obs[start], -0.1, 0.1), atol=1e-6)
        assert np.abs(actions[steps]).max() <= 0.1 + 1e-7
    assert not np.allclose(moved, actions[steps], atol=1e-4)  # the noise was there, and not recorded


def test_behaviors_without_memory_have_no_trials():
    family = get_family("point-robot-sparse")
    episodes = collect_episodes(family, "expert", list(family.task_set().params)[:3], 5, progress=False)
    assert not episodes.trial_episode.any()


def test_search_is_offered_only_where_the_family_has_a_plan(tmp_path):
    from seqmeta.errors import BehaviorPolicyError

    with pytest.raises(BehaviorPolicyError, match="point-robot has no search plan"):
        collect_dataset("point-robot", "search", str(tmp_path / "d"), episodes_per_task=2, progress=False)


@pytest.mark.reliability("bad data", "clear error, nothing written")
def test_trials_survive_the_dataset_and_are_checked_on_load(search_data, tmp_path):
    ep = search_data.episodes
    search = ep["quality"] == "search"
    assert ep["trial_episode"][search].tolist() == [0, 1, 2, 3, 0, 1] * 50
    assert not ep["trial_episode"][~search].any()
    assert "trial_episode" in search_data.meta.extra_columns
    # A trial numbered out of order (episodes shuffled by hand) is refused by name.
    import datasets

    bad = tmp_path / "bad"
    hf = search_data.hf
    values = np.asarray(hf["trial_episode"])
    values[values == 2] = 3
    hf.remove_columns("trial_episode").add_column("trial_episode", values.tolist()).save_to_disk(str(bad))
    meta = json.loads((search_data.path / "seqmeta.json").read_text())
    meta.pop("checksums")  # this hand-made copy has new data files; their old sums would refuse it first
    (bad / "seqmeta.json").write_text(json.dumps(meta))
    assert datasets.load_from_disk(str(bad)).num_rows == hf.num_rows
    with pytest.raises(DatasetFormatError, match="trial_episode column does not number contiguous trials"):
        load_trajectories(bad)


def test_trial_prompts_come_from_the_latest_earlier_episodes_of_the_trial(search_data):
    ep = search_data.episodes
    rows = np.flatnonzero(ep["quality"] == "search")[:6]
    sampler = PromptSampler(search_data, num_segments=3, segment_length=20, seed=0)
    prompt = sampler.sample_trial(rows)
    seen = prompt["attention_mask"].any(-1)  # (B, J): which segments show an episode
    assert seen.sum(1).tolist() == [0, 1, 2, 3, 0, 1]
    for i, row in enumerate(rows):
        k = ep["trial_episode"][row]
        shown = prompt["episode_index"][i][seen[i]].tolist()
        assert shown == list(range(row - min(k, 3), row))  # oldest first, all of the trial, none of another


def test_a_model_trained_on_trials_is_prompted_with_the_latest_episodes():
    """Its own earlier rounds, or demos: one segment from each of the latest J, as in training."""
    config = SimpleNamespace(num_prompt_segments=3, prompt_length=20, prompt_from_start=False, prompt_from_trial=True)
    episodes = make_episodes([20] * 6, tasks=[0, 1, 0, 0, 1, 0])  # env 0 ran episodes 0, 2, 3, 5; env 1 ran 1, 4
    prompt = cut_prompts(config, EpisodePool(episodes), np.array([0, 1, 1]), seed=0)
    episode_of = prompt["observation"][..., 0].reshape(3, 3, 20)[:, :, 0]  # observations encode the episode
    shown = prompt["attention_mask"].reshape(3, 3, 20).all(-1)
    assert episode_of[0].tolist() == [2, 3, 5] and shown[0].all()
    assert episode_of[1][1:].tolist() == [1, 4] and shown[1].tolist() == [False, True, True]
    assert not prompt["attention_mask"].reshape(3, 3, 20)[1, 0].any()  # wholly masked, not partly
    # A model trained on ordinary prompts draws segments among the episodes instead.
    drawn = cut_prompts(
        SimpleNamespace(**{**vars(config), "prompt_from_trial": False}), EpisodePool(episodes), np.array([1]), seed=0
    )
    assert drawn["attention_mask"].all()


def test_prompt_from_trial_needs_trials(point_robot_dataset):
    with pytest.raises(ConfigError, match="prompt_from_trial needs trials"):
        EpisodeBatches(
            point_robot_dataset,
            segment_length=5,
            batch_size=4,
            num_prompt_segments=1,
            prompt_length=5,
            prompt_from_trial=True,
        )


def test_corrections_are_the_models_own_trials_labeled_by_the_behavior(search_data, tmp_path, capsys):
    from seqmeta.behavior.policies import SearchPolicy
    from seqmeta.cli import main
    from seqmeta.corrections import collect_corrections
    from seqmeta.models import PromptDTConfig, PromptDTModel

    family = get_family("point-robot-sparse")
    config = PromptDTConfig.from_dataset(
        search_data, hidden_size=16, num_layers=1, prompt_from_trial=True, num_prompt_segments=3, prompt_length=20
    )
    model = PromptDTModel(config).eval()
    params = [family.task_set().params[t] for t in (3, 45)]
    episodes = collect_corrections(model, family, "search-corrections", params, 8, [3, 45], progress=False)
    assert episodes.task_index.tolist() == [3] * 8 + [45] * 8
    assert episodes.trial_episode.tolist() == [0, 1, 2, 3] * 4 and set(episodes.quality) == {"search-corrections"}
    first = SearchPolicy(family.action_space, 1, None, family).candidates[0]
    starts = episodes.starts[episodes.trial_episode == 0]
    obs, actions = episodes.observations, episodes.actions
    # Each trial starts at the origin knowing nothing: the behavior's label heads for its first candidate.
    np.testing.assert_allclose(actions[starts], np.clip(first - obs[starts], -0.1, 0.1), atol=1e-6)
    # The states are the (untrained, noisy) model's own: where it went is not where the labels point.
    moved = obs[starts + 1] - obs[starts]
    assert not np.allclose(moved, actions[starts], atol=1e-3)
    with pytest.raises(ConfigError, match="multiple of 4"):
        collect_corrections(model, family, "search-corrections", params, 6, [3, 45], progress=False)
    with pytest.raises(ConfigError, match="ends with -corrections"):
        collect_corrections(model, family, "search", params, 8, [3, 45], progress=False)
    wide = PromptDTModel(PromptDTConfig(state_dim=3, act_dim=2, hidden_size=16, num_layers=1)).eval()
    with pytest.raises(ConfigError, match="observations of width 3"):
        collect_corrections(wide, family, "search-corrections", params, 8, [3, 45], progress=False)
    # Through the CLI: the dataset holds the behavior's data and the corrections, both trials.
    model.save_pretrained(tmp_path / "m")
    argv = ["collect", "--family", "point-robot-sparse", "--quality", "search,search-corrections", "--tasks", "3,45"]
    argv += ["--episodes-per-task", "4", "--out", str(tmp_path / "d")]
    assert main(argv) == 2 and "--acting-model" in capsys.readouterr().err and not (tmp_path / "d").exists()
    assert main([*argv, "--acting-model", str(tmp_path / "m")]) == 0
    data = load_trajectories(tmp_path / "d")
    assert set(data.meta.qualities) == {"search", "search-corrections"}
    behavior = data.meta.qualities["search-corrections"]["behavior"]
    assert "labeled by search" in behavior and str(tmp_path / "m") in behavior


def test_corrections_of_more_tasks_than_the_family_runs_at_once_come_in_groups(search_data, monkeypatch):
    from seqmeta.corrections import collect_corrections
    from seqmeta.models import PromptDTConfig, PromptDTModel

    family = get_family("point-robot-sparse")
    config = PromptDTConfig.from_dataset(search_data, hidden_size=16, num_layers=1, context_length=4)
    model = PromptDTModel(config).eval()
    params = list(family.task_set().params)[:3]
    import seqmeta.evaluation as ev

    sizes, run = [], ev.run_episodes
    monkeypatch.setattr(ev, "run_episodes", lambda envs, *a, **k: sizes.append(len(envs)) or run(envs, *a, **k))
    monkeypatch.setitem(family.__dict__, "max_envs", 4)  # 2 trials per task: 2 tasks at a time
    out = collect_corrections(model, family, "search-corrections", params, 8, [4, 5, 6], seed=0, progress=False)
    assert sizes == [4] * 4 + [2] * 4  # 4 rounds of the first 2 tasks' 4 envs, then of the last task's 2
    assert out.task_index.tolist() == [4] * 8 + [5] * 8 + [6] * 8 and out.trial_episode.tolist() == [0, 1, 2, 3] * 6
    assert (out.quality == "search-corrections").all()
