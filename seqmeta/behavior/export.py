"""Choose a behavior-policy run's snapshots as skill levels and ship them inside the package.

Each snapshot is evaluated here on the family's training tasks (``choose_on="train"``, the default:
deterministic, one episode on each training task of the default task set), or taken with the
evaluation logged during training (``"logged"``: the held-out tasks and three training tasks; how the
experts exported before the Walker-Params one were chosen). Held-out tasks choosing the expert would
select a snapshot that happens to do well on them: its returns there, the 100 of every normalized
score, would be higher than the data the models learn from shows. With R_random measured here on the
same tasks and R_best the best snapshot's mean return, a snapshot's level is 100 * (R - R_random) /
(R_best - R_random):

- ``expert``: the best snapshot, acting deterministically;
- ``medium``: the snapshot closest to level 50, sampling its stochastic actions;
- ``mixed``: snapshots closest to levels 20, 40, 60, 80 and 100, one drawn per episode, stochastic.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from seqmeta.io import atomic_write_json
from seqmeta.tasks import get_family

logger = logging.getLogger(__name__)

CHOOSE_ON = ("train", "logged")
MEDIUM_LEVEL = 50.0
MIXED_LEVELS = (20.0, 40.0, 60.0, 80.0, 100.0)


def read_log(run: Path) -> list[dict]:
    """Evaluations by step (a resumed run may have logged a step twice: the last one counts)."""
    records = {}
    for line in (run / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        records[record["step"]] = record
    return [records[s] for s in sorted(records) if (run / "snapshots" / f"step_{s:07d}.safetensors").exists()]


def evaluations(run: Path, family_name: str) -> list[dict]:
    """``read_log``, or a clear error when the run has evaluated nothing yet."""
    if not (run / "log.jsonl").is_file() or not (records := read_log(run)):
        raise FileNotFoundError(
            f"{run} holds no evaluated snapshots yet; start or continue the run with "
            f"`python -m seqmeta.behavior train --family {family_name}` (it evaluates every --eval-every steps)"
        )
    return records


def behavior_status(run: Path, family_name: str) -> str:
    """A run's evaluations so far as a table (the best marked) and its ``learning_curve.png`` in the run folder."""
    from seqmeta.errors import MissingExtraError
    from seqmeta.plots import plot_behavior_curve

    run = Path(run)
    records = evaluations(run, family_name)
    means = [float(np.mean(r["return"])) for r in records]
    best = int(np.argmax(means))  # evaluations() holds at least one
    lines = [f"{run}: {len(records)} evaluations, one deterministic episode on each of tasks {records[0]['tasks']}"]
    lines.append(f"{'step':>9} {'minutes':>8} {'mean return':>12} {'worst task':>11}")
    for i, (r, mean) in enumerate(zip(records, means, strict=True)):
        mark = "  <- best (export --choose-on logged picks it)" if i == best else ""
        lines.append(f"{r['step']:>9} {r['minutes']:>8.1f} {mean:>12.1f} {min(r['return']):>11.1f}{mark}")
    try:
        plot = plot_behavior_curve(records, run / "learning_curve.png", f"{family_name}: goal-conditioned SAC")
        lines.append(f"plot: {plot}")
    except MissingExtraError as e:
        lines.append(f"no plot: {e}")
    return "\n".join(lines)


def evaluated_on(family_name: str, run: Path, records: list[dict], tasks: list[int] | None = None) -> list[dict]:
    """``records`` with each snapshot evaluated again on ``tasks`` (default: every training task of the family's
    default task set), one deterministic episode each: step, minutes, tasks, return and mean_velocity."""
    from tqdm.auto import tqdm

    from seqmeta.behavior.policies import load_actor
    from seqmeta.behavior.train import EVAL_SEED, evaluate_actor

    family = get_family(family_name)
    tasks = list(family.task_set().train_indices if tasks is None else tasks)
    out = []
    for r in tqdm(records, desc=f"{family_name} snapshots on {len(tasks)} tasks", unit="snapshot", leave=False):
        actor = load_actor(Path(run) / "snapshots" / f"step_{r['step']:07d}.safetensors")
        result = evaluate_actor(actor, family, tasks, seed=EVAL_SEED)
        out.append({"step": r["step"], "minutes": r["minutes"], "tasks": tasks, **result})
    return out


def random_return_on(family_name: str, tasks: list[int], episodes: int = 5) -> float:
    from seqmeta.data.collect import rollout

    family = get_family(family_name)
    eps = rollout(family, "random", tasks, episodes, seed=123, progress=False)
    return float(eps.episode_returns.mean())


def export_skill_levels(family_name: str, run: Path, weights_dir: Path, choose_on: str = "train") -> dict:
    """The skill levels of ``run``'s snapshots, chosen on the training tasks (``choose_on="train"``) or on the
    evaluations logged during training (``"logged"``), written with ``levels.json`` into ``weights_dir``."""
    if choose_on not in CHOOSE_ON:
        raise ValueError(f"choose_on is one of {', '.join(CHOOSE_ON)}, got {choose_on!r}")
    run, weights_dir = Path(run), Path(weights_dir)
    records = evaluations(run, family_name)
    if choose_on == "train":
        records = evaluated_on(family_name, run, records)
    tasks = records[-1]["tasks"]
    mean_returns = np.array([np.mean(r["return"]) for r in records])
    best = int(np.argmax(mean_returns))
    r_random = random_return_on(family_name, tasks)
    level = 100.0 * (mean_returns - r_random) / (mean_returns[best] - r_random)

    def closest(target: float) -> int:
        return int(np.argmin(np.abs(level - target)))

    names = {i: f"step_{records[i]['step']:07d}" for i in range(len(records))}
    medium = closest(MEDIUM_LEVEL)
    mixed = sorted({closest(t) for t in MIXED_LEVELS})
    chosen = sorted({best, medium, *mixed})
    weights_dir.mkdir(parents=True, exist_ok=True)
    for old in weights_dir.glob("step_*.safetensors"):
        old.unlink()
    for i in chosen:
        shutil.copyfile(run / "snapshots" / f"{names[i]}.safetensors", weights_dir / f"{names[i]}.safetensors")
    config = json.loads((run / "config.json").read_text())
    levels = {
        "family": family_name,
        # The steps the run evaluated (a run stopped before its --total-steps reproduces with the smaller number).
        "recipe": f"python -m seqmeta.behavior train --family {family_name} "
        f"--total-steps {records[-1]['step']} --seed {config['seed']}"
        + ("" if config.get("task_sampling", "law") == "law" else f" --task-sampling {config['task_sampling']}"),
        "levels": {
            "expert": {"snapshots": [names[best]], "deterministic": True},
            "medium": {"snapshots": [names[medium]], "deterministic": False},
            "mixed": {"snapshots": [names[i] for i in mixed], "deterministic": False},
        },
        "evaluation": {
            "chosen_on": choose_on,
            "tasks": tasks,
            "random_mean_return": r_random,
            "snapshots": {
                names[i]: {
                    "step": records[i]["step"],
                    "minutes": round(records[i]["minutes"], 1),
                    "mean_return": float(mean_returns[i]),
                    "level": float(level[i]),
                    "returns": records[i]["return"],
                    "mean_velocity": records[i]["mean_velocity"],
                }
                for i in chosen
            },
        },
    }
    atomic_write_json(weights_dir / "levels.json", levels)
    logger.info(
        "exported %s: expert %s, medium %s, mixed %s",
        family_name,
        names[best],
        names[medium],
        [names[i] for i in mixed],
    )
    return levels
