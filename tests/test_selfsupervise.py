import json

import numpy as np
import pytest
import torch

from seqmeta.cli import main
from seqmeta.data.dataset import load_trajectories
from seqmeta.errors import ConfigError
from seqmeta.models import PromptDTModel
from seqmeta.selfsupervise import MixedPromptBatches, RewardLabeler, SelfSuperviseConfig, explore, self_supervise


@pytest.fixture
def pretrained(tiny_trained_model):
    return tiny_trained_model


def test_labels_equal_the_full_forward_pass(pretrained, point_robot_dataset):
    """Step-by-step labels (K-step windows) are the reward head of one pass over the whole episode."""
    model = PromptDTModel.from_pretrained(pretrained)
    rng = np.random.default_rng(0)
    n, steps, cfg = 3, 11, model.config  # longer than K = 4: the windows slide
    prompt = {
        "observation": rng.standard_normal((n, 5, cfg.state_dim)).astype(np.float32),
        "action": rng.uniform(-1, 1, (n, 5, cfg.act_dim)).astype(np.float32),
        "reward": rng.standard_normal((n, 5)).astype(np.float32),
        "return_to_go": rng.standard_normal((n, 5)).astype(np.float32),
        "timestep": np.tile(np.arange(5), (n, 1)),
        "attention_mask": np.ones((n, 5), bool),
    }
    obs = rng.standard_normal((n, steps, cfg.state_dim)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, steps, cfg.act_dim)).astype(np.float32)
    labeler = RewardLabeler(model, prompt)
    labels = np.stack([labeler.label(obs[:, t], act[:, t]) for t in range(steps)], 1)
    with torch.no_grad():
        out = model(
            observation=torch.as_tensor(np.concatenate([obs, np.zeros_like(obs[:, :1])], 1)),
            action=torch.as_tensor(np.concatenate([act, np.zeros_like(act[:, :1])], 1)),
            reward=torch.as_tensor(np.concatenate([labels, np.zeros((n, 1))], 1), dtype=torch.float32),
            return_to_go=torch.zeros(n, steps + 1),
            timestep=torch.arange(steps + 1).expand(n, -1),
            prompt={k: torch.as_tensor(v) for k, v in prompt.items()},
            hide_return=torch.ones(n, dtype=torch.bool),
        )
    np.testing.assert_allclose(labels, out.reward_preds[:, :steps].numpy(), atol=1e-5)


def test_explore_feeds_labels_not_true_rewards(pretrained, point_robot_dataset):
    model = PromptDTModel.from_pretrained(pretrained)
    kwargs = dict(rounds=2, episodes_per_task=2, seed=3, progress=False)
    predicted = explore(model, point_robot_dataset, [0, 1], labels="predicted", **kwargs)
    true = explore(model, point_robot_dataset, [0, 1], labels="true", **kwargs)
    for found in (predicted, true):
        episodes = found["episodes"]
        assert episodes.num_episodes == 2 * 2 * 2 and sorted(set(episodes.task_index)) == [0, 1]
        assert sorted(set(episodes.quality)) == ["online-r0", "online-r1"]
        assert found["returns"].shape == (2, 4)
    # The env's reward, recomputed from each stored step: -|s + clip(a) - goal| (Point-Robot, dense).
    goals = np.array([p["goal"] for p in point_robot_dataset.family.task_set().params])
    for found in (predicted, true):
        episodes = found["episodes"]
        goal = goals[np.repeat(episodes.task_index, episodes.lengths)]
        moved = episodes.observations + np.clip(episodes.actions, -0.1, 0.1)
        np.testing.assert_allclose(found["true_rewards"], -np.linalg.norm(moved - goal, axis=1), atol=1e-5)
    np.testing.assert_array_equal(true["episodes"].rewards, true["true_rewards"])  # labels=true: the env's
    assert not np.allclose(predicted["episodes"].rewards, predicted["true_rewards"])  # predicted: the model's
    # Round 0 is unprompted and the labels only enter after the first step: same first actions.
    np.testing.assert_array_equal(predicted["episodes"].actions[0], true["episodes"].actions[0])


def test_mixed_prompts_come_from_the_online_data_at_the_given_rate(pretrained, point_robot_dataset, tmp_path):
    model = PromptDTModel.from_pretrained(pretrained)
    from seqmeta.data.dataset import write_dataset

    found = explore(model, point_robot_dataset, [0, 1], rounds=1, episodes_per_task=2, progress=False)
    online = load_trajectories(write_dataset(found["episodes"], point_robot_dataset.family, tmp_path / "online"))
    online_obs = {tuple(row) for row in online.column("observation").round(5)}
    options = dict(segment_length=6, batch_size=64, num_prompt_segments=1, prompt_length=3, tasks=[0, 1], seed=0)
    for fraction, expected in ((1.0, 1.0), (0.0, 0.0), (0.5, 0.5)):
        batch = MixedPromptBatches(point_robot_dataset, online, fraction, **options).sample()
        prompt_obs = batch["prompt"]["observation"][:, -1].round(5)  # the last prompt step is never padding
        from_online = np.mean([tuple(row) in online_obs for row in prompt_obs])
        assert abs(from_online - expected) < 0.2, (fraction, from_online)


def test_self_supervise_verb_writes_labeled_data_and_a_new_model(pretrained, point_robot_dataset, tmp_path):
    out = tmp_path / "ss"
    argv = ["self-supervise", "--model", str(pretrained), "--data", str(point_robot_dataset.path)]
    argv += ["--output-dir", str(out), "--rounds", "2", "--episodes-per-task", "1", "--iterations", "2"]
    argv += ["--max-steps", "3", "--batch-size", "8", "--report-to", "none"]
    assert main(argv) == 0
    online = load_trajectories(out / "iteration_1" / "online")
    train_tasks = point_robot_dataset.family.task_set().train_indices
    assert sorted(set(online.episodes["task_index"].tolist())) == sorted(train_tasks)  # never a held-out task
    assert online.hf["reward_predicted"] == [True] * len(online)
    card = (out / "iteration_1" / "online" / "README.md").read_text()
    assert "reward_predicted" in card and "did not see the task parameter" in card
    report = json.loads((out / "self_supervise.json").read_text())
    assert [it["iteration"] for it in report["iterations"]] == [0, 1]
    assert -1.0 <= report["iterations"][0]["labels"]["correlation"] <= 1.0
    before, after = PromptDTModel.from_pretrained(pretrained), PromptDTModel.from_pretrained(out / "model")
    assert not torch.equal(before.action_head.weight, after.action_head.weight)
    # Run again: every stage is done and skipped; the model is the same.
    stamp = (out / "iteration_0" / "online" / "state.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "iteration_0" / "online" / "state.json").stat().st_mtime_ns == stamp
    again = PromptDTModel.from_pretrained(out / "model")
    assert torch.equal(after.action_head.weight, again.action_head.weight)


def test_controls_true_rewards_and_no_online_data(pretrained, point_robot_dataset, tmp_path):
    common = dict(model=str(pretrained), data=str(point_robot_dataset.path), rounds=1, episodes_per_task=1)
    common |= dict(iterations=1, max_steps=2, batch_size=8, report_to="none")
    self_supervise(SelfSuperviseConfig(**common, labels="true", output_dir=str(tmp_path / "true")))
    online = load_trajectories(tmp_path / "true" / "iteration_0" / "online")
    assert not any(online.hf["reward_predicted"])
    self_supervise(SelfSuperviseConfig(**common, labels="none", output_dir=str(tmp_path / "none")))
    assert not (tmp_path / "none" / "iteration_0" / "online").exists()
    assert (tmp_path / "none" / "model" / "config.json").exists()
    # A control run in another run's folder would reuse that run's stages as its own: refused.
    for change in ({"labels": "predicted"}, {"labels": "true", "seed": 1}):
        with pytest.raises(ConfigError, match="choose a new --output-dir"):
            self_supervise(SelfSuperviseConfig(**(common | change), output_dir=str(tmp_path / "true")))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": "oracle"}, "labels must be one of"),
        ({"rounds": 0}, "must be >= 1"),
        ({"online_prompt_fraction": 1.5}, "online_prompt_fraction"),
        ({"model": ""}, "needs --model"),
    ],
)
@pytest.mark.reliability("bad options", "clear error, nothing written")
def test_bad_settings_are_refused(pretrained, point_robot_dataset, tmp_path, change, message):
    values = dict(model=str(pretrained), data=str(point_robot_dataset.path), output_dir=str(tmp_path / "x"))
    with pytest.raises(ConfigError, match=message):
        self_supervise(SelfSuperviseConfig(**(values | change)))
