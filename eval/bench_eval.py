"""Benchmark: evaluation throughput, env-steps/s with the model in the loop vs the bare simulator.

    python eval/bench_eval.py                  # Cheetah-Vel, 5 held-out tasks x 50 episodes x 200 steps

Both measured in the same run on the same 250 envs (one ``SyncVectorEnv``):

- simulator only: the vector env stepped with random actions (the ceiling);
- seqmeta sweep: ``seqmeta.evaluation.evaluate`` with one prompt setting (1 expert trajectory), the
  streaming agent choosing every action, the whole sweep one batch (model: the demo size, 3 layers,
  hidden 128, K = 20, untrained: speed does not depend on the weights).

The sweep's wall time includes env creation, prompt sampling and writing nothing to disk.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from gymnasium.vector import SyncVectorEnv

from seqmeta.data.collect import collect_dataset
from seqmeta.evaluation import EvalProtocol, evaluate
from seqmeta.models import PromptDTConfig, PromptDTModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="cheetah-vel")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = collect_dataset(args.family, "expert", f"{tmp}/d", tasks="test", episodes_per_task=1, progress=False)
        family, ts = data.family, data.family.task_set()
        tasks = list(ts.test_indices)
        n = len(tasks) * args.episodes
        model = PromptDTModel(PromptDTConfig.from_dataset(data, hidden_size=128, num_layers=3, context_length=20))

        envs = SyncVectorEnv([lambda p=ts.params[t]: family.make_env(p) for t in np.repeat(tasks, args.episodes)])
        envs.reset(seed=0)
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for _ in range(family.horizon):
            envs.step(rng.uniform(-1, 1, (n, *family.action_space.shape)).astype(np.float32))
        bare = n * family.horizon / (time.perf_counter() - start)
        envs.close()

        protocol = EvalProtocol(data=str(data.path), prompt_trajectories="1", episodes=args.episodes)
        start = time.perf_counter()
        evaluate(model, protocol, progress=False)
        seconds = time.perf_counter() - start
    steps = n * family.horizon
    print(
        f"{args.family}: {len(tasks)} tasks x {args.episodes} episodes x {family.horizon} steps, {args.threads} threads"
    )
    print(f"  simulator only (random actions):  {bare:10,.0f} env-steps/s")
    print(f"  seqmeta sweep (model in the loop): {steps / seconds:10,.0f} env-steps/s ({seconds:.1f} s for the sweep)")
    print(f"  model-in-the-loop / simulator:     {steps / seconds / bare:10.2f}")


if __name__ == "__main__":
    main()
