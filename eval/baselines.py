"""Baselines from the same code and data, in one table: held-out tasks, one evaluation protocol.

    python eval/baselines.py --recipe point_robot --data outputs/demo/data/point-robot \
        --out outputs/baselines/point-robot

Variants, each meta-trained with the recipe (only the conditioning switched) unless --use gives a
trained model for it (``--use prompt-dt=DIR``):

- bc: multi-task behavior cloning (no prompt, no return);
- mt-dt: multi-task decision transformer (return, no prompt);
- prompt-only: prompt, no return;
- prompt-dt: prompt and return;
- prompt-dt+ft: prompt-dt fine-tuned (full) on the first N expert episodes of each held-out task.

Prompted variants are evaluated with N expert prompt trajectories (the same first N episodes the
fine-tuned variant learned from), the others with none; everything else is the same protocol
(episodes, seed, target rule). Training runs resume; finished ones are reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seqmeta.configs import load_config
from seqmeta.evaluation import EvalProtocol, evaluate
from seqmeta.finetune import FinetuneConfig, finetune
from seqmeta.models import load_model
from seqmeta.trainer import TrainConfig, train

VARIANTS = {"bc": (False, False), "mt-dt": (False, True), "prompt-only": (True, False), "prompt-dt": (True, True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--data", required=True, help="offline data with every task (training and held-out)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--use", action="append", default=[], help="VARIANT=MODEL_DIR: reuse a trained model")
    parser.add_argument("--trajectories", type=int, default=4, help="prompt / fine-tuning trajectories per task")
    parser.add_argument("--finetune-steps", type=int, default=500)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    out = Path(args.out)
    given = dict(item.split("=", 1) for item in args.use)

    models = {}
    for name, (use_prompt, use_return) in VARIANTS.items():
        if name in given:
            models[name] = Path(given[name])
            continue
        run = out / name
        config = load_config(
            TrainConfig,
            args.recipe,
            dict(data=args.data, output_dir=str(run), use_prompt=use_prompt, use_return=use_return, report_to="none"),
        )
        models[name] = run / "model" if (run / "model" / "config.json").exists() else train(config, resume=True)
    tuned = out / "prompt-dt+ft"
    if not (tuned / "model" / "config.json").exists():
        ft = FinetuneConfig(
            model=str(models["prompt-dt"]),
            data=args.data,
            output_dir=str(tuned),
            tasks="test",
            trajectories=args.trajectories,
            max_steps=args.finetune_steps,
            learning_rate=3e-4,
            report_to="none",
        )
        finetune(ft, resume=True)
    models["prompt-dt+ft"] = tuned / "model"

    rows = {}
    for name, path in models.items():
        model = load_model(path)
        n = args.trajectories if model.config.use_prompt else 0
        protocol = EvalProtocol(data=args.data, prompt_trajectories=str(n), episodes=args.episodes, seed=args.seed)
        setting = evaluate(model, protocol, output_dir=out / "eval" / name, progress=False)["settings"][0]
        rows[name] = {
            "prompt_trajectories": n,
            "mean_return": setting["mean_return"],
            "normalized": setting["normalized"],
        }
        print(f"{name:<14} prompt traj. {n}: mean return {rows[name]['mean_return']:9.2f}, ", end="")
        print(f"normalized {rows[name]['normalized']:6.1f}", flush=True)
    (out / "baselines.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
    print("\n| variant | prompt trajectories | mean return | normalized |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['prompt_trajectories']} | {r['mean_return']:.2f} | {r['normalized']:.1f} |")


if __name__ == "__main__":
    main()
