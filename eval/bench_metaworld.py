"""Benchmark: steps/s of a Meta-World env as seqmeta runs it, against Meta-World's own contact test.

    python eval/bench_metaworld.py                     # push and pick-place, 3 interleaved repeats

seqmeta replaces Meta-World's gripper-object contact test (``SawyerXYZEnv.touching_object``, a Python
loop over every contact, called by the push and pick-place rewards at every step) with the same test on
arrays (``seqmeta.tasks.metaworld._touching_object``; ``tests/test_metaworld.py`` checks the answers are
the same). For each class, one held-out task's env steps through a 500-step episode with the scripted
expert acting (the expert's own time included, as in collection), once with each contact test in turn,
``--repeats`` times; it prints the median steps/s of each and their ratio, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

import seqmeta
from seqmeta.tasks.metaworld import ScriptedExperts, _touching_object, goal_features, metaworld


def steps_per_second(env, expert, goal: np.ndarray, steps: int) -> float:
    obs, _ = env.reset()
    start = time.perf_counter()
    for _ in range(steps):
        obs, *_ = env.step(expert(obs[None], goal)[0])
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", default="push,pick-place", help="ML1 task classes, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    metaworld()
    from metaworld.sawyer_xyz_env import SawyerXYZEnv

    tests = {"Meta-World's contact test": _touching_object.replaces, "seqmeta's": _touching_object}
    print(f"one env, scripted expert acting, 500-step episodes, median of {args.repeats} interleaved repeats")
    print(f"{'class':<12} | {'Meta-World contact test':>24} | {'seqmeta contact test':>21} | ratio")
    try:
        for name in args.classes.split(","):
            family = seqmeta.get_family(f"metaworld-ml1-{name}")
            task = family.task_set().params[family.task_set().test_indices[0]]
            classes = (task["task_class"],)
            expert, goal = ScriptedExperts(classes), goal_features(task, classes)[None]
            env = family.make_env(task)
            rates: dict[str, list[float]] = {k: [] for k in tests}
            for _ in range(args.repeats):
                for label, test in tests.items():
                    SawyerXYZEnv.touching_object = test
                    rates[label].append(steps_per_second(env, expert, goal, family.horizon))
            env.close()
            theirs, ours = (float(np.median(v)) for v in rates.values())
            print(f"{name:<12} | {theirs:>18,.0f} st/s | {ours:>15,.0f} st/s | {ours / theirs:.2f}x")
    finally:
        SawyerXYZEnv.touching_object = _touching_object


if __name__ == "__main__":
    main()
