"""Draw the Meta-World families' task lists with the metaworld package and write them as the package's table.

    python eval/metaworld_tasks.py             # -> outputs/metaworld_tasks.json, and says if it differs
    python eval/metaworld_tasks.py --install   # -> seqmeta/tasks/metaworld_tasks.json (the families read it)

Every family's tasks are Meta-World's own: ``metaworld.ML1(class, seed=1337)`` and ``metaworld.ML10(seed=1337)``,
their train tasks then their test tasks, each ``{"task_class", "rand_vec"}``. The families read the shipped
table, so they are known without building Meta-World envs and never change under a user.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seqmeta.io import atomic_write_json
from seqmeta.tasks.families import ML1_MEDIUM_NOISE, SEED
from seqmeta.tasks.metaworld import benchmark_tasks, table_key

TABLE = Path(__file__).resolve().parent.parent / "seqmeta" / "tasks" / "metaworld_tasks.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="outputs/metaworld_tasks.json", help="the table to write")
    parser.add_argument("--install", action="store_true", help="write the package's table (the families read it)")
    args = parser.parse_args()
    out = TABLE if args.install else Path(args.output)
    if out.resolve() == TABLE.resolve() and not args.install:
        parser.error(f"--output {out} is the package's shipped table: pass --install to replace it")
    table = {}
    for benchmark, task_class in [("ML1", f"{c}-v3") for c in ML1_MEDIUM_NOISE] + [("ML10", None)]:
        train, test = benchmark_tasks(benchmark, task_class, SEED)
        table[table_key(benchmark, task_class)] = {"seed": SEED, "train": train, "test": test}
        print(f"{table_key(benchmark, task_class)}: {len(train)} train, {len(test)} test tasks", flush=True)
    atomic_write_json(out, table)
    same = TABLE.exists() and json.loads(TABLE.read_text()) == table
    print(f"wrote {out}" + ("" if args.install else f" ({'the same as' if same else 'DIFFERENT from'} {TABLE})"))


if __name__ == "__main__":
    main()
