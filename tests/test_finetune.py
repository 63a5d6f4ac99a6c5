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


def _inputs(config, b=3, t=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    S, A = config.state_dim, config.act_dim

    def steps(n):
        return dict(
            observation=torch.randn(b, n, S, generator=g),
            action=torch.rand(b, n, A, generator=g) * 2 - 1,
            reward=torch.randn(b, n, generator=g),
            return_to_go=torch.randn(b, n, generator=g),
            timestep=torch.arange(n).repeat(b, 1),
        )

    prompt = steps(4) | {"attention_mask": torch.ones(b, 4, dtype=torch.bool)}
    return steps(t) | {"prompt": prompt} if config.use_prompt else steps(t)


def test_lora_trains_only_adapters_and_the_merged_model_acts_like_the_adapted_one(
    pretrained, point_robot_dataset, tmp_path, monkeypatch
):
    import seqmeta.finetune as ft

    seen = {}
    save_model = ft.save_model

    def save_after_recording(accelerator, model, *args, **kwargs):
        peft_model = accelerator.unwrap_model(model).eval()
        assert hasattr(peft_model, "merge_and_unload")  # still the adapters, not yet merged
        with torch.no_grad():
            seen["adapted"] = peft_model(**_inputs(peft_model.config)).action_preds
        return save_model(accelerator, model, *args, **kwargs)

    monkeypatch.setattr(ft, "save_model", save_after_recording)
    tuned = AutoModel.from_pretrained(
        tune(pretrained, point_robot_dataset, tmp_path / "lora", method="lora", max_steps=10, learning_rate=0.01)
    )
    base = AutoModel.from_pretrained(pretrained)
    changed = {n for n, p in tuned.state_dict().items() if not torch.equal(p, base.state_dict()[n])}
    assert changed and all(n.split(".")[-2] in ("c_attn", "c_proj", "c_fc") for n in changed), changed
    assert set(tuned.state_dict()) == set(base.state_dict())  # merged: a plain model, no adapter weights
    with torch.no_grad():
        merged = tuned.eval()(**_inputs(tuned.config)).action_preds
        untouched = base.eval()(**_inputs(base.config)).action_preds
    torch.testing.assert_close(merged, seen["adapted"], rtol=1e-4, atol=1e-5)  # the merge kept what was learned
    assert not torch.allclose(merged, untouched, atol=1e-5)  # and something was learned


def test_awr_weighs_actions_by_advantage(pretrained, point_robot_dataset, tmp_path, monkeypatch):
    import seqmeta.finetune as ft

    fit, weighers = ft.fit, []
    monkeypatch.setattr(ft, "fit", lambda *a, **k: weighers.append(k["action_weights"]) or fit(*a, **k))
    tuned = tune(pretrained, point_robot_dataset, tmp_path / "awr", method="awr", awr_beta=0.5, awr_max_weight=50.0)
    # The weight of an action is exp((R - V(s)) / (beta * return_scale)), V from the model before tuning:
    # raising the return that followed an action by beta * return_scale multiplies its weight by e.
    model = AutoModel.from_pretrained(pretrained).eval()
    scale = 0.5 * model.config.return_scale
    batch = _inputs(model.config, b=4) | {"hide_return": torch.zeros(4, dtype=torch.bool)}
    with torch.no_grad():
        value = model(**(batch | {"hide_return": torch.ones(4, dtype=torch.bool)})).value_preds
    offsets = torch.tensor([-1.0, 0.0, 1.0, 2.0])[:, None]
    batch["return_to_go"] = value + offsets * scale
    weights = weighers[0](batch)
    torch.testing.assert_close(weights, torch.exp(offsets).expand_as(weights), rtol=1e-4, atol=1e-5)
    batch["return_to_go"] = value + 10 * scale
    assert torch.equal(weighers[0](batch), torch.full_like(weights, 50.0))  # capped at awr_max_weight
    # With a huge beta every weight is 1: exactly full fine-tuning.
    full = AutoModel.from_pretrained(tune(pretrained, point_robot_dataset, tmp_path / "full", method="full"))
    flat = tune(pretrained, point_robot_dataset, tmp_path / "flat", method="awr", awr_beta=1e12)
    assert torch.equal(AutoModel.from_pretrained(flat).action_head.weight, full.action_head.weight)
    assert not torch.equal(AutoModel.from_pretrained(tuned).action_head.weight, full.action_head.weight)


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
