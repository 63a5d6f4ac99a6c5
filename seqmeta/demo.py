"""The main job on its embedded default: data, meta-training and evaluation of in-context adaptation.

``seqmeta demo`` runs, for Point-Robot and Cheetah-Vel:

1. collect expert data on every task with the shipped behavior policies;
2. meta-train a small Prompt-DT on the training tasks, and the same model without prompts (the
   no-prompt baseline: a multi-task decision transformer);
3. evaluate both on the held-out tasks: the Prompt-DT with 0, 1, 2 and 4 expert prompt trajectories;
4. write each model folder with its ``eval_results.json``, plots and model card (``README.md``, what
   ``seqmeta push`` publishes), and print a table of scores.

Every stage is skipped when its output exists and resumed when it was interrupted, so running the
demo again continues where it stopped. ``scale`` shrinks every stage (the tests run it at 0.02).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from seqmeta.evaluation import EvalProtocol, evaluate
from seqmeta.results import load_results
from seqmeta.trainer import TrainConfig, train

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoFamily:
    name: str
    episodes_per_task: int
    train: dict = field(default_factory=dict)  # TrainConfig fields
    eval_episodes: int = 10


DEMO_FAMILIES = (
    DemoFamily(
        "point-robot",
        episodes_per_task=20,
        train=dict(max_steps=800, segment_length=20, hidden_size=64, num_layers=2, dropout=0.0, learning_rate=1e-3),
        eval_episodes=20,
    ),
    DemoFamily(
        "cheetah-vel",
        episodes_per_task=10,
        train=dict(max_steps=1500, segment_length=20, hidden_size=64, num_layers=2, learning_rate=1e-3),
        eval_episodes=10,
    ),
)
PROMPT_SETTINGS = "0,1,2,4"
DEMO_OWNER = "your-name"  # the Hub namespace the demo's cards name; `seqmeta push --repo-id` sets the real one


def _collect(spec: DemoFamily, path: Path, scale: float):
    from seqmeta.data.collect import collect_dataset
    from seqmeta.data.dataset import load_trajectories

    if path.exists():
        logger.info("%s exists; reusing it", path)
        return load_trajectories(path)
    episodes = max(4, round(spec.episodes_per_task * scale))  # prompts need a few episodes per task
    command = (
        f"seqmeta collect --family {spec.name} --quality expert --tasks all --episodes-per-task {episodes} "
        f"--output-dir {path}"
    )
    return collect_dataset(spec.name, "expert", str(path), tasks="all", episodes_per_task=episodes, command=command)


def _train(spec: DemoFamily, data_path: Path, out: Path, use_prompt: bool, scale: float) -> Path:
    if (out / "model" / "config.json").exists():
        logger.info("%s exists; reusing it", out / "model")
        return out / "model"
    values = spec.train | dict(max_steps=max(2, round(spec.train["max_steps"] * scale)))
    config = TrainConfig(
        data=str(data_path),
        output_dir=str(out),
        use_prompt=use_prompt,
        warmup_steps=max(1, values["max_steps"] // 20),
        checkpoint_every=max(1, values["max_steps"] // 4),
        eval_every=max(1, values["max_steps"] // 8),
        log_every=max(1, values["max_steps"] // 40),
        **values,
    )
    return train(config, resume=(out / "checkpoints").exists())


def run_demo(output_dir: str = "outputs/demo", scale: float = 1.0) -> dict:
    """Run the pipeline; returns {family: {"prompt_dt": results, "no_prompt": results}}."""
    from seqmeta.hub import render_model_card
    from seqmeta.models import load_model

    out = Path(output_dir)
    start = time.perf_counter()
    summary = {}
    for spec in DEMO_FAMILIES:
        data = _collect(spec, out / "data" / spec.name, scale)
        episodes = max(1, round(spec.eval_episodes * scale))
        results = {}
        for kind, use_prompt, settings in (("no_prompt", False, "0"), ("prompt_dt", True, PROMPT_SETTINGS)):
            run = out / "models" / f"{spec.name}-{kind.replace('_', '-')}"
            model_dir = _train(spec, data.path, run, use_prompt, scale)
            if (model_dir / "eval_results.json").exists():
                results[kind] = load_results(model_dir / "eval_results.json")
                continue
            protocol = EvalProtocol(data=str(data.path), prompt_trajectories=settings, episodes=episodes)
            model = load_model(model_dir)
            baseline = {"no-prompt model": results["no_prompt"]["settings"][0]["normalized"]} if use_prompt else None
            results[kind] = evaluate(model, protocol, model_dir, run / "train_log.jsonl", baselines=baseline)
        for kind in results:
            model_dir = out / "models" / f"{spec.name}-{kind.replace('_', '-')}" / "model"
            if not (model_dir / "README.md").exists():
                render_model_card(model_dir, f"{DEMO_OWNER}/{model_dir.parent.name}").save(model_dir / "README.md")
        summary[spec.name] = results
    _print_summary(summary, out, time.perf_counter() - start)
    return summary


def _print_summary(summary: dict, out: Path, seconds: float) -> None:
    settings = [int(k) for k in PROMPT_SETTINGS.split(",")]
    key = "normalized"
    print(f"\nHeld-out tasks, normalized score (0 = random policy, 100 = expert); demo took {seconds / 60:.1f} min")
    head = f"{'family':<12} | {'no-prompt model':>15} | " + " | ".join(f"Prompt-DT, {n} traj." for n in settings)
    print(head)
    print("-" * len(head))
    for family, results in summary.items():
        base = results["no_prompt"]["settings"][0][key]
        scores = {s["prompt_trajectories"]: s[key] for s in results["prompt_dt"]["settings"]}
        print(f"{family:<12} | {base:>15.1f} | " + " | ".join(f"{scores[n]:>18.1f}" for n in settings))
    print(
        "\nModels with their eval_results.json, plots (adaptation_curve.png, per_task.png, training_curve.png) "
        "and model card (README.md):"
    )
    for run in sorted((out / "models").iterdir()):
        print(f"  {run / 'model'}")
    print(f"Publish one: seqmeta push --model {run / 'model'} --repo-id {DEMO_OWNER}/{run.name}")
