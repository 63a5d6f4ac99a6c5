"""Learning sanity (slow), through the real trainer, evaluator and fine-tuning on held-out Point-Robot goals.

Only a prompt (5 steps of an expert episode of that goal, carrying its rewards) says where a held-out
goal is, so a prompted model must score far above the same recipe trained without prompts.
"""

import numpy as np
import pytest

import seqmeta
from seqmeta.configs import load_config
from seqmeta.data.collect import collect_dataset
from seqmeta.evaluation import EvalProtocol, evaluate
from seqmeta.recipes import recipes_dir
from seqmeta.trainer import TrainConfig, train

RECIPES = recipes_dir()


def recipe(data, out, **kwargs) -> TrainConfig:
    values = dict(data=str(data), output_dir=str(out), max_steps=800, report_to="none") | kwargs
    return load_config(TrainConfig, RECIPES / "point_robot.yaml", values)


@pytest.mark.slow
def test_prompt_beats_no_prompt_on_held_out_goals(tmp_path):
    data = collect_dataset("point-robot", "expert", str(tmp_path / "pr"), episodes_per_task=20, progress=False)
    scores = {}
    for name, use_prompt in (("prompted", True), ("no prompt", False)):
        model = seqmeta.PromptDTModel.from_pretrained(train(recipe(data.path, tmp_path / name, use_prompt=use_prompt)))
        protocol = EvalProtocol(data=str(data.path), prompt_trajectories="1" if use_prompt else "0", episodes=10)
        scores[name] = evaluate(model, protocol, progress=False)["settings"][0]["normalized"]
    print(f"normalized score on held-out goals: {scores}")
    assert scores["prompted"] >= 60 and scores["prompted"] - scores["no prompt"] >= 30


@pytest.mark.slow
def test_finetuned_return_rises_with_more_trajectories(tmp_path):
    """MACAW's consistency: fine-tuning on more trajectories of held-out goals gives a higher return."""
    from seqmeta.evaluation import evaluate_with_demos
    from seqmeta.finetune import FinetuneConfig, choose_episodes, finetune

    collect_dataset("point-robot", "expert", str(tmp_path / "train"), episodes_per_task=20, progress=False)
    new = collect_dataset("point-robot", "expert", str(tmp_path / "new"), tasks="test", episodes_per_task=20, seed=5)
    pretrained = train(recipe(tmp_path / "train", tmp_path / "m"))
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


@pytest.mark.slow
def test_own_exploration_beats_no_prompt_on_held_out_goals(tmp_path):
    """Adapting without demonstrations: round 0 sweeps (no prompt), rounds 1-2 read the agent's own
    earlier episodes and must act far better than round 0 and than a model trained without prompts."""
    qualities = "expert,medium,random,explore,sweep"
    data = collect_dataset("point-robot", qualities, str(tmp_path / "pr"), episodes_per_task=6, progress=False)
    own = dict(
        segment_quality="expert",
        num_prompt_segments=2,
        prompt_length=5,
        prompt_from_start=True,
        prompt_dropout=0.2,
        no_prompt_quality="sweep",
    )
    model = seqmeta.load_model(train(recipe(data.path, tmp_path / "own", **own)))
    protocol = EvalProtocol(data=str(data.path), prompt_source="own", prompt_trajectories="0,1,2", episodes=10)
    rounds = [s["normalized"] for s in evaluate(model, protocol, progress=False)["settings"]]
    baseline = seqmeta.load_model(train(recipe(data.path, tmp_path / "np", use_prompt=False, segment_quality="expert")))
    no_prompt = evaluate(
        baseline, EvalProtocol(data=str(data.path), prompt_trajectories="0", episodes=10), progress=False
    )
    no_prompt_score = no_prompt["settings"][0]["normalized"]
    print(f"own rounds {rounds}, model without prompts {no_prompt_score}")
    assert np.mean(rounds[1:]) >= rounds[0] + 30 and np.mean(rounds[1:]) >= no_prompt_score + 30


@pytest.mark.slow
def test_own_exploration_finds_sparse_goals_a_model_without_prompts_misses(tmp_path):
    """Point-Robot-sparse, the case SMAC was made for: a missed goal gives no reward at all. The model
    trained on the search level's trials (``point_robot_sparse_own``) searches in round 0
    and, prompted with its own earlier episodes, goes where they found reward or searches on."""
    data = collect_dataset("point-robot-sparse", "search", str(tmp_path / "prs"), episodes_per_task=12, progress=False)
    values = dict(data=str(data.path), max_steps=1200, report_to="none", eval_every=0)

    def trained(name, **kwargs):
        config = load_config(TrainConfig, RECIPES / "point_robot_sparse_own.yaml", values | kwargs)
        config.output_dir = str(tmp_path / name)
        return seqmeta.load_model(train(config))

    protocol = EvalProtocol(data=str(data.path), prompt_source="own", prompt_trajectories="0,1,2,3", episodes=5)
    rounds = [s["normalized"] for s in evaluate(trained("own"), protocol, progress=False)["settings"]]
    baseline = trained("np", use_prompt=False)
    no_prompt = evaluate(
        baseline, EvalProtocol(data=str(data.path), prompt_trajectories="0", episodes=5), progress=False
    )
    no_prompt_score = no_prompt["settings"][0]["normalized"]
    print(f"own rounds {rounds}, model without prompts {no_prompt_score}")
    assert np.mean(rounds[1:]) >= rounds[0] + 25 and np.mean(rounds[1:]) >= no_prompt_score + 25
