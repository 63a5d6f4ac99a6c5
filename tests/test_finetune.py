import json

import numpy as np
import pytest
import torch
from transformers import AutoModel

from seqmeta.cli import main
from seqmeta.configs import load_config
from seqmeta.data.collect import collect_dataset
from seqmeta.errors import ConfigError, TaskSelectionError
from seqmeta.finetune import FinetuneConfig, finetune


@pytest.fixture
def pretrained(tiny_trained_model):
    return tiny_trained_model


def tune(pretrained, data, out, **kwargs):
    values = dict(model=str(pretrained), data=str(data.path), output_dir=str(out), tasks="45,46", trajectories=2)
    values |= dict(max_steps=3, batch_size=8, report_to="none")
    return finetune(FinetuneConfig(**(values | kwargs)))


def test_finetune_verb_adapts_to_a_few_trajectories(pretrained, point_robot_dataset, tmp_path):
    argv = ["finetune", "--model", str(pretrained), "--data", str(point_robot_dataset.path)]
    argv += ["--output-dir", str(tmp_path / "ft"), "--tasks", "test", "--trajectories", "3", "--max-steps", "3"]
    assert main([*argv, "--report-to", "none"]) == 0
    model_dir = tmp_path / "ft" / "model"
    used = json.loads((model_dir / "finetune_data.json").read_text())
    episodes = point_robot_dataset.episodes
    assert sorted(used["episodes"]) == ["45", "46", "47", "48", "49"]
    for task, rows in used["episodes"].items():
        assert rows == np.flatnonzero(episodes["task_index"] == int(task))[:3].tolist()
    assert load_config(FinetuneConfig, model_dir / "finetune_config.yaml").trajectories == 3
    before, after = AutoModel.from_pretrained(pretrained), AutoModel.from_pretrained(model_dir)
    assert not torch.equal(before.action_head.weight, after.action_head.weight)
    assert after.config.family == "point-robot"


def test_lora_trains_only_adapters_and_merges_them(pretrained, point_robot_dataset, tmp_path):
    tuned = AutoModel.from_pretrained(tune(pretrained, point_robot_dataset, tmp_path / "lora", method="lora"))
    base = AutoModel.from_pretrained(pretrained)
    changed = {n for n, p in tuned.state_dict().items() if not torch.equal(p, base.state_dict()[n])}
    assert changed and all(n.split(".")[-2] in ("c_attn", "c_proj", "c_fc") for n in changed), changed
    assert set(tuned.state_dict()) == set(base.state_dict())  # merged: a plain model, no adapter weights


def test_awr_weighs_actions_by_advantage(pretrained, point_robot_dataset, tmp_path):
    full = AutoModel.from_pretrained(tune(pretrained, point_robot_dataset, tmp_path / "full", method="full"))
    flat = tune(pretrained, point_robot_dataset, tmp_path / "flat", method="awr", awr_beta=1e12)
    sharp = tune(pretrained, point_robot_dataset, tmp_path / "sharp", method="awr", awr_beta=0.01)
    # exp(A / beta) = 1 for a huge beta: exactly full fine-tuning. A small beta changes what is learned.
    assert torch.equal(AutoModel.from_pretrained(flat).action_head.weight, full.action_head.weight)
    assert not torch.equal(AutoModel.from_pretrained(sharp).action_head.weight, full.action_head.weight)


def test_one_trajectory_is_enough(pretrained, point_robot_dataset, tmp_path):
    model_dir = tune(pretrained, point_robot_dataset, tmp_path / "one", trajectories=1, tasks="45")
    first = int(np.flatnonzero(point_robot_dataset.episodes["task_index"] == 45)[0])
    assert json.loads((model_dir / "finetune_data.json").read_text())["episodes"] == {"45": [first]}


@pytest.mark.reliability("bad options", "clear error, nothing written")
def test_finetune_refuses_bad_input(pretrained, point_robot_dataset, tmp_path):
    with pytest.raises(TaskSelectionError, match=r"task 45 has 16 episodes.*asked for 99"):
        tune(pretrained, point_robot_dataset, tmp_path / "a", trajectories=99)
    with pytest.raises(ConfigError, match="method must be one of full, lora, awr"):
        tune(pretrained, point_robot_dataset, tmp_path / "b", method="dpo")
    cheetah = collect_dataset(
        "cheetah-vel", "random", str(tmp_path / "cv"), tasks=[2], episodes_per_task=1, progress=False
    )
    with pytest.raises(ConfigError, match=r"observations of width 2 and actions of width 2.*17 and 6"):
        tune(pretrained, cheetah, tmp_path / "c", tasks="2", trajectories=1)
