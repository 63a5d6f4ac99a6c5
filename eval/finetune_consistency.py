"""MACAW's consistency property, measured: fine-tuned return vs number of trajectories of the new tasks.

For each N, a trained model is fine-tuned (same steps for every N) on the first N episodes of each
held-out task, then rolled out in those tasks prompted with the same N episodes. The baseline beside
it, in the same run, is the trained model prompted with those N episodes and not fine-tuned.

    python eval/finetune_consistency.py --model outputs/train/cheetah-vel/model \
        --data data/cheetah-vel-test-expert --trajectories 1,2,5,10,20,50 --method awr

The data must hold at least max(N) episodes of each chosen task (`seqmeta collect --tasks test
--episodes-per-task 50`). Writes a JSON of every figure to --out.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from seqmeta.data.dataset import load_trajectories
from seqmeta.evaluation import evaluate_with_demos
from seqmeta.finetune import FinetuneConfig, choose_episodes, finetune
from seqmeta.models import load_model


def scores(model, data, demos, episodes, seed) -> tuple[float, float]:
    """Mean return and mean normalized score over the tasks."""
    returns = evaluate_with_demos(model, data, demos, episodes=episodes, seed=seed)
    family = data.family
    mean = float(np.mean([r.mean() for r in returns.values()]))
    normalized = float(np.mean([family.normalized_score(r.mean(), t, data.meta.task_set) for t, r in returns.items()]))
    return mean, normalized


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="trajectories of the new tasks")
    parser.add_argument("--tasks", default="test")
    parser.add_argument("--trajectories", default="1,2,5,10,20,50")
    parser.add_argument("--method", default="awr", choices=["full", "lora", "awr"])
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps, the same for every N")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes per task")
    parser.add_argument("--seed", type=int, default=2026, help="evaluation seed")
    parser.add_argument("--out", default="outputs/finetune_consistency.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = load_trajectories(args.data)
    pretrained = load_model(args.model)
    rows = []
    print(f"{'N':>4} {'in-context return':>18} {'normalized':>10} {f'{args.method} return':>14} {'normalized':>10}")
    for n in [int(x) for x in args.trajectories.split(",")]:
        demos = choose_episodes(data, args.tasks, n)
        base = scores(pretrained, data, demos, args.episodes, args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            config = FinetuneConfig(
                model=args.model,
                data=args.data,
                output_dir=tmp,
                method=args.method,
                tasks=args.tasks,
                trajectories=n,
                max_steps=args.steps,
                batch_size=args.batch_size,
                learning_rate=args.learning_rate,
                checkpoint_every=args.steps,
                report_to="none",
            )
            tuned = scores(load_model(finetune(config)), data, demos, args.episodes, args.seed)
        rows.append({"trajectories": n, "in_context": base, args.method: tuned})
        print(f"{n:>4} {base[0]:>18.2f} {base[1]:>10.1f} {tuned[0]:>14.2f} {tuned[1]:>10.1f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
