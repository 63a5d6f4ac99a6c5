"""The main job on its embedded default: the demo datasets, collected with the shipped policies.

``seqmeta demo`` writes, under its output folder, one dataset per family with every behavior level
the family ships, then prints where they are and what they hold.
"""

from __future__ import annotations

import logging
from pathlib import Path

from seqmeta.behavior.policies import available_qualities
from seqmeta.data.collect import collect_dataset
from seqmeta.tasks import get_family

logger = logging.getLogger(__name__)

DEMO_FAMILIES = ("point-robot", "point-robot-sparse", "cheetah-vel")


def run_demo(output_dir: str = "outputs/demo", episodes_per_task: int = 10, overwrite: bool = False) -> dict:
    """Collect the demo datasets; returns {family: TrajectoryDataset}."""
    out = Path(output_dir)
    results = {}
    for name in DEMO_FAMILIES:
        family = get_family(name)
        path = out / "data" / name
        if path.exists() and not overwrite:
            from seqmeta.data.dataset import load_trajectories

            logger.info("%s exists; reusing it (pass --overwrite to collect again)", path)
            results[name] = load_trajectories(path)
            continue
        results[name] = collect_dataset(
            family,
            available_qualities(family),
            str(path),
            tasks="all",
            episodes_per_task=episodes_per_task,
            overwrite=overwrite,
            command=f"seqmeta collect --family {name} --quality {','.join(available_qualities(family))} "
            f"--tasks all --episodes-per-task {episodes_per_task} --out {path}",
        )
    print(f"\nDemo datasets under {out / 'data'}:")
    print(f"{'family':<20} {'quality':<8} {'episodes':>8} {'mean return':>12}")
    for name, dataset in results.items():
        for quality, q in dataset.meta["qualities"].items():
            print(f"{name:<20} {quality:<8} {q['episodes']:>8} {q['mean_return']:>12.2f}")
    print("Open one with `datasets.load_from_disk(path)` or `seqmeta.load_trajectories(path)`.")
    return results
