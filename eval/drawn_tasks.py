"""Own exploration on task parameters drawn afresh from the family's distribution (none of its task lists).

    python eval/drawn_tasks.py --family point-robot-sparse --tasks 40 \
        --model runs/adaptation/point-robot-sparse/prompt-seed0/model --model ...
    python eval/drawn_tasks.py --family point-robot-sparse --tasks 60 --episodes 16 --behavior search
    python eval/drawn_tasks.py --family point-robot-sparse --held-out --episodes 16 --behavior search

The five held-out tasks of a split are few; a model is also judged on tasks no split holds. This draws
``--tasks`` parameter sets with ``family.sample_params`` (seeded), runs the own-exploration protocol in each
(round 0 without a prompt, round r prompted with the agent's own episodes of rounds < r, ``--episodes`` per
task; target return: the model's own estimate), and prints, per model, each round's normalized score (0 =
the random policy, 100 = the shipped expert, both measured on the same drawn tasks in the same run) and the
mean of rounds 1-3. ``--behavior search`` scores the search behavior's own trials (round r = its episode r
in a trial) the same way: what a model imitating its trials can reach; it also prints the worst task's
mean of rounds 1-3, the goal that waits longest to be found.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", required=True)
    parser.add_argument("--model", action="append", default=[], help="a model folder (repeatable)")
    parser.add_argument("--behavior", action="append", default=[], help="a behavior with trials, e.g. search")
    parser.add_argument("--tasks", type=int, default=40, help="task parameter sets to draw")
    parser.add_argument(
        "--held-out", action="store_true", help="the family's held-out tasks (default split) instead of drawn ones"
    )
    parser.add_argument("--episodes", type=int, default=1, help="episodes per task and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=2026, help="draws the tasks and seeds the episodes")
    args = parser.parse_args()
    for name in ("tasks", "episodes", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.rounds < 2:
        parser.error(f"--rounds must be at least 2 (round 0, then rounds read from it), got {args.rounds}")
    if not args.model and not args.behavior:
        parser.error("name at least one --model or --behavior")
    if args.seed < 0:
        parser.error(f"--seed must be 0 or more, got {args.seed}")

    from seqmeta.behavior.policies import load_behavior_policy
    from seqmeta.data.collect import collect_episodes
    from seqmeta.errors import SeqmetaError
    from seqmeta.evaluation import own_rounds
    from seqmeta.models import load_model
    from seqmeta.tasks import get_family

    family = get_family(args.family)
    rng = np.random.default_rng(args.seed)
    params = [family.sample_params(rng) for _ in range(args.tasks)]
    what = f"{args.tasks} drawn tasks (seed {args.seed})"
    if args.held_out:
        task_set = family.task_set()
        params = [task_set.params[t] for t in task_set.test_indices]
        args.tasks, what = len(params), f"the {len(params)} held-out tasks of {task_set.name}"
    slot_params = [p for p in params for _ in range(args.episodes)]

    def mean_return(quality: str) -> np.ndarray:
        episodes = collect_episodes(family, quality, params, args.episodes, args.seed, progress=False)
        return np.bincount(episodes.task_index, episodes.episode_returns) / args.episodes

    low, high = mean_return("random"), mean_return("expert")
    print(f"{args.family}: {what}, {args.episodes} episode(s) per task and round")

    def report(name: str, per_task: list[np.ndarray]) -> None:
        normalized = np.stack([100 * (r - low) / (high - low) for r in per_task])  # (rounds, tasks)
        rounds = " / ".join(f"{s:.1f}" for s in normalized.mean(1))
        scored = normalized[1:4]  # rounds 1-3, or fewer
        worst, mean = scored.mean(0).min(), scored.mean()
        label = f"rounds 1-{len(scored)}"
        print(f"  {name}: rounds 0..{len(per_task) - 1} {rounds}; {label} {mean:.1f} (worst task {worst:.1f})")

    for quality in args.behavior:
        try:
            trial = load_behavior_policy(family, quality, 1).trial_episodes
        except SeqmetaError as e:
            parser.error(str(e))
        if trial == 1:
            parser.error(f"--behavior {quality} has no trials (episodes that remember earlier ones): use search")
        if trial != args.rounds:
            parser.error(f"--behavior {quality} runs trials of {trial} episodes: --rounds must be {trial}")
        trials = collect_episodes(family, quality, params * args.episodes, args.rounds, args.seed, progress=False)
        task, returns = trials.task_index % args.tasks, trials.episode_returns
        rounds = [trials.trial_episode == r for r in range(args.rounds)]
        report(quality, [np.bincount(task[r], returns[r], minlength=args.tasks) / args.episodes for r in rounds])
    for path in args.model:
        model = load_model(path)
        history = own_rounds(
            model,
            family.env_fns(slot_params),
            family.horizon,
            args.rounds,
            lambda prompts, history: "model",  # the target return: the model's own estimate (if it reads returns)
            args.seed,
        )
        report(path, [h.returns.reshape(args.tasks, args.episodes).mean(1) for h in history])


if __name__ == "__main__":
    main()
