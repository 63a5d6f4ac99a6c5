"""Benchmark: samples/s of the whole training step, seqmeta's trainer vs a plain loop around HF's DT.

    python eval/bench_train.py                  # batch 64 and 256, 2 threads, 3 interleaved repeats
    python eval/bench_train.py --batches 256 --steps 30 --profile   # where seqmeta's training step spends its time

One synthetic Cheetah-Vel-shaped dataset (observations 17, actions 6, 40 tasks x 5 episodes x 200
steps). Both sides draw the same batches from ``seqmeta.trainer.EpisodeBatches`` (same seed) and
train a model of the same size (3 layers, hidden 128, 1 head, K = 20) with AdamW and gradient
clipping:

- seqmeta: ``seqmeta.trainer.train`` itself (accelerate, sampling, prompt, action + reward + value
  losses, logging); samples/s is read from its train_log.jsonl, the first window (warm-up) left out;
- HF: ``transformers.DecisionTransformerModel`` in a plain PyTorch loop on the same windows with the same
  5-step prompt put before them in its window (as the official Prompt-DT feeds its prompt), sampling
  included, action MSE on the window's steps.

Rows: segments of K steps (the same 60 history tokens and the same 5-step prompt on both sides: seqmeta embeds
a prompt step as one token, HF as three), and seqmeta at the recipe's segment of 30 steps (what cheetah_vel runs).
Each case is measured ``--repeats`` times, the cases interleaved; medians and ranges are printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_agent import hf_forward  # eval/ is on the path when this script runs
from transformers import DecisionTransformerConfig, DecisionTransformerModel

from seqmeta.data.dataset import load_trajectories, write_dataset
from seqmeta.data.episodes import Episodes
from seqmeta.results import read_log
from seqmeta.tasks import get_family
from seqmeta.trainer import EpisodeBatches, TrainConfig, train

S, A, K, HIDDEN, LAYERS, TASKS, EPISODES, T = 17, 6, 20, 128, 3, 40, 5, 200


def synthetic_dataset(path: Path):
    rng = np.random.default_rng(0)
    n_ep = TASKS * EPISODES
    n = n_ep * T
    episodes = Episodes(
        observations=rng.standard_normal((n, S)).astype(np.float32),
        actions=rng.uniform(-1, 1, (n, A)).astype(np.float32),
        rewards=rng.standard_normal(n).astype(np.float32),
        terminated=np.zeros(n, bool),
        truncated=np.tile(np.arange(T) == T - 1, n_ep),
        lengths=np.full(n_ep, T),
        task_index=np.repeat(np.arange(TASKS), EPISODES),
        quality=np.array(["expert"] * n_ep, dtype=object),
    )
    return load_trajectories(write_dataset(episodes, get_family("cheetah-vel"), path))


def seqmeta_rate(data, out: Path, batch: int, segment: int, steps: int) -> float:
    config = TrainConfig(
        data=str(data.path),
        output_dir=str(out),
        max_steps=steps,
        batch_size=batch,
        segment_length=segment,
        context_length=K,
        hidden_size=HIDDEN,
        num_layers=LAYERS,
        num_heads=1,
        log_every=max(steps // 4, 1),
        eval_every=0,
        checkpoint_every=steps,
        report_to="none",
    )
    train(config)
    windows = [e for e in read_log(out / "train_log.jsonl") if "samples_per_s" in e][1:]
    return float(np.mean([e["samples_per_s"] for e in windows]))


def hf_rate(data, batch: int, steps: int) -> float:
    config = DecisionTransformerConfig(
        state_dim=S,
        act_dim=A,
        hidden_size=HIDDEN,
        n_layer=LAYERS,
        n_head=1,
        n_inner=4 * HIDDEN,
        activation_function="relu",
        max_ep_len=1000,
        n_positions=1024,
        bos_token_id=None,
        eos_token_id=None,
    )
    model = DecisionTransformerModel(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    batches = EpisodeBatches(data, segment_length=K, batch_size=batch, num_prompt_segments=1, prompt_length=5, seed=0)

    def step():
        sample = batches.sample()
        window = {k: torch.as_tensor(v) for k, v in sample.items() if k != "prompt"}
        prompt = {k: torch.as_tensor(v) for k, v in sample["prompt"].items()}
        b = {k: torch.cat([prompt[k], window[k]], dim=1) for k in ("observation", "action", "reward", "return_to_go")}
        b["timestep"] = torch.cat([prompt["timestep"], window["timestep"]], dim=1)
        mask = torch.cat([prompt["attention_mask"], window["attention_mask"]], dim=1).long()
        out = hf_forward(model, b, mask)
        preds, window_mask = out.action_preds[:, -K:], window["attention_mask"].long()
        loss = ((preds - window["action"]).pow(2).mean(-1) * window_mask).sum() / window_mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()

    for _ in range(max(steps // 4, 1)):  # warm-up, as the first seqmeta log window is left out
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--steps", type=int, default=80, help="optimizer steps per measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median and range printed)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead: seqmeta's training (segment K, the first of --batches) for --steps steps under torch's "
        "profiler, its operators by CPU time",
    )
    args = parser.parse_args()
    if min(args.steps, args.threads, args.repeats) < 1:
        parser.error("--steps, --threads and --repeats must be at least 1")
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with tempfile.TemporaryDirectory() as tmp:
            data = synthetic_dataset(Path(tmp) / "data")
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                seqmeta_rate(data, Path(tmp) / "run", batches[0], K, args.steps)
        print(f"seqmeta training, batch {batches[0]}, {args.steps} steps, {args.threads} threads (data not timed)")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        return
    rates: dict[tuple[int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic_dataset(Path(tmp) / "data")
        for r in range(args.repeats):
            for batch in batches:
                cases = {
                    "ours": (seqmeta_rate, (data, Path(tmp) / f"k{batch}-{r}", batch, K, args.steps)),
                    "longer": (seqmeta_rate, (data, Path(tmp) / f"s{batch}-{r}", batch, 30, args.steps)),
                    "hf": (hf_rate, (data, batch, args.steps)),
                }
                for name, (measure, inputs) in cases.items():
                    rates.setdefault((batch, name), []).append(measure(*inputs))

    def cell(batch: int, name: str) -> str:
        values = rates[(batch, name)]
        return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"

    print(
        f"CPU, {args.threads} threads; {len(data):,} steps of synthetic Cheetah-Vel-shaped data; samples/s, median "
        f"(range) of {args.repeats} interleaved repeats of {args.steps} steps"
    )
    print(f"{'batch':>5} | {'seqmeta, segment K':>22} | {'seqmeta, segment 30':>22} | {'HF DT plain loop':>22} | ratio")
    for batch in batches:
        ratio = statistics.median(rates[(batch, "ours")]) / statistics.median(rates[(batch, "hf")])
        row = " | ".join(f"{cell(batch, name):>22}" for name in ("ours", "longer", "hf"))
        print(f"{batch:>5} | {row} | {ratio:.2f}x")


if __name__ == "__main__":
    main()
