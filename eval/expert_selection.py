"""How a behavior run's snapshots do on the training tasks against the held-out ones: what choosing the expert on
either would pick.

    python eval/expert_selection.py --family walker-params --output-dir runs/behavior/walker-params-taskset \\
        --from-step 100000

Every snapshot from ``--from-step`` on, evaluated as ``python -m seqmeta.behavior export`` does (one deterministic
episode per task, the export's seed): its mean return on the family's training tasks (what export chooses the
expert by) beside its mean return on the held-out tasks (what normalized scores divide by), and the evaluation
logged during training (the held-out tasks and three training tasks: how the experts exported before that rule
were chosen). A snapshot chosen on tasks it is then measured on looks better there than elsewhere; the table shows
by how much.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from seqmeta.behavior.export import evaluated_on, evaluations
from seqmeta.errors import SeqmetaError
from seqmeta.tasks import get_family


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", required=True)
    parser.add_argument("--output-dir", required=True, help="the behavior run folder (its snapshots/ and log.jsonl)")
    parser.add_argument("--from-step", type=int, default=0, help="skip the snapshots before this step")
    args = parser.parse_args()

    run = Path(args.output_dir)
    try:  # an unknown family or a run without evaluated snapshots: one line, and what to give instead
        family = get_family(args.family)
        records = [r for r in evaluations(run, args.family) if r["step"] >= args.from_step]
    except (SeqmetaError, FileNotFoundError) as e:
        parser.error(str(e))
    if not records:
        parser.error(f"{run} has no evaluated snapshot from step {args.from_step} on: give a smaller --from-step")
    task_set = family.task_set()
    train = evaluated_on(args.family, run, records, list(task_set.train_indices))
    test = evaluated_on(args.family, run, records, list(task_set.test_indices))
    columns = {
        "training tasks": [float(np.mean(r["return"])) for r in train],
        "held-out tasks": [float(np.mean(r["return"])) for r in test],
        "logged": [float(np.mean(r["return"])) for r in records],
    }
    print(f"{args.family}, {run}: mean return of one deterministic episode per task")
    print(f"{'step':>9} " + " ".join(f"{name:>15}" for name in columns))
    best = {name: int(np.argmax(values)) for name, values in columns.items()}
    for i, r in enumerate(records):
        cells = [f"{values[i]:>14.1f}{'*' if best[name] == i else ' '}" for name, values in columns.items()]
        print(f"{r['step']:>9} " + " ".join(cells))
    print("* the best of its column: the expert chosen on those tasks")
    for name, how in (("training tasks", "the training tasks"), ("logged", "the logged evaluations")):
        i = best[name]
        print(
            f"chosen on {how}: step {records[i]['step']}, {columns['training tasks'][i]:.1f} on the training "
            f"tasks, {columns['held-out tasks'][i]:.1f} on the held-out ones"
        )


if __name__ == "__main__":
    main()
