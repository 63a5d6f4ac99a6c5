"""Adapting without demonstrations: expert demo vs no prompt vs own exploration, over training seeds.

    python eval/adaptation.py --family cheetah-vel --recipe cheetah_vel_own \
        --data data/cheetah-vel-all --output-dir runs/adaptation/cheetah-vel --seeds 0,1,2 --eval-seeds 2026,2027

For each training seed it meta-trains the recipe (skipped when its model exists; a killed run resumes)
and the same recipe without prompts (``use_prompt: false``: the model that ignores prompts), then
evaluates both on the held-out tasks, 20 episodes per task and setting, for each evaluation seed:

- ``demo-1``: prompted with 1 expert trajectory of the task; ``no-prompt``: the prompted model, no prompt;
- ``own-round-0`` .. ``own-round-3``: the own-exploration protocol (round 0 without a prompt, round r
  prompted with its own episodes of rounds < r, rewards as observed), and ``own-rounds-1-3``, their mean;
- ``no-prompt-model``: the model trained without prompts.

Writes the records ``{family, setting, train_seed, eval_seed, metric, value}`` (metric ``normalized``)
into ``eval/results/adaptation.json`` (replacing that family's records of the seeds it ran: runs of
different seeds can go side by side), the plot
``eval/results/<family>_adaptation.png`` (score against round), and prints the table the README shows:
each setting's mean and std over training seeds (each seed's value averaged over evaluation seeds).
``--table`` only prints the table (and draws the plots again) from the results file.

The table of every family (``--results families``: ``eval/results/families.json``) is the same run on
each family's reference recipe, scored on a small expert dataset (``--eval-data``: one expert episode of
every task), which ``--ship NAME`` installs with the first seed's model as the shipped model NAME
(``seqmeta/pretrained/NAME``: its evaluations, that data as ``demos/`` and its card)::

    seqmeta collect --family point-robot --quality expert --episodes-per-task 1 --output-dir data/point-robot-demos
    python eval/adaptation.py --family point-robot --recipe point_robot_own --data data/point-robot-all \
        --eval-data data/point-robot-demos --results families --no-baseline-model --eval-seeds 2026 \
        --output-dir runs/families/point-robot --ship point-robot-prompt-dt

``--corrections BEHAVIOR`` (e.g. ``search``): after training the prompted model, the offline data is
collected again with the model's own trials added, each step labeled by that behavior
(``seqmeta.corrections``, DAgger), and the recipe is trained again on both (``corrected-seed<s>``,
``segment_quality: BEHAVIOR,BEHAVIOR-corrections``): that model is the one evaluated as the prompted model.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import re
import time
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROUNDS = 4
ORDER = ("demo-1", "no-prompt", "own-round-0", "own-rounds-1-3", "no-prompt-model")
HEADERS = ("1 expert demo", "no prompt", "own round 0", "own rounds 1-3", "model without prompts")


def train_seed(recipe: str, data: str, out: Path, seed: int, use_prompt: bool, name: str = "", **extra) -> Path:
    from seqmeta.configs import load_config
    from seqmeta.trainer import TrainConfig, train

    run = out / f"{name or ('prompt' if use_prompt else 'no-prompt')}-seed{seed}"
    if (run / "model" / "config.json").exists():
        return run / "model"
    overrides = {"data": data, "output_dir": str(run), "seed": seed, "use_prompt": use_prompt, "report_to": "none"}
    config = load_config(TrainConfig, recipe, overrides | extra)
    start = time.perf_counter()
    model = train(config, resume=(run / "checkpoints").exists())
    print(f"  trained {run.name} in {time.perf_counter() - start:.0f} s", flush=True)
    return model


def with_corrections(model_dir: Path, data: str, behavior: str, out: Path) -> str:
    """The offline data collected again (same qualities, episodes per task and seed) with the model's own
    trials labeled by ``behavior`` added (``<behavior>-corrections``): what the corrected model trains on."""
    from seqmeta.corrections import corrections_of
    from seqmeta.data.collect import collect_dataset
    from seqmeta.data.dataset import load_trajectories
    from seqmeta.models import load_model

    folder = out / f"data-{model_dir.parent.name}"
    if (folder / "seqmeta.json").exists():
        return str(folder)
    base = load_trajectories(data)
    qualities = list(base.meta.qualities)
    per_task = base.meta.qualities[qualities[0]]["episodes"] // len(base.meta.tasks)
    model = load_model(str(model_dir))
    more = corrections_of(model, str(model_dir), base.family, [f"{behavior}-corrections"], per_task, progress=False)
    collected = collect_dataset(
        base.family, qualities, str(folder), episodes_per_task=per_task, more=more, progress=False
    )
    for column in ("observation", "action", "reward"):  # the offline part is the same data, collected again
        rows = np.isin(np.repeat(collected.episodes["quality"], collected.episodes["length"]), qualities)
        if not np.array_equal(collected.column(column)[rows], base.column(column)):
            raise SystemExit(f"collecting {data} again gave other {column}s: was it collected with other options?")
    return str(folder)


def evaluate_seed(model_dir: Path, data: str, eval_seed: int, episodes: int, prompted: bool, out: Path) -> list:
    """(family suffix, setting, metric, value) of one model under one evaluation seed (evaluations cached
    per protocol): metric ``normalized``, and for envs that report success (Meta-World) ``success``
    (percent of episodes) and ``return`` (mean return); suffix ``""``, and ``/<class>`` for each task
    class of a family of several (ML10: ``metaworld-ml10/drawer-open-v3``)."""
    from dataclasses import asdict

    from seqmeta.evaluation import EvalProtocol, evaluate
    from seqmeta.models import load_model

    model = load_model(str(model_dir))
    runs = {"offline": ("expert", "0,1" if prompted else "0")}
    if prompted:
        runs["own"] = ("own", ",".join(map(str, range(ROUNDS))))
    scores = []
    for name, (source, settings) in runs.items():
        protocol = EvalProtocol(
            data=data, prompt_source=source, prompt_trajectories=settings, episodes=episodes, seed=eval_seed
        )
        folder = out / f"{model_dir.parent.name}-eval{eval_seed}-{name}"
        saved = folder / "eval_results.json"
        results = json.loads(saved.read_text()) if saved.exists() else None
        wanted = asdict(protocol) | {"data": str(Path(data).resolve())}
        same_model = results and results["model"]["name_or_path"] == str(model_dir)
        if not (same_model and {k: results["protocol"][k] for k in wanted} == wanted):
            results = evaluate(model, protocol, output_dir=folder, progress=False)
        by_setting = {s["prompt_trajectories"]: s for s in results["settings"]}
        if name == "offline" and prompted:
            named = {"no-prompt": [by_setting[0]], "demo-1": [by_setting[1]]}
        elif name == "offline":
            named = {"no-prompt-model": [by_setting[0]]}
        else:
            named = {f"own-round-{r}": [by_setting[r]] for r in range(ROUNDS)}
            named["own-rounds-1-3"] = [by_setting[r] for r in range(1, ROUNDS)]
        for setting, parts in named.items():  # own-rounds-1-3: the mean of rounds 1-3
            groups = {"": [p["per_task"] for p in parts]}
            classes = sorted({t["params"].get("task_class") for t in parts[0]["per_task"]} - {None})
            if len(classes) > 1:  # several task classes (Meta-World ML10): each class's own records too
                groups |= {
                    f"/{c}": [[t for t in p if t["params"]["task_class"] == c] for p in groups[""]] for c in classes
                }
            for suffix, tasks in groups.items():
                scores += [(suffix, setting, m, v) for m, v in _metrics(tasks).items()]
    return scores


def _metrics(parts: list[list[dict]]) -> dict[str, float]:
    """Mean over parts (rounds) of the mean over tasks: normalized score, and success (%) and return
    where the env reports success."""

    def mean(key: str) -> float | None:
        values = [t[key] for tasks in parts for t in tasks]
        return None if None in values else float(np.mean([np.mean([t[key] for t in tasks]) for tasks in parts]))

    out = {"normalized": mean("normalized")}
    if parts[0][0].get("success_rate") is not None:
        out |= {"success": 100 * mean("success_rate"), "return": mean("mean")}
    return {k: v for k, v in out.items() if v is not None}


def ship(out: Path, seed: int, eval_seed: int, eval_data: str, name: str) -> None:
    """Install the seed's prompted model with its evaluations (of ``eval_seed``) and the evaluation data as
    ``demos/`` into ``seqmeta/pretrained/NAME`` (replaced atomically), with its model card."""
    import shutil

    from seqmeta.hub import render_model_card
    from seqmeta.io import atomic_directory
    from seqmeta.pretrained import pretrained_dir

    model_dir = out / f"prompt-seed{seed}" / "model"
    target = pretrained_dir() / name
    with atomic_directory(target, overwrite=True) as tmp:
        shutil.copytree(model_dir, tmp, dirs_exist_ok=True)
        shutil.copytree(eval_data, tmp / "demos", ignore=shutil.ignore_patterns(".*", "cache-*"))
        for protocol in ("offline", "own"):
            source = out / "eval" / f"prompt-seed{seed}-eval{eval_seed}-{protocol}"
            shutil.copytree(source, tmp / "eval" / protocol, ignore=shutil.ignore_patterns(".*"))
        render_model_card(tmp, name).save(tmp / "README.md")
    (target / ".seqmeta-output").unlink(missing_ok=True)  # shipped files only
    print(f"shipped {model_dir} as {target}")


def summary(records: list[dict], family: str, metric: str = "normalized") -> dict[str, tuple[float, float, int]]:
    """setting -> (mean, std, number of training seeds), each seed averaged over its evaluation seeds."""
    out = {}
    records = [r for r in records if r["family"] == family and r["metric"] == metric]
    settings = sorted({r["setting"] for r in records}, key=_order)
    for setting in settings:
        per_seed: dict[int, list[float]] = {}
        for r in records:
            if r["setting"] == setting:
                per_seed.setdefault(r["train_seed"], []).append(r["value"])
        values = [float(np.mean(v)) for v in per_seed.values()]
        out[setting] = (float(np.mean(values)), float(np.std(values)), len(values))
    return out


def _order(setting: str) -> tuple[int, str]:
    return (ORDER.index(setting) if setting in ORDER else len(ORDER), setting)


METRICS = {
    "normalized": "normalized score (0 = random, 100 = expert)",
    "success": "success rate (% of episodes with info['success'] at some step)",
    "return": "mean return",
}


def print_table(records: list[dict], metric: str = "normalized") -> None:
    records = [r for r in records if r["metric"] == metric]
    if not records:
        return
    families = sorted({r["family"] for r in records})
    names = dict(zip(ORDER, HEADERS, strict=True))
    shown = [s for s in ORDER if any(r["setting"] == s for r in records)]
    head = ["family"] + [names[s] for s in shown]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for family in families:
        stats = summary(records, family, metric)
        cells = [family] + [f"{stats[s][0]:.1f} ± {stats[s][1]:.1f}" if s in stats else "n/a" for s in shown]
        print("| " + " | ".join(cells) + " |")
    seeds = {f: len({r["train_seed"] for r in records if r["family"] == f}) for f in families}
    evals = {f: sorted({r["eval_seed"] for r in records if r["family"] == f}) for f in families}
    print(
        f"\n{METRICS[metric]}, held-out tasks; mean ± std over training seeds "
        + str(seeds)
        + ", each averaged over evaluation seeds "
        + str(evals)
    )


def plot(records: list[dict], family: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "success" if any(r["family"] == family and r["metric"] == "success" for r in records) else "normalized"
    stats = summary(records, family, metric)
    rounds = [r for r in range(ROUNDS) if f"own-round-{r}" in stats]
    mean = np.array([stats[f"own-round-{r}"][0] for r in rounds])
    std = np.array([stats[f"own-round-{r}"][1] for r in rounds])
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.errorbar(
        rounds, mean, yerr=std, marker="o", capsize=3, label="own exploration (round r: prompted by rounds < r)"
    )
    for setting, style in (("demo-1", "--"), ("no-prompt-model", ":")):
        if setting in stats:
            ax.axhline(stats[setting][0], linestyle=style, color="gray", label=setting.replace("-", " "))
    ax.set_xlabel("exploration round")
    ax.set_ylabel("success rate (%)" if metric == "success" else "normalized score")
    ax.set_xticks(rounds)
    ax.set_title(f"{family}: held-out tasks\nmean ± std over training seeds", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family")
    parser.add_argument("--recipe", help="the training recipe (trained with and without prompts)")
    parser.add_argument("--data", help="offline data with the training and held-out tasks")
    parser.add_argument("--output-dir", dest="out", help="training runs and evaluation folders go here")
    parser.add_argument(
        "--eval-data", default=None, help="the data evaluations take prompts and the fixed target from (default --data)"
    )
    parser.add_argument(
        "--results",
        default="adaptation",
        choices=["adaptation", "families", "metaworld"],
        help="the results file under eval/results/ (families: the README's table of every family; metaworld: "
        "the Meta-World table, success rate and return beside the normalized score)",
    )
    parser.add_argument(
        "--baseline-model",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also train and score the recipe without prompts (no-prompt-model)",
    )
    parser.add_argument(
        "--ship",
        default=None,
        metavar="NAME",
        help="install the first seed's prompted model, its evaluations and --eval-data as the shipped model NAME",
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--eval-seeds", default="2026,2027")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument(
        "--corrections",
        default="",
        help="a behavior (e.g. search): the prompted model then trains again with its own trials labeled by it",
    )
    parser.add_argument(
        "--table", action="store_true", help="only print the table (and redraw the plots) from the results file"
    )
    args = parser.parse_args()
    if args.ship and args.corrections:
        parser.error("--ship installs the prompted model as trained; run it without --corrections")
    if args.corrections and args.family:  # before any training: a behavior the family offers
        from seqmeta.behavior.policies import load_behavior_policy
        from seqmeta.errors import SeqmetaError
        from seqmeta.tasks import get_family

        try:
            load_behavior_policy(get_family(args.family), args.corrections, 1)
        except SeqmetaError as e:
            parser.error(f"--corrections {args.corrections}: {e}")
    results_file = RESULTS_DIR / f"{args.results}.json"
    records = json.loads(results_file.read_text()) if results_file.exists() else []
    if args.table:
        for metric in METRICS:
            print_table(records, metric)
        families = sorted({r["family"] for r in records if "/" not in r["family"]})  # not one per task class
        for family in families:  # the plots, drawn again from the same records
            plot(records, family, RESULTS_DIR / f"{family}_{args.results}.png")
        return
    if not (args.family and args.recipe and args.data and args.out):
        parser.error("--family, --recipe, --data and --output-dir are needed (or --table)")
    out = Path(args.out)
    eval_data = args.eval_data or args.data
    for option, folder in (("--data", args.data), ("--eval-data", eval_data)):  # before hours of training
        if not (Path(folder) / "seqmeta.json").is_file():
            parser.error(f"{option} {folder} is not a dataset folder (no seqmeta.json): give a seqmeta collect output")
    if args.ship and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", args.ship):
        parser.error(f"--ship {args.ship!r}: a shipped model's name is lowercase letters, digits and dashes")
    fresh = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for prompted in (True, False) if args.baseline_model else (True,):
            model = train_seed(args.recipe, args.data, out, seed, prompted)
            if prompted and args.corrections:  # DAgger: the model's own trials, labeled, then train again
                data = with_corrections(model, args.data, args.corrections, out)
                segments = f"{args.corrections},{args.corrections}-corrections"
                model = train_seed(args.recipe, data, out, seed, True, "corrected", segment_quality=segments)
            for eval_seed in [int(s) for s in args.eval_seeds.split(",")]:
                scores = evaluate_seed(model, eval_data, eval_seed, args.episodes, prompted, out / "eval")
                fresh += [
                    {
                        "family": args.family + suffix,
                        "setting": k,
                        "train_seed": seed,
                        "eval_seed": eval_seed,
                        "metric": m,
                        "value": v,
                    }
                    for suffix, k, m, v in scores
                ]
                print(
                    f"  seed {seed} eval {eval_seed} {'prompt' if prompted else 'no-prompt'}: "
                    + ", ".join(
                        f"{k} {v:.1f}" + ("" if m == "normalized" else f" ({m})")
                        for suffix, k, m, v in scores
                        if not suffix
                    ),
                    flush=True,
                )
    seeds = {r["train_seed"] for r in fresh}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with open(results_file.with_suffix(".lock"), "w") as lock:  # runs of other seeds may finish at the same time
        fcntl.flock(lock, fcntl.LOCK_EX)
        records = json.loads(results_file.read_text()) if results_file.exists() else []
        records = [r for r in records if not (r["family"].split("/")[0] == args.family and r["train_seed"] in seeds)]
        records += fresh
        tmp = results_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(records, indent=1) + "\n")
        tmp.replace(results_file)
    plot(records, args.family, RESULTS_DIR / f"{args.family}_{args.results}.png")
    for metric in METRICS:
        print_table(records, metric)
    if args.ship:
        ship(out, min(seeds), min(int(s) for s in args.eval_seeds.split(",")), eval_data, args.ship)


if __name__ == "__main__":
    main()
