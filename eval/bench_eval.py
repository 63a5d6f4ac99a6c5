"""Benchmark: evaluation throughput, env-steps/s with the model in the loop vs a plain gymnasium vector env.

    python eval/bench_eval.py                  # Cheetah-Vel, the evaluator's default sweep (400 envs), 2 threads

All in one run, each case ``--repeats`` times, interleaved (median and range printed):

- raw physics: ``mujoco.rollout`` steps the same number of HalfCheetah states with random controls, all of
  them in one call (no Python per env or per step): the limit any env path can reach;
- gymnasium ``SyncVectorEnv`` of the same envs (``gymnasium.make``, standard wrappers), random actions;
- seqmeta's batched envs (``seqmeta.tasks.vector``, what the rollout engine steps), random actions;
- ``seqmeta.evaluation.evaluate`` with the default protocol (settings 0, 1, 2, 4 trajectories x 5
  held-out tasks x 20 episodes = 400 envs in one batch), the streaming agent choosing every action (the
  env-steps its vector env took: every env steps until the batch's last episode ends);
- the Prompt-DT-scale sweep: 1 expert trajectory, 5 tasks x 50 episodes (x 200 steps on Cheetah-Vel), wall seconds;
- where a step of the 400 envs goes: the model's step and the envs' step each timed alone (wall and CPU);
- the arithmetic floor: the matrix products of one model step alone, laid out as the streaming step lays them
  out (the model's own weights, every output preallocated, operands warm in cache): what a float32 step of
  this model pays before any other work; with the envs' step it bounds what ``evaluate`` can reach here,
  printed beside the 1.5x target's budget.

Model: the demo size (3 layers, hidden 128, K = 20), untrained, seeded (the speed of a step does not depend on
the weights; how long episodes that can end early run does, so every run acts with the same weights).
The sweeps' wall times include env creation and prompt sampling, and write nothing to disk. Idle OpenMP
threads sleep at once (``OMP_WAIT_POLICY=PASSIVE``, what ``seqmeta eval`` sets) unless the variable is set.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep at once, as under `seqmeta eval` (seqmeta/cli.py, ROLLOUT_VERBS); read when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import tempfile
import time

import mujoco
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from mujoco import rollout

import seqmeta.evaluation
from seqmeta.agent import Agent
from seqmeta.data.collect import collect_dataset
from seqmeta.evaluation import EvalProtocol, evaluate
from seqmeta.models import PromptDTConfig, PromptDTModel
from seqmeta.rollout import make_vector_env, run_episodes


def random_steps(venv, n: int, steps: int, act_dim: int) -> float:
    """env-steps/s of ``steps`` steps of random actions (the env built and reset outside the clock)."""
    rng = np.random.default_rng(0)
    venv.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        venv.step(rng.uniform(-1, 1, (n, act_dim)).astype(np.float32))
    seconds = time.perf_counter() - start
    venv.close()
    return n * steps / seconds


def raw_physics(env, n: int, steps: int, threads: int) -> float:
    """env-steps/s of MuJoCo alone: n states stepped ``steps`` x frame_skip times in one rollout call."""
    model, frame_skip = env.unwrapped.model, env.unwrapped.frame_skip
    data = [mujoco.MjData(model) for _ in range(threads)]
    size = mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    state = np.zeros((n, size))
    mujoco.mj_getState(model, data[0], state[0], mujoco.mjtState.mjSTATE_FULLPHYSICS)
    state[:] = state[0]
    control = np.random.default_rng(0).uniform(-1, 1, (n, steps * frame_skip, model.nu))
    with rollout.Rollout(nthread=threads) as runner:
        start = time.perf_counter()
        runner.rollout(model, data, state, control)
        seconds = time.perf_counter() - start
    return n * steps / seconds


def step_split(model, env_fns, steps: int) -> tuple[float, float, float, float]:
    """Milliseconds per step of all envs, (model wall, model CPU, envs wall, envs CPU), each timed alone:
    ``steps`` model steps (no prompt) on the envs' first observations, then ``steps`` env steps of one action."""
    venv = make_vector_env(env_fns)
    obs, _ = venv.reset(seed=0)
    agent = Agent(model, len(env_fns), prompts=None, target_returns=np.zeros(len(env_fns)))
    agent.start_episodes(np.arange(len(env_fns)), obs)
    action = agent.act(obs)
    times = []
    for work in (lambda: agent.act(obs, np.zeros(len(env_fns))), lambda: venv.step(action)):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            work()
        times += [(time.perf_counter() - wall) * 1e3 / steps, (time.process_time() - cpu) * 1e3 / steps]
    venv.close()
    return tuple(times)


def arithmetic_floor(model, n: int, prompt_steps: int, repeats: int = 50) -> float:
    """Milliseconds of the matrix products of one streaming step of ``n`` envs, and nothing else: per block the
    query/key/value projection of the step's three tokens, the attention scores and weighted values over the
    cache (prompt + 3K keys), the attention projection and the MLP (for the state token alone in the last
    block, as ``stream_step`` does), every output preallocated."""
    cfg, blocks = model.config, model.backbone.h
    width, keys = cfg.hidden_size, prompt_steps + 3 * cfg.context_length
    key_cache = torch.randn(n, keys, width)
    products = []
    for i, block in enumerate(blocks):
        rows = n if i == len(blocks) - 1 else 3 * n  # the last block past attention: the state token alone
        queries = rows // n
        layer = [
            (block.attn.c_attn.bias, torch.randn(3 * n, width), block.attn.c_attn.weight),
            (block.attn.c_proj.bias, torch.randn(rows, width), block.attn.c_proj.weight),
            (block.mlp.c_fc.bias, torch.randn(rows, width), block.mlp.c_fc.weight),
            (block.mlp.c_proj.bias, torch.randn(rows, 4 * width), block.mlp.c_proj.weight),
        ]
        products += [(torch.addmm, (b, x, w), torch.empty(len(x), w.shape[1])) for b, x, w in layer]
        # the layouts of ``step_attention``: queries and weights are transposed views, as there
        scores = (torch.zeros(n, keys, queries), key_cache, torch.randn(n, queries, width).transpose(1, 2))
        products.append((torch.baddbmm, scores, torch.empty(n, keys, queries)))
        weights = torch.rand(n, keys, queries).transpose(1, 2)
        products.append((torch.bmm, (weights, key_cache), torch.empty(n, queries, width)))
    with torch.no_grad():
        for _ in range(5):
            for op, args, out in products:
                op(*args, out=out)
        start = time.perf_counter()
        for _ in range(repeats):
            for op, args, out in products:
                op(*args, out=out)
    return (time.perf_counter() - start) * 1e3 / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="cheetah-vel")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="random-action steps per env for the env rows")
    args = parser.parse_args()
    if min(args.threads, args.repeats, args.steps) < 1:
        parser.error("--threads, --repeats and --steps must be at least 1")
    torch.set_num_threads(args.threads)
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = collect_dataset(args.family, "expert", f"{tmp}/d", tasks="test", episodes_per_task=4, progress=False)
        family, ts = data.family, data.task_set
        tasks = list(ts.test_indices)
        torch.manual_seed(0)  # one model in every run: where episodes can end early, their lengths depend on it
        model = PromptDTModel(PromptDTConfig.from_dataset(data, hidden_size=128, num_layers=3, context_length=20))
        default = EvalProtocol(data=str(data.path))
        n = len(default.prompt_trajectories.split(",")) * len(tasks) * default.episodes
        prompt_dt = EvalProtocol(data=str(data.path), prompt_trajectories="1", episodes=50)
        n_prompt_dt = len(tasks) * prompt_dt.episodes
        env_fns = family.env_fns([ts.params[t] for t in np.repeat(tasks, n // len(tasks))])
        sweep_fns = family.env_fns([ts.params[t] for t in np.repeat(tasks, prompt_dt.episodes)])
        act_dim = family.action_space.shape[0]
        template = family.make_env(ts.params[tasks[0]])
        cases = {
            "raw physics (mujoco.rollout)": lambda: raw_physics(template, n, family.horizon, args.threads),
            "gymnasium SyncVectorEnv, random actions": lambda: random_steps(
                SyncVectorEnv(list(env_fns), autoreset_mode=AutoresetMode.SAME_STEP), n, args.steps, act_dim
            ),
            "seqmeta batched envs, random actions": lambda: random_steps(
                make_vector_env(env_fns), n, args.steps, act_dim
            ),
            "seqmeta evaluate, model in the loop": lambda: rate(*timed_eval(model, default)),
            "prompt-dt sweep": lambda: timed_eval(model, prompt_dt),
            "split": lambda: step_split(model, env_fns, args.steps),
            "sweep split": lambda: step_split(model, sweep_fns, args.steps),
            "floor": lambda: arithmetic_floor(model, n, model.config.prompt_length),
            "sweep floor": lambda: arithmetic_floor(model, n_prompt_dt, model.config.prompt_length),
        }
        for _ in range(args.repeats):
            for name, case in cases.items():
                times.setdefault(name, []).append(case())
        template.close()

    print(
        f"{args.family}: {n} envs (the default protocol: {default.prompt_trajectories} trajectories x {len(tasks)} "
        f"tasks x {default.episodes} episodes), {args.threads} threads, {args.repeats} interleaved repeats, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, values in times.items():
        if name.endswith(("sweep", "split", "floor")):
            continue
        print(f"  {name:42s} {med[name]:10,.0f} env-steps/s  ({min(values):,.0f} - {max(values):,.0f})")
    loop, sync = med["seqmeta evaluate, model in the loop"], med["gymnasium SyncVectorEnv, random actions"]
    print(f"  model in the loop / SyncVectorEnv:         {loop / sync:10.2f}x")
    print(f"  model in the loop / raw physics:           {loop / med['raw physics (mujoco.rollout)']:10.2f}")
    split = [statistics.median(v) for v in zip(*times["split"], strict=True)]
    print(
        f"  one step of the {n} envs, timed apart ({args.steps} steps): the model {split[0]:.1f} ms "
        f"(CPU {split[1]:.1f} ms), the envs {split[2]:.1f} ms (CPU {split[3]:.1f} ms)"
    )
    floor = med["floor"]
    print(
        f"  the model's matrix products alone (float32, outputs preallocated): {floor:.1f} ms per step; with the "
        f"envs' {split[2]:.1f} ms evaluate could reach at most {n / (floor + split[2]) * 1e3:,.0f} env-steps/s "
        f"= {n / (floor + split[2]) * 1e3 / sync:.2f}x SyncVectorEnv (1.5x leaves {n / (1.5 * sync) * 1e3:.1f} ms "
        "per step)"
    )
    sweep = [seconds for seconds, _ in times["prompt-dt sweep"]]
    loop_steps = statistics.median(steps for _, steps in times["prompt-dt sweep"]) / n_prompt_dt
    sweep_split = [statistics.median(v) for v in zip(*times["sweep split"], strict=True)]
    print(
        f"  Prompt-DT-scale sweep (1 trajectory, {len(tasks)} x {prompt_dt.episodes} episodes of up to "
        f"{family.horizon} steps; its {n_prompt_dt} envs stepped {loop_steps:.0f} times): "
        f"{statistics.median(sweep):.2f} s ({min(sweep):.2f} - {max(sweep):.2f}); per step of its envs the model "
        f"{sweep_split[0]:.1f} ms, the envs {sweep_split[2]:.1f} ms, the model's matrix products alone "
        f"{med['sweep floor']:.1f} ms: at least {(med['sweep floor'] + sweep_split[2]) * loop_steps / 1e3:.2f} s"
    )


def timed_eval(model, protocol) -> tuple[float, int]:
    """Wall seconds of ``evaluate`` and the env-steps its vector envs took: each env of a batch steps until the
    batch's last episode ends (an env whose episode ended runs on, unrecorded), so a batch of n envs whose
    longest episode has T steps takes n x T, the horizon where nothing ends early (Cheetah)."""
    steps = 0

    def counted(*args, **kwargs):
        nonlocal steps
        out = run_episodes(*args, **kwargs)
        steps += len(out.returns) * int(out.episodes.lengths.max())
        return out

    seqmeta.evaluation.run_episodes = counted
    try:
        start = time.perf_counter()
        evaluate(model, protocol, progress=False)
        return time.perf_counter() - start, steps
    finally:
        seqmeta.evaluation.run_episodes = run_episodes


def rate(seconds: float, steps: int) -> float:
    return steps / seconds


if __name__ == "__main__":
    main()
