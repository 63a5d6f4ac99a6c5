"""Benchmark: context-window sampling throughput, seqmeta's samplers against ``datasets`` indexing.

    python eval/bench_sampler.py                      # 1M transitions, K=20, batch 256, one core

Builds a 1M-transition dataset on disk (1,000 episodes x 1,000 steps, HalfCheetah-sized: obs 17,
act 6) through seqmeta's own writer, loads it back, and measures in the same run:

- ``WindowSampler`` windows/s (and ``PromptSampler`` prompt segments/s);
- the same windows cut through ``datasets`` indexing (``ds[start:end]`` per window in numpy format,
  then padded), the way a typical ``__getitem__``-based loader does it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the bar is stated

import numpy as np

from seqmeta.data.dataset import load_trajectories, write_dataset
from seqmeta.data.episodes import Episodes
from seqmeta.data.samplers import PromptSampler, WindowSampler
from seqmeta.tasks import get_family


def synthetic_episodes(num_episodes: int, length: int, num_tasks: int = 40, seed: int = 0) -> Episodes:
    rng = np.random.default_rng(seed)
    n = num_episodes * length
    return Episodes(
        observations=rng.standard_normal((n, 17), dtype=np.float32),
        actions=rng.uniform(-1, 1, (n, 6)).astype(np.float32),
        rewards=rng.standard_normal(n).astype(np.float32),
        terminated=np.zeros(n, bool),
        truncated=np.tile(np.arange(length) == length - 1, num_episodes),
        lengths=np.full(num_episodes, length),
        task_index=np.arange(num_episodes) % num_tasks,
        quality=np.array(["expert"] * num_episodes, dtype=object),
    )


def rate(fn, items_per_call: int, seconds: float) -> float:
    fn()  # warm-up
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls * items_per_call / (time.perf_counter() - start)


def datasets_indexing_batch(hf, episodes, rng, batch: int, k: int) -> list[dict[str, np.ndarray]]:
    """The baseline: per window, one ``ds[start:end]`` slice through datasets, then left-pad."""
    cum = np.cumsum(episodes["length"])
    out = []
    for draw in rng.integers(0, cum[-1], size=batch):
        e = int(np.searchsorted(cum, draw, side="right"))
        end = int(episodes["start"][e] + draw - (cum[e] - episodes["length"][e]))
        start = max(int(episodes["start"][e]), end - k + 1)
        rows = hf[start : end + 1]
        window = {}
        for name, value in rows.items():  # the same fields WindowSampler returns, left-padded
            padded = np.zeros((k, *value.shape[1:]), np.float32)
            padded[k - len(value) :] = value
            window[name] = padded
        out.append(window)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--context", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_dataset(synthetic_episodes(args.episodes, args.length), get_family("cheetah-vel"), f"{tmp}/d")
        written = time.perf_counter() - start
        start = time.perf_counter()
        dataset = load_trajectories(f"{tmp}/d")
        sampler = WindowSampler(dataset, args.context, args.batch, seed=0)
        ready = time.perf_counter() - start
        prompts = PromptSampler(dataset, num_segments=1, segment_length=args.context, seed=0)
        batch = sampler.sample()

        ours = rate(sampler.sample, args.batch, args.seconds)
        prompt_rate = rate(
            lambda: prompts.sample(batch["task_index"], batch["episode_index"]), args.batch, args.seconds
        )
        hf = dataset.hf.with_format("numpy", columns=["observation", "action", "reward", "return_to_go"])
        rng = np.random.default_rng(0)
        baseline = rate(
            lambda: datasets_indexing_batch(hf, dataset.episodes, rng, args.batch, args.context),
            args.batch,
            args.seconds,
        )

    n = args.episodes * args.length
    print(f"dataset: {n:,} transitions ({args.episodes} episodes x {args.length}), obs 17, act 6")
    print(f"write {written:.2f} s; load + sampler setup {ready:.2f} s")
    print(f"K={args.context}, batch {args.batch}, 1 thread")
    print(f"{'method':<44} {'windows/s':>12}")
    print(f"{'seqmeta WindowSampler':<44} {ours:>12,.0f}")
    print(f"{'seqmeta PromptSampler (1 segment per sample)':<44} {prompt_rate:>12,.0f}")
    print(f"{'datasets indexing ds[start:end] per window':<44} {baseline:>12,.0f}")
    print(f"speed-up over datasets indexing: {ours / baseline:.0f}x")


if __name__ == "__main__":
    main()
