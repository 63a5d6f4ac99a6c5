"""The self-supervised phase against its controls, under the own-exploration protocol.

    python eval/self_supervision.py --data data/cheetah-vel-mixed --output-dir runs/eval/smac \
        --model offline=runs/cv/model --model "true rewards=runs/ss-true/model" \
        --model "self-labeled=runs/ss-predicted/model" --rounds 4 --episodes 10

Every model runs the same protocol in the held-out tasks (same seed): round 0 without a prompt, round
r prompted with its own episodes of rounds < r, with the rewards it observed. Prints the normalized
score per round for each model. The models are given in this order: one or more offline controls
(a: the offline model; a': the same extra steps on offline data only), then the true-reward upper
bound b, then the self-labeled model c; for each control it prints the fraction of the gap
(c - a) / (b - a) recovered, per round and on the mean of the prompted rounds. Writes each model's
eval_results.json under output-dir/NAME, self_supervision.json and rounds.png.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from seqmeta.evaluation import EvalProtocol, evaluate
from seqmeta.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument(
        "--model", action="append", required=True, help="NAME=MODEL_DIR, repeated: controls, then b, then c"
    )
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--tasks", default="test")
    parser.add_argument("--rounds", type=int, default=4, help="exploration rounds 0..rounds-1")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    out = Path(args.output_dir)
    protocol = EvalProtocol(
        data=args.data,
        tasks=args.tasks,
        prompt_source="own",
        prompt_trajectories=",".join(map(str, range(args.rounds))),
        episodes=args.episodes,
        seed=args.seed,
    )
    scores = {}
    for item in args.model:
        name, _, path = item.partition("=")
        results_file = out / name / "eval_results.json"
        saved = json.loads(results_file.read_text()) if results_file.exists() else None
        if saved and {k: saved["protocol"][k] for k in asdict(protocol)} == asdict(protocol):
            results = saved  # resumable: a model already evaluated under this protocol is read back
        else:
            results = evaluate(load_model(path), protocol, output_dir=out / name, progress=False)
        scores[name] = [s["normalized"] for s in results["settings"]]
        print(f"evaluated {name} ({path}): {results['wall_seconds']:.0f} s")

    names = list(scores)
    print(f"\nheld-out tasks, own exploration, normalized score per round ({args.episodes} episodes per task)")
    print(f"{'model':>22} | " + " | ".join(f"round {r}" for r in range(args.rounds)) + " | mean of rounds 1+")
    for name in names:
        s = scores[name]
        print(f"{name:>22} | " + " | ".join(f"{x:>7.1f}" for x in s) + f" | {np.mean(s[1:]):>17.1f}")
    report = {"scores": scores, "gap_recovered": {}}
    if len(names) >= 3:
        b, c = np.asarray(scores[names[-2]]), np.asarray(scores[names[-1]])
        for control in names[:-2]:
            a = np.asarray(scores[control])
            per_round = (c - a) / (b - a)
            mean = (np.mean(c[1:]) - np.mean(a[1:])) / (np.mean(b[1:]) - np.mean(a[1:]))
            report["gap_recovered"][control] = {"per_round": per_round.tolist(), "mean_rounds_1+": float(mean)}
            row = " | ".join(f"{x:>7.2f}" for x in per_round) + f" | {mean:>17.2f}"
            print(f"{'gap closed, ' + control[:10]:>22} | {row}")
    (out / "self_supervision.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(scores, out / "rounds.png")
    print(f"\nplot: {out / 'rounds.png'}")


def _plot(scores: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in scores.items():
        ax.plot(range(len(s)), s, marker="o", label=name)
    ax.axhline(100, color="gray", linestyle="--", linewidth=1, label="expert")
    ax.set_xlabel("exploration round (prompted with its own earlier rounds)")
    ax.set_ylabel("normalized score, held-out tasks")
    ax.set_xticks(range(len(next(iter(scores.values())))))
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
