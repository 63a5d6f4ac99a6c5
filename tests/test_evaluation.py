import json
from pathlib import Path

import numpy as np
import pytest
import torch

import seqmeta
from seqmeta.cli import main
from seqmeta.data.collect import collect_dataset
from seqmeta.errors import ConfigError, TaskSelectionError
from seqmeta.evaluation import EvalProtocol, evaluate
from seqmeta.models import PromptDTConfig, PromptDTModel
from seqmeta.results import SCHEMA, load_results


@pytest.fixture(scope="module")
def model(point_robot_dataset):
    config = PromptDTConfig.from_dataset(point_robot_dataset, hidden_size=16, num_layers=1, context_length=4)
    return PromptDTModel(config).eval()


def protocol(data, **kwargs) -> EvalProtocol:
    return EvalProtocol(**(dict(data=str(data.path), prompt_trajectories="0,1,2", episodes=2) | kwargs))


def test_results_follow_the_schema_and_plots_are_written(model, point_robot_dataset, tmp_path):
    results = evaluate(model, protocol(point_robot_dataset), output_dir=tmp_path, progress=False)
    assert load_results(tmp_path / "eval_results.json") == json.loads(json.dumps(results))
    assert results["schema"] == SCHEMA and results["family"] == "point-robot"
    assert results["protocol"]["prompt_source"] == "expert" and results["protocol"]["seed"] == 2026
    assert [s["prompt_trajectories"] for s in results["settings"]] == [0, 1, 2]
    ref = json.loads((Path(seqmeta.__file__).parent / "tasks" / "reference_returns.json").read_text())
    ref = ref["point-robot"]["default"]
    for setting in results["settings"]:
        assert [p["task"] for p in setting["per_task"]] == [45, 46, 47, 48, 49]
        for p in setting["per_task"]:
            assert len(p["returns"]) == 2 and np.isclose(p["mean"], np.mean(p["returns"]))
            low, high = ref["random"][p["task"]], ref["expert"][p["task"]]
            assert np.isclose(p["normalized"], 100 * (p["mean"] - low) / (high - low))  # 0 random, 100 expert
        assert np.isclose(setting["normalized"], np.mean([p["normalized"] for p in setting["per_task"]]))
    assert results["episodes_total"] == 3 * 5 * 2
    assert results["plots"] == ["adaptation_curve.png", "per_task.png"]
    for name in results["plots"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.reliability("faults", "right result")
def test_without_matplotlib_the_results_are_written_without_plots(
    model, point_robot_dataset, tmp_path, monkeypatch, caplog
):
    """Plots are an optional extra: without matplotlib the evaluation still writes its results, says why there
    are no plots, and names the extra."""
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    results = evaluate(model, protocol(point_robot_dataset), output_dir=tmp_path, progress=False)
    assert results["plots"] == [] and not list(tmp_path.glob("*.png"))
    assert load_results(tmp_path / "eval_results.json")["settings"] == json.loads(json.dumps(results["settings"]))
    assert "plots skipped" in caplog.text and "seqmeta[plots]" in caplog.text


def test_one_batched_sweep_one_model_call_per_env_step(model, point_robot_dataset, monkeypatch):
    calls = []
    step = PromptDTModel.stream_step

    def counting(self, state, observation, *args):
        calls.append(observation.shape[0])
        return step(self, state, observation, *args)

    monkeypatch.setattr(PromptDTModel, "stream_step", counting)
    evaluate(model, protocol(point_robot_dataset, episodes=3), progress=False)
    assert calls == [3 * 5 * 3] * point_robot_dataset.family.horizon  # settings x tasks x episodes, each step


def test_an_expert_below_random_leaves_scores_unnormalized_with_a_warning(
    model, point_robot_dataset, monkeypatch, caplog
):
    """The returns are measured as ever; normalized scores, which an expert worse than random on a task would
    turn upside down, are left out (None) and the log says why and what to do."""
    from seqmeta.tasks import family as family_module

    table = json.loads((Path(seqmeta.__file__).parent / "tasks" / "reference_returns.json").read_text())
    expected = evaluate(model, protocol(point_robot_dataset), progress=False)
    table["point-robot"]["default"]["expert"][47] = table["point-robot"]["default"]["random"][47] - 1.0
    monkeypatch.setattr(family_module, "_reference_table", lambda: table)
    with caplog.at_level("WARNING"):
        results = evaluate(model, protocol(point_robot_dataset), progress=False)
    assert "scores are not normalized: point-robot task 47: the expert's reference return" in caplog.text
    assert "is below the random policy's" in caplog.text and "task 46" not in caplog.text
    for ours, before in zip(results["settings"], expected["settings"], strict=True):
        assert ours["normalized"] is None and all(p["normalized"] is None for p in ours["per_task"])
        assert ours["mean_return"] == before["mean_return"]


def test_fixed_seed_gives_the_same_results(model, point_robot_dataset):
    a = evaluate(model, protocol(point_robot_dataset, prompt_source="ood"), progress=False)
    b = evaluate(model, protocol(point_robot_dataset, prompt_source="ood"), progress=False)
    c = evaluate(model, protocol(point_robot_dataset, prompt_source="ood", seed=1), progress=False)
    assert a["settings"] == b["settings"] and a["settings"] != c["settings"]


def test_own_episodes_become_the_prompt_round_by_round(model, point_robot_dataset, monkeypatch):
    import seqmeta.evaluation as ev

    rounds, rollout_agent = [], ev.rollout_agent

    def recording(model, env_fns, max_steps, prompts, *args, **kwargs):
        out = rollout_agent(model, env_fns, max_steps, prompts, *args, **kwargs)
        rounds.append((prompts, out))
        return out

    monkeypatch.setattr(ev, "rollout_agent", recording)
    results = evaluate(model, protocol(point_robot_dataset, prompt_source="own", target_return="model"), progress=False)
    assert [s["prompt_trajectories"] for s in results["settings"]] == [0, 1, 2]
    assert len(rounds) == 3 and rounds[0][0] is None  # round 0: no prompt

    def steps(out, env):  # {observation: reward the agent got} of one env's episodes in one round
        rows = np.flatnonzero(np.repeat(out.slot, out.episodes.lengths) == env)
        return {tuple(out.episodes.observations[i]): out.episodes.rewards[i] for i in rows}

    n_envs, from_latest = len(rounds[0][1].slot), {1: 0, 2: 0}
    for r in (1, 2):
        prompts = rounds[r][0]
        for env in range(n_envs):
            earlier = {k: v for _, out in rounds[:r] for k, v in steps(out, env).items()}
            shown = prompts["attention_mask"][env].astype(bool)
            observations = [tuple(o) for o in prompts["observation"][env][shown]]
            assert observations and all(o in earlier for o in observations)  # only this env's own steps
            from_latest[r] += bool(set(observations) & set(steps(rounds[r - 1][1], env)))
            np.testing.assert_allclose(
                prompts["reward"][env][shown], [earlier[o] for o in observations]
            )  # with the rewards it received
    assert from_latest[1] == n_envs and from_latest[2] > 0  # round 2 draws from round 1 too, not only round 0


@pytest.mark.reliability("bad options", "clear error, nothing written")
def test_bad_protocols_are_refused(model, point_robot_dataset, tmp_path):
    with pytest.raises(ConfigError, match="names family cheetah-vel"):
        evaluate(model, protocol(point_robot_dataset, family="cheetah-vel"), progress=False)
    with pytest.raises(ConfigError, match="prompt_source 'great'"):
        evaluate(model, protocol(point_robot_dataset, prompt_source="great"), progress=False)
    with pytest.raises(ConfigError, match="target_return must be one of"):
        evaluate(model, protocol(point_robot_dataset, target_return="high"), progress=False)
    with pytest.raises(ConfigError, match="prompt_trajectories must be numbers"):
        evaluate(model, protocol(point_robot_dataset, prompt_trajectories="one"), progress=False)
    with pytest.raises(TaskSelectionError, match="task 45 has 4 expert episodes"):
        evaluate(model, protocol(point_robot_dataset, prompt_trajectories="5"), progress=False)
    no_prompt = PromptDTModel(PromptDTConfig.from_dataset(point_robot_dataset, hidden_size=16, use_prompt=False))
    with pytest.raises(ConfigError, match="takes no prompt"):
        evaluate(no_prompt, protocol(point_robot_dataset), progress=False)
    cheetah = collect_dataset(
        "cheetah-vel", "random", str(tmp_path / "cv"), tasks=[2], episodes_per_task=1, progress=False
    )
    with pytest.raises(ConfigError, match="trained on point-robot"):
        evaluate(model, protocol(cheetah, tasks="2"), progress=False)


def test_eval_verb(model, point_robot_dataset, tmp_path, capsys):
    model.save_pretrained(tmp_path / "m")
    argv = ["eval", "--model", str(tmp_path / "m"), "--data", str(point_robot_dataset.path)]
    argv += ["--family", "point-robot", "--tasks", "test", "--prompt-source", "expert"]
    argv += ["--prompt-trajectories", "0,1", "--episodes", "2", "--output-dir", str(tmp_path / "ev")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "normalized" in out and "task  45" in out
    assert load_results(tmp_path / "ev" / "eval_results.json")["protocol"]["prompt_trajectories"] == "0,1"
    again = [*argv[:-1], str(tmp_path / "ev2"), "--baseline", f"first={tmp_path / 'ev' / 'eval_results.json'}"]
    assert main(again) == 0 and (tmp_path / "ev2" / "adaptation_curve.png").exists()


def test_target_return_rules(model, point_robot_dataset):
    def targets(rule, settings="0,1"):
        results = evaluate(model, protocol(point_robot_dataset, target_return=rule, prompt_trajectories=settings))
        return [[p["target_return"] for p in s["per_task"]] for s in results["settings"]]

    best = float(point_robot_dataset.episodes["return"].max())
    assert targets("fixed") == [[best] * 5] * 2
    assert targets("-3.5") == [[-3.5] * 5] * 2
    expert = point_robot_dataset.family.reference_returns()["expert"][45:50]
    assert np.allclose(targets("oracle"), [expert, expert])
    ep = point_robot_dataset.episodes
    first_expert = [ep["return"][(ep["task_index"] == t) & (ep["quality"] == "expert")][0] for t in range(45, 50)]
    no_prompt, one = targets("demo")
    assert no_prompt == [best] * 5 and np.allclose(one, first_expert)  # the prompt's own return
    model_targets = targets("model", settings="1")[0]
    assert len(set(model_targets)) > 1  # the value head's estimate differs by task (prompt)


def test_evaluation_is_the_same_on_the_batched_envs_and_on_gymnasium(tmp_path, monkeypatch):
    """The rollout engine steps Cheetah tasks on the batched envs (seqmeta.tasks.vector); the evaluation's
    results are those of the gymnasium envs, bit for bit: demo prompts and own rounds."""
    from seqmeta.tasks.family import TaskEnvs

    torch.manual_seed(0)
    data = collect_dataset(
        "cheetah-vel", "expert", str(tmp_path / "cv"), tasks="test", episodes_per_task=1, progress=False
    )
    model = PromptDTModel(PromptDTConfig.from_dataset(data, hidden_size=16, num_layers=1, context_length=4))
    results = []
    for batched in (True, False):
        if not batched:
            monkeypatch.setattr(TaskEnvs, "batched", lambda self: None)
        for source, settings in (("expert", "0,1"), ("own", "0,1")):
            p = EvalProtocol(data=str(data.path), prompt_source=source, prompt_trajectories=settings, episodes=2)
            results.append(evaluate(model, p, progress=False)["settings"])
    assert results[:2] == results[2:]
    assert {s["mean_return"] for r in results[:2] for s in r} != {results[0][0]["mean_return"]}  # not all one number


@pytest.mark.parametrize("source", ["expert", "own"])
def test_more_envs_than_a_family_runs_at_once_go_in_groups_with_the_same_results(
    model, point_robot_dataset, monkeypatch, source
):
    """A family's ``max_envs`` bounds the envs alive at once (a Meta-World env holds its own MuJoCo model); a
    larger sweep runs in groups of that many, and scores what one batch scores (up to float rounding: the
    model's arithmetic at another batch size)."""
    import seqmeta.evaluation as ev

    whole = evaluate(model, protocol(point_robot_dataset, prompt_source=source), progress=False)
    sizes, run = [], ev.run_episodes

    def counting(envs, *args, **kwargs):
        sizes.append(len(envs))
        return run(envs, *args, **kwargs)

    monkeypatch.setattr(ev, "run_episodes", counting)
    monkeypatch.setitem(seqmeta.get_family("point-robot").__dict__, "max_envs", 4)
    grouped = evaluate(model, protocol(point_robot_dataset, prompt_source=source), progress=False)

    def returns(results):
        return np.array([[t["returns"] for t in s["per_task"]] for s in results["settings"]])

    np.testing.assert_allclose(returns(grouped), returns(whole), rtol=0, atol=1e-5)
    assert max(sizes) == 4 and sum(sizes) == 3 * 5 * 2  # settings (own: rounds) x 5 tasks x 2 episodes
