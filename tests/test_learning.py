"""Learning sanity (slow): on held-out Point-Robot goals, a prompt tells the model where to go.

A small prompt-conditioned model and the same model without prompts are trained on expert data of
the training goals, then act on the five held-out goals. Only the prompt (5 steps of another expert
episode of that goal, carrying its rewards) says where the goal is, so the prompted model must score
far above the unprompted one. The training loop here is deliberately minimal; ``seqmeta train`` is
the real one.
"""

import numpy as np
import pytest
import torch

import seqmeta
from seqmeta.data.collect import collect_dataset
from seqmeta.data.samplers import PromptSampler, WindowSampler, flatten_prompt


def train_and_score(data, use_prompt: bool, steps: int = 800) -> float:
    torch.manual_seed(0)
    family = data.family
    task_set = family.task_set()
    config = seqmeta.PromptDTConfig.from_dataset(
        data, hidden_size=64, num_layers=2, num_heads=1, context_length=20, dropout=0.0, use_prompt=use_prompt
    )
    model = seqmeta.PromptDTModel(config)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-4)
    windows = WindowSampler(data, 20, 64, tasks=task_set.train_indices, seed=0)
    prompts = PromptSampler(data, num_segments=1, segment_length=5, seed=0)
    for _ in range(steps):
        batch = windows.sample()
        prompt = flatten_prompt(prompts.sample(batch["task_index"], batch["episode_index"]))
        inputs = {k: torch.as_tensor(v) for k, v in batch.items() if k not in ("task_index", "episode_index")}
        loss = model(**inputs, prompt={k: torch.as_tensor(v) for k, v in prompt.items()}, return_loss=True).loss
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.eval()
    tasks = np.repeat(task_set.test_indices, 4)
    prompt = flatten_prompt(PromptSampler(data, 1, 5, seed=1).sample(tasks))
    agent = model.agent(len(tasks), prompts=prompt, target_returns=data.stats["return_max"])
    envs = [family.make_env(task_set.params[t]) for t in tasks]
    obs = np.stack([env.reset(seed=i)[0] for i, env in enumerate(envs)])
    reward, total = None, np.zeros(len(tasks))
    for _ in range(family.horizon):
        steps = [env.step(a) for env, a in zip(envs, agent.act(obs, reward), strict=True)]
        obs = np.stack([s[0] for s in steps])
        reward = np.array([s[1] for s in steps])
        total += reward
    return float(np.mean([family.normalized_score(total[tasks == t].mean(), t) for t in task_set.test_indices]))


@pytest.mark.slow
def test_prompt_beats_no_prompt_on_held_out_goals(tmp_path):
    data = collect_dataset("point-robot", "expert", str(tmp_path / "pr"), episodes_per_task=20, progress=False)
    prompted = train_and_score(data, use_prompt=True)
    unprompted = train_and_score(data, use_prompt=False)
    print(f"normalized score on held-out goals: prompted {prompted:.1f}, no prompt {unprompted:.1f}")
    assert prompted >= 60 and prompted - unprompted >= 30


@pytest.mark.slow
def test_finetuned_return_rises_with_more_trajectories(tmp_path):
    """MACAW's consistency: fine-tuning on more trajectories of held-out goals gives a higher return."""
    from seqmeta.configs import load_config
    from seqmeta.evaluation import evaluate_with_demos
    from seqmeta.finetune import FinetuneConfig, choose_episodes, finetune
    from seqmeta.trainer import TrainConfig, train

    collect_dataset("point-robot", "expert", str(tmp_path / "train"), episodes_per_task=20, progress=False)
    new = collect_dataset("point-robot", "expert", str(tmp_path / "new"), tasks="test", episodes_per_task=20, seed=5)
    recipe = load_config(TrainConfig, "training/point_robot.yaml")
    config = TrainConfig(**(vars(recipe) | dict(data=str(tmp_path / "train"), output_dir=str(tmp_path / "m"))))
    pretrained = train(TrainConfig(**(vars(config) | dict(max_steps=800, report_to="none"))))
    scores = {}
    for n in (1, 5, 20):
        tuned = finetune(
            FinetuneConfig(
                model=str(pretrained),
                data=str(new.path),
                output_dir=str(tmp_path / f"ft{n}"),
                method="full",
                tasks="test",
                trajectories=n,
                max_steps=500,
                learning_rate=3e-4,
                report_to="none",
            )
        )
        returns = evaluate_with_demos(
            seqmeta.PromptDTModel.from_pretrained(tuned), new, choose_episodes(new, "test", n), episodes=10, seed=2026
        )
        scores[n] = float(np.mean([new.family.normalized_score(r.mean(), t) for t, r in returns.items()]))
    print(f"normalized score on held-out goals after fine-tuning on N trajectories: {scores}")
    assert scores[1] < scores[5] < scores[20]
