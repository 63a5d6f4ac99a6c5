"""Check a family's shipped behavior levels on its test tasks: return and mean velocity per task.

    python eval/behavior_levels.py --family cheetah-vel          # Prompt-DT split test tasks

For each level (random, mixed, medium, expert) and each test task, runs ``--episodes`` episodes
and prints the mean 200-step return and, for locomotion families, the mean forward velocity beside
the task's target, so the expert bar (return >= -50, |mean v - v*| <= 0.1 on Cheetah-Vel) can be
read off directly.
"""

from __future__ import annotations

import argparse

import numpy as np

from seqmeta.behavior.evaluate import run_goal_conditioned
from seqmeta.behavior.policies import available_qualities, load_behavior_policy
from seqmeta.tasks import get_family


def run_level(family, quality: str, tasks: list[int], episodes: int, seed: int):
    """(episodes, tasks) returns and mean x-velocities of one behavior level, all envs in one batch."""
    policy = load_behavior_policy(family, quality, episodes * len(tasks))
    rng = np.random.default_rng(seed)
    policy.start_episodes(np.arange(policy.num_envs), rng)
    result = run_goal_conditioned(family, tasks, lambda obs, goals: policy.act(obs, goals, rng), episodes, seed)
    return result["return"], result["mean_velocity"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="cheetah-vel")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    family = get_family(args.family)
    task_set = family.task_set()
    tasks = list(task_set.test_indices)
    print(f"{family.name}, task set {task_set.name}, test tasks {tasks}, {args.episodes} episodes each")
    print(f"{'level':<8} {'task':>4} {'params':>24} {'return':>16} {'mean velocity':>14}")
    for quality in ["random", *[q for q in ("mixed", "medium", "expert") if q in available_qualities(family)]]:
        returns, velocity = run_level(family, quality, tasks, args.episodes, args.seed)
        for j, t in enumerate(tasks):
            label = ", ".join(f"{k}={v}" for k, v in task_set.params[t].items())[:24]
            print(
                f"{quality:<8} {t:>4} {label:>24} {returns[:, j].mean():9.2f} ± {returns[:, j].std():5.2f}"
                f" {velocity[:, j].mean():14.3f}"
            )
        print(f"{quality:<8} {'mean':>4} {'':>24} {returns.mean():9.2f}")


if __name__ == "__main__":
    main()
