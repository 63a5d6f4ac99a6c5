"""How good are the reward head's labels? Correlation of predicted and true rewards in held-out tasks.

    python eval/reward_labels.py --model runs/cheetah-vel/model --data data/cheetah-vel-expert \
        --tasks test --rounds 3 --episodes-per-task 4

The model explores each task exactly as in the self-supervised phase (round 0 unprompted, later
rounds prompted with its own labeled episodes; its reward head, conditioned on a prompt of the
task's offline data, labels every step). The environment's rewards of the same steps are the
reference. Beside the labels, in the same run: a baseline labeler that knows nothing of the task,
the mean offline reward of the training tasks' data (its error is the spread of the rewards). Also
prints the labels' error by step range of the episode (drift along an episode).
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np

from seqmeta.data.dataset import load_trajectories
from seqmeta.models import load_model
from seqmeta.selfsupervise import explore, label_quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="offline dataset: the labeler's task context")
    parser.add_argument("--tasks", default="test", help="test, train, all or indices")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--episodes-per-task", type=int, default=4)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    model = load_model(args.model)
    data = load_trajectories(args.data)
    tasks = data.task_set.select(args.tasks)
    found = explore(model, data, tasks, args.rounds, args.episodes_per_task, seed=args.seed)
    predicted, true = found["episodes"].rewards, found["true_rewards"]
    train_tasks = data.task_set.train_indices
    offline_mean = float(data.column("reward")[np.isin(data.column("task_index"), train_tasks)].mean())
    report = {
        "tasks": [int(t) for t in tasks],
        "reward_head": label_quality(predicted, true),
        "baseline_offline_mean_reward": {"mean_abs_error": float(np.abs(true - offline_mean).mean())},
        "per_round": [],
        "true_return_by_round": found["returns"].mean(1).tolist(),
    }
    quality = found["episodes"].quality
    per_step_round = np.repeat(quality, found["episodes"].lengths)
    for r in range(args.rounds):
        here = per_step_round == f"online-r{r}"
        report["per_round"].append({"round": r, **label_quality(predicted[here], true[here])})
    # Drift along an episode: the error by step range (the reward head sees the rewards fed back to it).
    episodes = found["episodes"]
    step = np.arange(len(true)) - np.repeat(episodes.starts, episodes.lengths)
    horizon = int(episodes.lengths.max())
    edges = sorted({0, horizon // 8, horizon // 4, horizon // 2, horizon})
    report["by_step_range"] = [
        {
            "steps": f"{lo}-{hi - 1}",
            "mean_error": float((predicted - true)[(step >= lo) & (step < hi)].mean()),
            "mean_abs_error": float(np.abs(predicted - true)[(step >= lo) & (step < hi)].mean()),
        }
        for lo, hi in itertools.pairwise(edges)
        if ((step >= lo) & (step < hi)).any()
    ]
    print(f"{data.meta.family}, tasks {report['tasks']}, {len(true)} steps")
    print(f"{'labeler':>28} | correlation | mean abs error")
    q = report["reward_head"]
    print(f"{'reward head (task context)':>28} | {q['correlation']:>11.3f} | {q['mean_abs_error']:.4f}")
    base = report["baseline_offline_mean_reward"]["mean_abs_error"]
    print(f"{'offline mean reward':>28} | {'-':>11} | {base:.4f}")
    for p in report["per_round"]:
        print(f"{'round ' + str(p['round']):>28} | {p['correlation']:>11.3f} | {p['mean_abs_error']:.4f}")
    print(f"{'steps':>28} | mean error (predicted - true) | mean abs error")
    for b in report["by_step_range"]:
        print(f"{b['steps']:>28} | {b['mean_error']:>29.4f} | {b['mean_abs_error']:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
