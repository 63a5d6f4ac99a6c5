"""Check a family's behavior levels on its test tasks: return (and velocity or success) per task.

    python eval/behavior_levels.py --family cheetah-vel                    # Prompt-DT split test tasks
    python eval/behavior_levels.py --family metaworld-ml1-push --episodes 3

For each level (random, mixed, medium, expert) and each test task, runs ``--episodes`` episodes
and prints the mean return and, for the families whose experts are trained (locomotion), the mean
forward velocity beside the task's target, so the expert bar (return >= -50, |mean v - v*| <= 0.1
on Cheetah-Vel) can be read off directly. For families with a scripted expert (Point-Robot,
Meta-World) it prints the success rate where the env reports success: the figures behind the
noise of each level. Past 10 test tasks, one summary line per level (mean over tasks, the worst task).
"""

from __future__ import annotations

import argparse

import numpy as np

from seqmeta.behavior.evaluate import run_goal_conditioned
from seqmeta.behavior.policies import available_qualities, load_behavior_policy
from seqmeta.data.collect import rollout
from seqmeta.tasks import get_family
from seqmeta.tasks.family import describe_params


def run_level(family, quality: str, tasks: list[int], episodes: int, seed: int):
    """(episodes, tasks) returns and mean x-velocities of one behavior level, all envs in one batch."""
    policy = load_behavior_policy(family, quality, episodes * len(tasks))
    rng = np.random.default_rng(seed)
    policy.start_episodes(np.arange(policy.num_envs), rng)
    result = run_goal_conditioned(family, tasks, lambda obs, goals: policy.act(obs, goals, rng), episodes, seed)
    return result["return"], result["mean_velocity"]


def scripted_level(family, quality: str, tasks: list[int], episodes: int, seed: int):
    """(tasks, episodes) returns and successes (NaN where the env reports none) of a scripted level."""
    out = rollout(family, quality, tasks, episodes, seed=seed, progress=False)
    success = out.success
    solved = np.full(out.num_episodes, np.nan) if success is None else np.logical_or.reduceat(success, out.starts)
    row = np.array([tasks.index(t) for t in out.task_index])  # each episode's task, as a row
    returns = np.stack([out.episode_returns[row == i] for i in range(len(tasks))])
    solved_by_task = np.stack([solved[row == i] for i in range(len(tasks))])
    return returns, solved_by_task


def print_scripted(family, task_set, tasks: list[int], episodes: int, seed: int) -> None:
    print(f"{'level':<8} {'task':>4} {'params':>40} {'return':>18} {'success':>8}")
    for quality in ["random", *[q for q in ("mixed", "medium", "expert") if q in available_qualities(family)]]:
        returns, solved = scripted_level(family, quality, tasks, episodes, seed)
        rate = [f"{100 * r:7.1f}%" if np.isfinite(r) else f"{'-':>8}" for r in solved.mean(axis=1)]
        mean_rate = f"{100 * solved.mean():7.1f}%" if np.isfinite(solved).all() else f"{'-':>8}"
        if len(tasks) <= 10:
            for i, t in enumerate(tasks):
                label = describe_params(task_set.params[t])[:40]
                print(f"{quality:<8} {t:>4} {label:>40} {returns[i].mean():10.1f} ± {returns[i].std():5.1f} {rate[i]}")
        worst = int(np.argmin(returns.mean(axis=1)))
        print(
            f"{quality:<8} {'mean':>4} {'':>40} {returns.mean():10.1f} ± {returns.mean(axis=1).std():5.1f} "
            f"{mean_rate}   worst task {tasks[worst]}: {returns[worst].mean():.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="cheetah-vel")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    family = get_family(args.family)
    task_set = family.task_set()
    tasks = list(task_set.test_indices)
    print(f"{family.name}, task set {task_set.name}, {len(tasks)} test tasks, {args.episodes} episodes each")
    if family.expert is not None:
        print_scripted(family, task_set, tasks, args.episodes, args.seed)
        return
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
