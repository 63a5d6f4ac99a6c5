"""Measure per-task reference returns (uniform random and shipped expert) for normalized scores.

    python eval/reference_returns.py                          # every family and task set
    python eval/reference_returns.py --family cheetah-vel     # one family
    python eval/reference_returns.py --family cheetah-vel --install

Writes ``--output`` (default ``outputs/reference_returns.json``; with ``--install`` the package's own
``seqmeta/tasks/reference_returns.json``, which normalized scores use), merged with the package's table,
and prints, per task, the random and expert mean returns side by side. A family without a shipped expert gets only its
random returns (expert: null), and scores on it cannot be normalized yet.
"""

from __future__ import annotations

import argparse
import fcntl
import json
from pathlib import Path

import numpy as np

from seqmeta.behavior.policies import available_qualities
from seqmeta.data.collect import measure_returns
from seqmeta.io import atomic_write_json
from seqmeta.tasks import get_family, list_families

TABLE = Path(__file__).resolve().parent.parent / "seqmeta" / "tasks" / "reference_returns.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", action="append", help="family to measure (repeatable; default: all)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task and policy")
    parser.add_argument("--seed", type=int, default=2026, help="evaluation seed (not a collection seed)")
    parser.add_argument("--output", default="outputs/reference_returns.json", help="the table to write")
    parser.add_argument("--install", action="store_true", help="write the package's table (normalized scores use it)")
    args = parser.parse_args()
    if args.episodes < 1:
        parser.error(f"--episodes must be at least 1, got {args.episodes}")
    out = TABLE if args.install else Path(args.output)
    if out.resolve() == TABLE.resolve() and not args.install:
        parser.error(f"--output {out} is the package's shipped table: pass --install to replace it")

    table: dict[str, dict] = {}  # this run's families, merged into the table when written
    for name in args.family or list_families():
        family = get_family(name)
        has_expert = "expert" in available_qualities(family)
        table[name] = {}
        for set_name, task_set in family.task_sets.items():
            random = measure_returns(family, "random", args.episodes, set_name, args.seed)
            expert = measure_returns(family, "expert", args.episodes, set_name, args.seed) if has_expert else None
            table[name][set_name] = {
                "random": [round(float(r), 3) for r in random],
                "expert": [round(float(r), 3) for r in expert] if expert is not None else [None] * len(task_set),
                "episodes_per_task": args.episodes,
                "seed": args.seed,
            }
            print(f"\n{name} / {set_name} ({args.episodes} episodes per task and policy)")
            print(f"{'task':>5} {'split':>6} {'params':>28} {'random':>10} {'expert':>10}")
            for i, params in enumerate(task_set.params):
                label = json.dumps(params)[:28]
                exp = f"{expert[i]:10.2f}" if expert is not None else f"{'-':>10}"
                print(f"{i:>5} {task_set.split_of(i):>6} {label:>28} {random[i]:10.2f} {exp}")
            test = list(task_set.test_indices)
            exp_test = f"{np.mean(expert[test]):.2f}" if expert is not None else "-"
            print(f"test-task mean: random {np.mean(random[test]):.2f}, expert {exp_test}")
            if expert is not None and (below := np.flatnonzero(expert < random)).size:
                print(
                    f"WARNING: the expert scores below random on tasks {below.tolist()}: scores on them cannot be "
                    "normalized (seqmeta refuses); train the behavior policy further before installing this table"
                )
    # Read the table again only now, under a lock: runs for other families may have written it meanwhile.
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        atomic_write_json(out, (json.loads(TABLE.read_text()) if TABLE.exists() else {}) | table)
    print(f"\nwrote {out}" + ("" if args.install else " (--install writes the package's table)"))


if __name__ == "__main__":
    main()
