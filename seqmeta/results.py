"""Reading what runs write: ``eval_results.json`` (the evaluator's results) and ``train_log.jsonl``
(the trainer's log). Plots, the Hub module and the CLI read results through here, never through the
modules that write them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seqmeta.errors import ConfigError

SCHEMA = "seqmeta.eval_results/1"
LOG_FILE = "train_log.jsonl"


def load_results(path: str | Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise ConfigError(f"no eval_results.json at {path}: give one `seqmeta eval` wrote")
    try:
        results = json.loads(Path(path).read_text())
    except json.JSONDecodeError:
        results = None
    if not isinstance(results, dict) or results.get("schema") != SCHEMA:
        raise ConfigError(f"{path} is not a seqmeta eval_results.json ({SCHEMA})")
    return results


def format_table(results: dict[str, Any]) -> str:
    """The results as a text table: one row per prompt setting, one column per task (up to 10 tasks)."""
    tasks = [p["task"] for p in results["settings"][0]["per_task"]]
    scored = results["settings"][0]["normalized"] is not None
    success = results["settings"][0].get("success_rate") is not None
    per_task = len(tasks) <= 10
    head = f"{'prompt traj.':>12} | " + (" | ".join(f"task {t:>3}" for t in tasks) + " | " if per_task else "")
    head += "mean return" + (" | normalized" if scored else "") + (" | success" if success else "")
    lines = [f"{results['family']}, prompts: {results['protocol']['prompt_source']}, {len(tasks)} tasks", head]
    lines.append("-" * len(head))
    for s in results["settings"]:
        row = f"{s['prompt_trajectories']:>12} | "
        row += " | ".join(f"{p['mean']:>8.2f}" for p in s["per_task"]) + " | " if per_task else ""
        row += f"{s['mean_return']:>11.2f}" + (f" | {s['normalized']:>10.1f}" if scored else "")
        row += f" | {100 * s['success_rate']:>6.1f}%" if success else ""
        lines.append(row)
    return "\n".join(lines)


def read_log(path: str | Path) -> list[dict[str, float]]:
    """The entries of a ``train_log.jsonl``; where a resumed run logged a step again, the last entry wins.
    Anything else than JSON objects with a step, one per line, is refused (a torn last line is dropped)."""
    if not Path(path).is_file():
        raise ConfigError(f"no training log at {path}: give the train_log.jsonl a `seqmeta train` run wrote")
    text = Path(path).read_text()
    lines = text.splitlines()
    if lines and not text.endswith("\n"):  # a run killed mid-append: its torn last line is not an entry
        lines.pop()
    entries: dict[tuple, dict] = {}
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            entries[(entry["step"], tuple(sorted(entry)))] = entry
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(
                f"{path} line {number} is not a training log entry (a JSON object with a step): give the "
                "train_log.jsonl a `seqmeta train` run wrote"
            ) from None
    return sorted(entries.values(), key=lambda e: e["step"])
