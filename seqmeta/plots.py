"""PNG plots of evaluation results and training logs (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seqmeta.errors import import_extra
from seqmeta.io import atomic_write_file


def _pyplot():
    matplotlib = import_extra("matplotlib", "plots", "plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    """The PNG written atomically (a full disk leaves the previous plot, never a truncated one)."""
    try:
        atomic_write_file(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)


def _score_key(results: dict[str, Any]) -> tuple[str, str]:
    if all(s["normalized"] is not None for s in results["settings"]):
        return "normalized", "normalized score (0 random, 100 expert)"
    return "mean_return", "mean return"


def plot_adaptation_curve(results: dict[str, Any], path: Path, baselines: dict[str, float] | None = None) -> Path:
    """Score vs number of prompt trajectories; the expert level and any baselines as lines."""
    plt = _pyplot()
    key, label = _score_key(results)
    xs = [s["prompt_trajectories"] for s in results["settings"]]
    ys = [s[key] for s in results["settings"]]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(xs, ys, marker="o", label=f"prompt: {results['protocol']['prompt_source']}")
    ax.set_xticks(xs)
    if key == "normalized":
        ax.axhline(100, color="gray", linestyle="--", label="expert")
    for name, value in (baselines or {}).items():
        ax.axhline(value, linestyle=":", label=name)
    ax.set_xlabel("prompt trajectories" if results["protocol"]["prompt_source"] != "own" else "own episodes seen")
    ax.set_ylabel(label)
    ax.set_title(f"{results['family']}: tasks {results['protocol']['tasks']}")
    ax.legend()
    fig.tight_layout()
    _save(plt, fig, path)
    return path


def plot_per_task(results: dict[str, Any], path: Path) -> Path:
    """One group of bars per task, one bar per prompt setting (mean with std)."""
    plt = _pyplot()
    settings = results["settings"]
    tasks = [p["task"] for p in settings[0]["per_task"]]
    width = 0.8 / len(settings)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.2 * len(tasks)), 4))
    for i, s in enumerate(settings):
        means = [p["mean"] for p in s["per_task"]]
        stds = [p["std"] for p in s["per_task"]]
        ax.bar(np.arange(len(tasks)) + i * width, means, width, yerr=stds, label=f"{s['prompt_trajectories']} traj.")
    expert = results["reference_returns"]["expert"]
    if all(e is not None for e in expert):
        ax.scatter(np.arange(len(tasks)) + 0.4 - width / 2, expert, marker="_", s=400, color="black", label="expert")
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, [str(t) for t in tasks])
    ax.set_xlabel("task")
    ax.set_ylabel("return")
    ax.legend(fontsize="small")
    fig.tight_layout()
    _save(plt, fig, path)
    return path


def plot_training_log(log_path: str | Path, path: Path) -> Path:
    """Training and held-out validation losses against the step."""
    from seqmeta.results import read_log

    plt = _pyplot()
    log = read_log(log_path)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for key in ("action_loss", "val_action_loss"):
        points = [(e["step"], e[key]) for e in log if key in e]
        if points:
            ax.plot(*zip(*points, strict=True), label=key.replace("val_", "held-out ").replace("_", " "))
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    _save(plt, fig, path)
    return path


def plot_results(
    results: dict[str, Any],
    out: Path,
    training_log: str | Path | None = None,
    baselines: dict[str, float] | None = None,
) -> list[str]:
    """The evaluation's plots under ``out``; returns their file names."""
    out.mkdir(parents=True, exist_ok=True)
    names = [plot_adaptation_curve(results, out / "adaptation_curve.png", baselines).name]
    names.append(plot_per_task(results, out / "per_task.png").name)
    if training_log:  # seqmeta.evaluate reads it before the sweep: a missing or broken log is refused there
        names.append(plot_training_log(training_log, out / "training_curve.png").name)
    return names


def plot_behavior_curve(records: list[dict[str, Any]], path: Path, title: str) -> Path:
    """A behavior-policy run's evaluations: mean return over its evaluation tasks against the step, the band
    from its worst to its best task."""
    plt = _pyplot()
    steps = [r["step"] for r in records]
    returns = [np.asarray(r["return"], dtype=np.float64) for r in records]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(steps, [r.mean() for r in returns], marker=".", label="mean over evaluation tasks")
    worst, best = [r.min() for r in returns], [r.max() for r in returns]
    ax.fill_between(steps, worst, best, alpha=0.2, label="worst to best task")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return (deterministic, one episode per task)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    _save(plt, fig, path)
    return path
