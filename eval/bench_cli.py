"""Start-up time of the command line: `seqmeta --help` and `seqmeta --version`.

    python eval/bench_cli.py [--repeats 10] [--compare /path/to/another/checkout]

Each command runs in a fresh interpreter, interleaved with the others, ``--repeats`` times; prints the median
and the range in seconds, beside a bare interpreter (`python -c pass`, the floor) and `import torch,
transformers` (what a command pays when it imports the model stack). ``--compare`` runs the same commands
from another checkout's source (e.g. a `git worktree` of an older commit) in the same run: before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    # From the source root: `python -m` puts the working folder first on the path.
    subprocess.run(argv, env=env, cwd=env.get("PYTHONPATH"), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compare", default=None, help="another checkout whose seqmeta/ to time in the same run")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    here = Path(__file__).resolve().parents[1]
    sources = {"this checkout": here}
    if args.compare:
        other = Path(args.compare).resolve()
        if not (other / "seqmeta" / "__init__.py").exists():
            parser.error(f"--compare {other} has no seqmeta/ package: give a checkout's root folder")
        sources[f"{other}"] = other
    cases: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass (floor)": ([sys.executable, "-c", "pass"], dict(os.environ)),
        "import torch, transformers": (
            [sys.executable, "-c", "import torch, transformers.modeling_utils"],
            dict(os.environ),
        ),
    }
    for name, root in sources.items():
        env = dict(os.environ, PYTHONPATH=str(root))
        for flag in ("--help", "--version"):
            cases[f"seqmeta {flag} ({name})"] = ([sys.executable, "-m", "seqmeta", flag], env)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, (argv, env) in cases.items():
            times[name].append(timed(argv, env))
    print(f"start-up, {args.repeats} interleaved runs each: median (min - max) in seconds")
    for name, values in times.items():
        print(f"  {name:60s} {statistics.median(values):6.2f}  ({min(values):.2f} - {max(values):.2f})")


if __name__ == "__main__":
    main()
