"""Benchmark: per-action latency of the streaming agent, and training-step throughput, on CPU.

    python eval/bench_agent.py                 # batch 1, 16, 256; prompts of 5 and 50 steps

Same size for every model: 3 layers, hidden 128, 1 head, K = 20, HalfCheetah widths (17 / 6).
Printed side by side, measured in the same run:

- seqmeta agent, cached: prompt keys/values computed once, one step (3 tokens) per action;
- seqmeta, no cache: the prompt and the last K steps recomputed every action (what Prompt-DT does);
- ``transformers.DecisionTransformerModel`` given the same work: the prompt's steps and the last K steps
  in its window, recomputed every action (what the official Prompt-DT does).

Latency is measured in steady state (after K warm-up steps, the window full), each case in turn for
``--repeats`` rounds (medians printed, with the range of the cached agent). Training: samples/s
of forward + backward + AdamW step on the same random batch for seqmeta (with a 5-step prompt, and
without a prompt: the same tokens as HF) and the HF model.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from transformers import DecisionTransformerConfig, DecisionTransformerModel

from seqmeta.agent import Agent
from seqmeta.models import PromptDTConfig, PromptDTModel

S, A, K, HIDDEN, LAYERS = 17, 6, 20, 128, 3


def timed(fn, calls: int) -> float:
    """Seconds per call, after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def make_prompt(n: int, steps: int, rng) -> dict[str, np.ndarray]:
    return dict(
        observation=rng.standard_normal((n, steps, S)).astype(np.float32),
        action=rng.uniform(-1, 1, (n, steps, A)).astype(np.float32),
        reward=rng.standard_normal((n, steps)).astype(np.float32),
        return_to_go=rng.standard_normal((n, steps)).astype(np.float32),
        timestep=np.tile(np.arange(steps), (n, 1)),
        attention_mask=np.ones((n, steps), bool),
    )


def window(n: int, steps: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return dict(
        observation=torch.randn(n, steps, S, generator=g),
        action=torch.rand(n, steps, A, generator=g) * 2 - 1,
        reward=torch.randn(n, steps, generator=g),
        return_to_go=torch.randn(n, steps, generator=g),
        timestep=torch.arange(steps).repeat(n, 1),
    )


def hf_forward(hf: DecisionTransformerModel, steps: dict[str, torch.Tensor], mask: torch.Tensor):
    """HF's DT on a window of steps in seqmeta's array names (rewards and returns as (B, T, 1))."""
    return hf(
        states=steps["observation"],
        actions=steps["action"],
        rewards=steps["reward"][..., None],
        returns_to_go=steps["return_to_go"][..., None],
        timesteps=steps["timestep"],
        attention_mask=mask,
    )


def bench_inference(ours, hf, batches, prompts, calls: int, repeats: int) -> list[dict]:
    """Seconds per action, median over ``repeats`` rounds in which every case runs ``calls`` times in turn."""
    rng, g = np.random.default_rng(0), torch.Generator().manual_seed(0)
    rows = []
    for n in batches:
        for p in prompts:
            prompt = make_prompt(n, p, rng)
            agent = Agent(ours, n, prompts=prompt, target_returns=0.0)
            obs = rng.standard_normal((n, S)).astype(np.float32)
            reward = np.zeros(n, np.float32)

            def cached(agent=agent, obs=obs, reward=reward):
                if agent._t >= ours.config.max_timestep - 1:  # a new episode, the window filled again
                    agent.reset()
                    agent.act(obs)
                    for _ in range(K):
                        agent.act(obs, reward)
                agent.act(obs, reward)

            hist = window(n, K, g)
            prompt_t = {k: torch.as_tensor(v) for k, v in prompt.items()}

            @torch.no_grad()
            def recompute(hist=hist, prompt_t=prompt_t):
                return ours(**hist, prompt=prompt_t).action_preds[:, -1].numpy()

            # HF DT given the same prompt the way Prompt-DT feeds it: the prompt's steps first in its window.
            hf_win = {k: torch.cat([torch.as_tensor(prompt[k]), v], 1) for k, v in window(n, K, g).items()}
            hf_mask = torch.ones(n, p + K, dtype=torch.long)

            @torch.no_grad()
            def hf_step(hf_win=hf_win, hf_mask=hf_mask):
                return hf_forward(hf, hf_win, hf_mask).action_preds[:, -1].numpy()

            agent.reset()
            agent.act(obs)
            for _ in range(K):  # fill the window: steady state
                agent.act(obs, reward)
            cases = {"cached": (cached, calls), "recompute": (recompute, max(3, calls // 4)), "hf": (hf_step, calls)}
            times = {name: [] for name in cases}
            for _ in range(repeats):
                for name, (fn, count) in cases.items():
                    times[name].append(timed(fn, count))
            row = {"batch": n, "prompt": p}
            for name, values in times.items():
                row[name], row[f"{name}_range"] = statistics.median(values), (min(values), max(values))
            rows.append(row)
    return rows


def bench_training(ours: PromptDTModel, hf: DecisionTransformerModel, batch: int, steps: int) -> dict:
    g = torch.Generator().manual_seed(1)
    hist = window(batch, K, g)
    prompt = {k: torch.as_tensor(v) for k, v in make_prompt(batch, 5, np.random.default_rng(1)).items()}
    mask = torch.ones(batch, K, dtype=torch.long)
    results = {}
    for name, model in (("seqmeta", ours), ("seqmeta, no prompt", ours), ("hf", hf)):
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step(model=model, opt=opt, name=name):
            if name.startswith("seqmeta"):
                loss = model(**hist, prompt=prompt if name == "seqmeta" else None, return_loss=True).loss
            else:
                out = hf_forward(model, hist, mask)
                loss = (out.action_preds - hist["action"]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        results[name] = batch / timed(step, steps)
        model.eval()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,16,256")
    parser.add_argument("--prompts", default="5,50")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds; medians are printed")
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    if min(args.calls, args.repeats, args.threads, args.train_batch) < 1:
        parser.error("--calls, --repeats, --threads and --train-batch must be at least 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours = PromptDTModel(
        PromptDTConfig(
            state_dim=S, act_dim=A, hidden_size=HIDDEN, num_layers=LAYERS, num_heads=1, context_length=K, dropout=0.1
        )
    ).eval()
    hf = DecisionTransformerModel(
        DecisionTransformerConfig(state_dim=S, act_dim=A, hidden_size=HIDDEN, n_layer=LAYERS, n_head=1, max_ep_len=1000)
    ).eval()
    n_ours = sum(p.numel() for p in ours.parameters())
    n_hf = sum(p.numel() for p in hf.parameters())
    print(f"CPU, {args.threads} threads; seqmeta {n_ours:,} params, HF DecisionTransformerModel {n_hf:,} params")
    print(
        f"\n{'batch':>5} {'prompt':>6} | {'seqmeta cached':>22} | {'seqmeta no cache':>22} | {'HF DT, prompt + K':>22}"
        f" | cached/HF"
    )
    batches, prompts = [int(b) for b in args.batches.split(",")], [int(p) for p in args.prompts.split(",")]
    rows = bench_inference(ours, hf, batches, prompts, args.calls, args.repeats)
    for r in rows:
        cells = [f"{r[k] * 1e3:8.3f} ms {r['batch'] / r[k]:8.0f}/s" for k in ("cached", "recompute", "hf")]
        print(f"{r['batch']:>5} {r['prompt']:>6} | " + " | ".join(cells) + f" | {r['hf'] / r['cached']:6.1f}x")
    print(f"(medians of {args.repeats} interleaved rounds; cached ms range per row:", end="")
    print(", ".join(f" {r['cached_range'][0] * 1e3:.3f}-{r['cached_range'][1] * 1e3:.3f}" for r in rows) + ")")
    by = {(r["batch"], r["prompt"]): r["cached"] for r in rows}
    for n in sorted({r["batch"] for r in rows}):
        if (n, 5) in by and (n, 50) in by:
            print(f"batch {n}: cached step with a 50-step prompt costs {by[(n, 50)] / by[(n, 5)]:.2f}x the 5-step one")
    train = bench_training(ours, hf, args.train_batch, max(5, args.calls // 4))
    print(f"\ntraining step (forward + backward + AdamW), batch {args.train_batch}, K={K}, samples/s:")
    for name in ("seqmeta", "seqmeta, no prompt"):
        label = f"{name} (5-step prompt)" if name == "seqmeta" else name
        print(f"  {label:<28} {train[name]:8.0f}   ({train[name] / train['hf']:.2f}x HF)")
    print(f"  {'HF DecisionTransformerModel':<28} {train['hf']:8.0f}")


if __name__ == "__main__":
    main()
