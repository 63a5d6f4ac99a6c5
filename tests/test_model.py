import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel

import seqmeta.models  # noqa: F401  (registers the Auto classes)
from seqmeta.agent import Agent
from seqmeta.models import PromptDTConfig, PromptDTModel
from seqmeta.models.prompt_dt.attention_prompt_dt import BATCHED_ATTENTION_FROM, step_attention, step_mask

S, A = 5, 3


def tiny(**overrides) -> PromptDTModel:
    torch.manual_seed(0)
    config = dict(
        state_dim=S,
        act_dim=A,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        dropout=0.0,
        context_length=4,
        state_mean=[0.5] * S,
        state_std=[2.0] * S,
        return_scale=10.0,
        action_low=[-2.0] * A,
        action_high=[1.0] * A,
    )
    config.update(overrides)
    return PromptDTModel(PromptDTConfig(**config)).eval()


def batch(b=2, t=7, p=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    hist = dict(
        observation=torch.randn(b, t, S, generator=g),
        action=torch.rand(b, t, A, generator=g) * 3 - 2,
        reward=torch.randn(b, t, generator=g),
        return_to_go=torch.randn(b, t, generator=g) * 10,
        timestep=torch.arange(t).repeat(b, 1) + 3,
    )
    prompt = dict(
        observation=torch.randn(b, p, S, generator=g),
        action=torch.rand(b, p, A, generator=g) * 3 - 2,
        reward=torch.randn(b, p, generator=g),
        return_to_go=torch.randn(b, p, generator=g),
        timestep=torch.arange(p).repeat(b, 1),
        attention_mask=torch.ones(b, p, dtype=torch.bool),
    )
    return hist, prompt


def test_shapes_bounds_and_loss():
    model = tiny()
    hist, prompt = batch()
    out = model(**hist, prompt=prompt, return_loss=True)
    assert out.action_preds.shape == (2, 7, A) and out.reward_preds.shape == (2, 7)
    assert (out.action_preds >= -2).all() and (out.action_preds <= 1).all()
    assert torch.isfinite(out.loss) and out.loss > 0
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_causality_future_steps_never_change_earlier_predictions():
    model = tiny()
    hist, prompt = batch()
    base = model(**hist, prompt=prompt)
    changed = {k: v.clone() for k, v in hist.items()}
    for key in ("observation", "action", "reward", "return_to_go"):
        changed[key][:, 4:] = changed[key][:, 4:] + 5.0
    out = model(**changed, prompt=prompt)
    torch.testing.assert_close(out.action_preds[:, :4], base.action_preds[:, :4], rtol=0, atol=1e-6)
    # r_hat_3 reads a_3 (changed) but r_hat_0..2 must not move
    torch.testing.assert_close(out.reward_preds[:, :3], base.reward_preds[:, :3], rtol=0, atol=1e-6)
    assert not torch.allclose(out.action_preds[:, 4:], base.action_preds[:, 4:])


def test_left_padding_is_isolated():
    model = tiny()
    hist, prompt = batch(t=5)
    padded = {k: torch.cat([torch.full_like(v[:, :3], 7), v], 1) for k, v in hist.items()}
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[:, :3] = False
    out = model(**padded, attention_mask=mask, prompt=prompt, return_loss=True)
    ref = model(**hist, prompt=prompt, return_loss=True)
    torch.testing.assert_close(out.action_preds[:, 3:], ref.action_preds, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.action_loss, ref.action_loss, rtol=1e-5, atol=1e-6)
    # padded prompt steps are ignored too
    prompt_padded = {k: torch.cat([torch.zeros_like(v[:, :2]) + 3, v], 1) for k, v in prompt.items()}
    prompt_padded["attention_mask"][:, :2] = False
    out = model(**hist, prompt=prompt_padded)
    torch.testing.assert_close(out.action_preds, ref.action_preds, rtol=0, atol=1e-5)


def test_the_prompt_matters_and_modes_switch_inputs_off():
    model = tiny()
    hist, prompt = batch()
    _, other = batch(seed=1)
    a = model(**hist, prompt=prompt).action_preds
    # Untrained, the prompt's effect is small but must be there (a masking bug would make it exactly 0).
    assert (a - model(**hist, prompt=other).action_preds).abs().max() > 1e-5
    no_prompt = tiny(use_prompt=False)
    torch.testing.assert_close(
        no_prompt(**hist, prompt=prompt).action_preds, no_prompt(**hist, prompt=other).action_preds
    )
    no_return = tiny(use_return=False)
    shifted = dict(hist, return_to_go=hist["return_to_go"] + 100)
    torch.testing.assert_close(
        no_return(**hist, prompt=prompt).action_preds, no_return(**shifted, prompt=prompt).action_preds
    )
    assert not torch.allclose(model(**hist, prompt=prompt).action_preds, model(**shifted, prompt=prompt).action_preds)


def test_save_and_auto_class_loading_are_exact(tmp_path):
    model = tiny(family="cheetah-vel", task_set="prompt-dt")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    assert AutoConfig.from_pretrained(tmp_path).model_type == "seqmeta_prompt_dt"
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, PromptDTModel)
    for (name, p), (_, q) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(p, q), name
    assert loaded.config.state_std == [2.0] * S and loaded.config.family == "cheetah-vel"
    hist, prompt = batch()
    assert torch.equal(model(**hist, prompt=prompt).action_preds, loaded(**hist, prompt=prompt).action_preds)


def test_attention_implementations_agree():
    hist, prompt = batch()
    model = tiny()
    eager = tiny()
    eager.set_attn_implementation("eager")
    assert eager.backbone.config._attn_implementation == "eager"
    torch.testing.assert_close(
        eager(**hist, prompt=prompt).action_preds, model(**hist, prompt=prompt).action_preds, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("batch_size", [3, BATCHED_ATTENTION_FROM])
def test_streaming_attention_is_sdpa_with_the_step_mask(batch_size, heads):
    """Both paths of the streaming step's attention (SDPA for few samples, batched products for many) give what
    SDPA gives with the same boolean mask, for the three tokens of a step and for the state token alone."""
    gen = torch.Generator().manual_seed(0)
    length, dim = 11, 8
    keys, values = (torch.randn(batch_size, heads, length, dim, generator=gen) for _ in range(2))
    query = torch.randn(batch_size, heads, 3, dim, generator=gen)
    key_valid = torch.rand(batch_size, length, generator=gen) > 0.4
    key_valid[:, 5:8] = True  # the step's own slots
    mask = step_mask(key_valid, 5)  # (B, 1, 3, L)
    for q, m in ((query, mask), (query[:, :, 2:], mask[:, :, 2:])):
        expected = F.scaled_dot_product_attention(q, keys, values, attn_mask=m, scale=0.3)
        torch.testing.assert_close(step_attention(q, keys, values, m, 0.3), expected, rtol=1e-5, atol=1e-6)
    assert not mask[:, 0, 0, 6].any() and mask[:, 0, 2, 5].all()  # causal among the step's tokens


def test_activation_checkpointing_recomputes_the_blocks_and_gives_the_same_gradients():
    hist, prompt = batch()
    recomputed, grads = {}, {}
    for checkpointing in (False, True):
        model = tiny().train()
        if checkpointing:
            model.activation_checkpointing_enable()
        calls = []
        for block in model.backbone.h:  # count each block's MLP runs (inside the checkpointed forward)
            block.mlp.forward = lambda *a, run=block.mlp.forward, seen=calls, **k: seen.append(1) or run(*a, **k)
        loss = model(**hist, prompt=prompt, return_loss=True).loss
        in_forward = len(calls)
        loss.backward()
        recomputed[checkpointing] = len(calls) - in_forward
        grads[checkpointing] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert recomputed == {False: 0, True: len(model.backbone.h)}  # the backward pass runs each block again
    assert grads[True].keys() == grads[False].keys()
    for name, grad in grads[False].items():
        torch.testing.assert_close(grads[True][name], grad, rtol=1e-5, atol=1e-6)


def test_forward_names_wrong_widths():
    model = tiny()
    hist, prompt = batch()
    with pytest.raises(ValueError, match=r"observation has shape \(2, 7, 6\); expected \(batch, steps, 5\)"):
        model(**dict(hist, observation=torch.zeros(2, 7, S + 1)), prompt=prompt)
    with pytest.raises(ValueError, match="action has shape"):
        model(**dict(hist, action=torch.zeros(2, 7, A + 2)), prompt=prompt)
    with pytest.raises(ValueError, match="prompt observation"):
        model(**hist, prompt=dict(prompt, observation=torch.zeros(2, 6, 2)))


@pytest.mark.reliability("bad models", "clear error, nothing written")
def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="state_mean has 2 entries"):
        PromptDTModel(PromptDTConfig(state_dim=3, act_dim=1, state_mean=[0.0, 0.0]))
    with pytest.raises(ValueError, match="divisible"):
        PromptDTModel(PromptDTConfig(state_dim=3, act_dim=1, hidden_size=30, num_heads=4))


def test_model_agent_is_numpy_in_numpy_out():
    # exactness of the streamed actions is tested in test_agent.py
    model = tiny()
    _, prompt = batch(b=2)
    agent = Agent(model, 2, prompts={k: v.numpy() for k, v in prompt.items()}, target_returns=5.0)
    action = agent.act(np.zeros((2, S), np.float32))
    assert action.shape == (2, A) and action.dtype == np.float32


def test_config_from_dataset_carries_the_normalization(point_robot_dataset):
    config = PromptDTConfig.from_dataset(point_robot_dataset, hidden_size=32, num_heads=1)
    stats = point_robot_dataset.stats
    assert (config.state_dim, config.act_dim, config.family) == (2, 2, "point-robot")
    assert config.state_mean == stats["observation_mean"] and config.return_scale == stats["return_scale"]
    assert np.allclose(config.action_low, [-0.1, -0.1]) and config.max_timestep == 20
    assert Agent(PromptDTModel(config), 3, prompts=None).config.hidden_size == 32


def small_batch(steps: int) -> dict[str, torch.Tensor]:
    """Two random histories of a 3-d state, 2-d action task."""
    return {
        "observation": torch.randn(2, steps, 3),
        "action": torch.rand(2, steps, 2) * 2 - 1,
        "reward": torch.randn(2, steps),
        "return_to_go": torch.randn(2, steps),
        "timestep": torch.arange(steps).repeat(2, 1),
    }


def test_hidden_returns_hide_the_return_and_train_the_value_head():
    torch.manual_seed(0)
    model = PromptDTModel(PromptDTConfig(state_dim=3, act_dim=2, hidden_size=16, num_layers=1, context_length=4))
    model.eval()
    batch = small_batch(steps=5)
    hidden = torch.tensor([True, False])
    out = model(**batch, hide_return=hidden, return_loss=True)
    other = model(**(batch | {"return_to_go": batch["return_to_go"] + 5.0}), hide_return=hidden, return_loss=True)
    # Sample 0 does not see its returns: neither its actions nor its value depend on them; sample 1 does.
    assert torch.equal(out.action_preds[0], other.action_preds[0]) and torch.equal(
        out.value_preds[0], other.value_preds[0]
    )
    assert not torch.allclose(out.action_preds[1], other.action_preds[1])
    # The value loss is measured on the hidden sample only.
    expected = ((out.value_preds[0] - batch["return_to_go"][0]) / model.config.return_scale).pow(2).mean()
    assert torch.allclose(out.value_loss, expected)
    # The new parameters get a gradient even when no return is hidden (DDP needs all of them used).
    model.train()
    model(**batch, return_loss=True).loss.backward()
    assert model.embed_unknown_return.weight.grad is not None and model.value_head.weight.grad is not None


def test_action_weights_scale_each_steps_action_loss():
    torch.manual_seed(0)
    model = PromptDTModel(PromptDTConfig(state_dim=3, act_dim=2, hidden_size=16, num_layers=1)).eval()
    batch = small_batch(steps=4)
    plain = model(**batch, return_loss=True).action_loss
    assert torch.allclose(
        model(**batch, action_weight=torch.full((2, 4), 3.0), return_loss=True).action_loss, 3 * plain
    )
    only_first = torch.zeros(2, 4)
    only_first[0, 0] = 8.0  # 8 of 8 steps' weight on one step
    err = ((model(**batch).action_preds - batch["action"]) ** 2).mean(-1)
    assert torch.allclose(model(**batch, action_weight=only_first, return_loss=True).action_loss, err[0, 0])
