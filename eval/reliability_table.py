"""The reliability suite by category and outcome: the table the README shows.

    python eval/reliability_table.py          # count the cases (collection only, seconds)
    python eval/reliability_table.py --run    # also run them and count passes

A case is one collected test item (each parametrized value counts) marked
``@pytest.mark.reliability(category, outcome)`` anywhere under ``tests/``: bad options, bad data, bad
models, faults and attacks, each asserting its exact outcome (a clear one-line error with nothing
written, the files untouched, or the right result).
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


class Cases:
    """A pytest plugin that records each marked item's category and outcome, and its result."""

    def __init__(self):
        self.kind: dict[str, tuple[str, str]] = {}
        self.passed: set[str] = set()

    def pytest_collection_modifyitems(self, items):
        for item in items:
            mark = item.get_closest_marker("reliability")
            if mark:
                self.kind[item.nodeid] = tuple(mark.args)
        items[:] = [item for item in items if item.nodeid in self.kind]

    def pytest_runtest_logreport(self, report):
        if report.when == "call" and report.passed:
            self.passed.add(report.nodeid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="run the cases too and count the passes")
    args = parser.parse_args()
    cases = Cases()
    flags = ["-q", "-p", "no:cacheprovider", str(ROOT / "tests")] + ([] if args.run else ["--collect-only"])
    code = pytest.main(flags, plugins=[cases])
    counts = collections.Counter(cases.kind.values())
    outcomes = sorted({o for _, o in counts})
    categories = sorted({c for c, _ in counts})
    print("\n| category | " + " | ".join(outcomes) + " | cases |" + (" passed |" if args.run else ""))
    print("|---" * (len(outcomes) + 2 + args.run) + "|")
    for category in categories:
        row = [counts[(category, o)] for o in outcomes]
        cells = " | ".join(str(n) if n else "" for n in row)
        passed = sum(1 for node, kind in cases.kind.items() if kind[0] == category and node in cases.passed)
        print(f"| {category} | {cells} | {sum(row)} |" + (f" {passed} |" if args.run else ""))
    total = sum(counts.values())
    print(
        "| all | "
        + " | ".join(str(sum(counts[(c, o)] for c in categories)) for o in outcomes)
        + f" | {total} |"
        + (f" {len(cases.passed & set(cases.kind))} |" if args.run else "")
    )
    raise SystemExit(code if args.run else 0)


if __name__ == "__main__":
    main()
