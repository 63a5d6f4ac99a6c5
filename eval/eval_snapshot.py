"""A bit-for-bit snapshot of evaluation and collection results, to compare two versions of the code.

    git checkout OLD && python eval/eval_snapshot.py --out /tmp/old.json
    git checkout NEW && python eval/eval_snapshot.py --out /tmp/new.json --compare /tmp/old.json

One thread, fixed seeds: Point-Robot and Cheetah-Vel data collected with the shipped behavior policies
(hashed), then a small untrained-but-seeded Prompt-DT evaluated under every prompt source (expert,
ood, own, random) and target rule (fixed, demo, model, oracle, a number), ``evaluate_with_demos``, and
self-supervised exploration with predicted and true labels. Every return, target and label sum is
stored with ``repr`` (all digits); ``--compare`` prints which entries differ and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def snapshot(root: str) -> dict:
    from seqmeta.data.collect import collect_dataset
    from seqmeta.evaluation import EvalProtocol, evaluate, evaluate_with_demos
    from seqmeta.models import PromptDTConfig, PromptDTModel
    from seqmeta.selfsupervise import explore

    out: dict = {}
    specs = {
        "pr": ("point-robot", "expert,medium,random", "all", 3, "45,46,47", 45),
        "cv": ("cheetah-vel", "expert,random", "2,7,15,3", 2, "2,7,15", 2),
    }
    for name, (family, qualities, tasks, episodes, test_tasks, demo_task) in specs.items():
        data = collect_dataset(
            family, qualities, f"{root}/{name}", tasks=tasks, episodes_per_task=episodes, progress=False
        )
        digest = hashlib.sha256()
        for column in ("observation", "action", "reward", "task_index"):
            digest.update(np.ascontiguousarray(data.column(column)).tobytes())
        out[f"{name}/data"] = digest.hexdigest()
        torch.manual_seed(0)
        config = PromptDTConfig.from_dataset(data, hidden_size=32, num_layers=1, context_length=4, prompt_length=3)
        model = PromptDTModel(config)
        for source in ("expert", "ood", "own", "random"):
            for rule in ("fixed", "demo", "model", "oracle", "-3.5"):
                protocol = EvalProtocol(
                    data=str(data.path),
                    tasks=test_tasks,
                    prompt_source=source,
                    prompt_trajectories="0,1,2",
                    target_return=rule,
                    episodes=2,
                    seed=5,
                )
                results = evaluate(model, protocol, progress=False)
                out[f"{name}/{source}/{rule}"] = [
                    [repr(x) for p in s["per_task"] for x in p["returns"]]
                    + [repr(p["target_return"]) for p in s["per_task"]]
                    for s in results["settings"]
                ]
        rows = [int(i) for i in np.flatnonzero(data.episodes["task_index"] == demo_task)[:2]]
        demo = evaluate_with_demos(model, data, {demo_task: rows}, episodes=3, seed=1)
        out[f"{name}/with_demos"] = {str(k): [repr(x) for x in v] for k, v in demo.items()}
        for labels in ("predicted", "true"):
            found = explore(model, data, [0, 1] if name == "pr" else [3], 2, 2, labels=labels, seed=3, progress=False)
            out[f"{name}/explore/{labels}"] = {
                "returns": [repr(x) for x in found["returns"].ravel()],
                "rewards": repr(float(np.asarray(found["episodes"].rewards, np.float64).sum())),
                "true": repr(float(found["true_rewards"].astype(np.float64).sum())),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="where the snapshot JSON goes")
    parser.add_argument("--compare", help="a snapshot of another version to compare with")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        current = snapshot(root)
    with open(args.out, "w") as f:
        json.dump(current, f, indent=1)
    print(f"{len(current)} entries written to {args.out}")
    if args.compare:
        other = json.loads(Path(args.compare).read_text())
        differ = sorted(k for k in set(current) | set(other) if current.get(k) != other.get(k))
        print(
            f"{len(differ)} of {len(current)} entries differ"
            + (": " + ", ".join(differ) if differ else " (bit for bit)")
        )
        sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
