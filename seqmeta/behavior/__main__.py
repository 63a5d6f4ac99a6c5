"""Recipe: train a family's goal-conditioned SAC behavior policy, then export its skill levels.

    python -m seqmeta.behavior train --family cheetah-vel            # ~40 min on one core
    python -m seqmeta.behavior train --family cheetah-vel            # again: resumes
    python -m seqmeta.behavior status --family cheetah-vel           # its evaluations so far (+ learning_curve.png)
    python -m seqmeta.behavior export --family cheetah-vel           # -> runs/behavior/cheetah-vel/export
    python -m seqmeta.behavior export --family cheetah-vel --install # -> seqmeta/behavior/weights/ (ships)

Training checkpoints every ``--checkpoint-every`` steps and resumes from the latest checkpoint when
run again on the same ``--output-dir``. Export evaluates every snapshot on the family's training tasks,
picks the skill levels by those returns (``--choose-on logged``: by the evaluations logged during
training instead; see ``seqmeta.behavior.export``) and writes them as safetensors into the run's
``export/`` folder; only ``--install`` replaces the weights shipped inside the package (what ``collect``
then uses).
"""

import argparse
import logging
from pathlib import Path

from seqmeta.behavior.export import CHOOSE_ON, behavior_status, export_skill_levels
from seqmeta.behavior.train import TASK_SAMPLING, BehaviorTrainConfig, train_behavior_policy
from seqmeta.errors import SeqmetaError
from seqmeta.tasks import get_family

WEIGHTS = Path(__file__).resolve().parent / "weights"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m seqmeta.behavior", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("verb", choices=["train", "status", "export"])
    parser.add_argument("--family", default="cheetah-vel")
    parser.add_argument("--output-dir", default=None, help="run folder (default runs/behavior/FAMILY)")
    parser.add_argument("--total-steps", type=int, default=BehaviorTrainConfig.total_steps)
    parser.add_argument("--checkpoint-every", type=int, default=BehaviorTrainConfig.checkpoint_every)
    parser.add_argument("--eval-every", type=int, default=BehaviorTrainConfig.eval_every)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--task-sampling",
        choices=TASK_SAMPLING,
        default=BehaviorTrainConfig.task_sampling,
        help="train: each episode's task, drawn from the family's law or from its task set (held-out tasks included)",
    )
    parser.add_argument(
        "--choose-on",
        choices=CHOOSE_ON,
        default="train",
        help="export: pick the levels by each snapshot's returns on the training tasks, measured now (default), or "
        "by the evaluations logged during training (held-out tasks among them)",
    )
    parser.add_argument(
        "--install", action="store_true", help="export: replace the package's shipped weights (default: RUN/export)"
    )
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    try:
        run_verb(args)
    except (SeqmetaError, FileNotFoundError) as e:  # a refusal: one line, exit 2
        parser.exit(2, f"error: {e}\n")


def run_verb(args: argparse.Namespace) -> None:
    get_family(args.family)  # an unknown name is refused with the list of families
    run = Path(args.output_dir or f"runs/behavior/{args.family}")
    if args.verb == "train":
        config = BehaviorTrainConfig(
            family=args.family,
            output_dir=str(run),
            total_steps=args.total_steps,
            checkpoint_every=args.checkpoint_every,
            eval_every=args.eval_every,
            seed=args.seed,
            task_sampling=args.task_sampling,
        )
        train_behavior_policy(config)
    elif args.verb == "status":
        print(behavior_status(run, args.family))
    else:
        target = WEIGHTS / args.family if args.install else run / "export"
        export_skill_levels(args.family, run, target, args.choose_on)
        print(f"exported to {target}" + ("" if args.install else " (--install ships them in the package)"))


if __name__ == "__main__":
    main()
