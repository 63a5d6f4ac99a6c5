import numpy as np
import torch
from transformers import AutoModel

from seqmeta.cli import main
from seqmeta.trainer import TrainConfig, train


def tiny_config(data, out, steps) -> TrainConfig:
    return TrainConfig(
        data=str(data),
        output_dir=str(out),
        max_steps=steps,
        batch_size=8,
        segment_length=10,
        context_length=6,
        hidden_size=32,
        num_layers=2,
        num_heads=1,
        dropout=0.1,
        checkpoint_every=4,
        warmup_steps=2,
    )


def test_resumed_training_ends_with_the_weights_of_an_uninterrupted_run(point_robot_dataset, tmp_path):
    straight = train(tiny_config(point_robot_dataset.path, tmp_path / "a", 8))
    train(tiny_config(point_robot_dataset.path, tmp_path / "b", 4))  # stops after its step-4 checkpoint
    resumed = train(tiny_config(point_robot_dataset.path, tmp_path / "b", 8), resume=True)
    a, b = AutoModel.from_pretrained(straight), AutoModel.from_pretrained(resumed)
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), name
    fresh = AutoModel.from_pretrained(train(tiny_config(point_robot_dataset.path, tmp_path / "c", 4)))
    assert not torch.equal(fresh.action_head.weight, a.action_head.weight)  # the 4 extra steps did change it
    assert (resumed / "train_config.json").exists()
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["checkpoint_0", "checkpoint_1"]


def test_train_verb_writes_a_model_the_agent_runs(point_robot_dataset, tmp_path):
    argv = [
        "train",
        "--data",
        str(point_robot_dataset.path),
        "--output-dir",
        str(tmp_path / "t"),
        "--max-steps",
        "3",
        "--batch-size",
        "4",
        "--hidden-size",
        "16",
        "--num-layers",
        "1",
        "--num-heads",
        "1",
        "--no-use-return",
    ]
    assert main(argv) == 0
    model = AutoModel.from_pretrained(tmp_path / "t" / "model")
    assert model.config.use_return is False and model.config.family == "point-robot"
    agent = AutoModel.from_pretrained(tmp_path / "t" / "model").agent(
        2,
        prompts={
            k: np.zeros((2, 5, 2)) if k in ("observation", "action") else np.zeros((2, 5))
            for k in ("observation", "action", "reward", "return_to_go")
        }
        | {"timestep": np.zeros((2, 5), int), "attention_mask": np.ones((2, 5), bool)},
    )
    assert agent.act(np.zeros((2, 2))).shape == (2, 2)
