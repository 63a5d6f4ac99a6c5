"""seqmeta: pretrained decision transformers that adapt to new tasks in context.

``import seqmeta`` registers the task families' gymnasium ids; everything else is imported on first use
(torch and transformers only where needed, so the command line starts at once). Importing
``seqmeta.models`` (or using ``seqmeta.PromptDTModel``, ``seqmeta.load_model``, ...) registers the model
with transformers' Auto classes: ``AutoModel.from_pretrained(folder)`` then works.
"""

from importlib import import_module
from typing import Any

from seqmeta.tasks import ScriptedExpert, TaskFamily, TaskSet, get_family, list_families, register_family

__version__ = "0.1.0"

_LAZY = {
    "PromptDTConfig": "seqmeta.models",
    "PromptDTModel": "seqmeta.models",
    "collect_dataset": "seqmeta.data.collect",
    "TrajectoryDataset": "seqmeta.data.dataset",
    "load_trajectories": "seqmeta.data.dataset",
    "TrainConfig": "seqmeta.trainer",
    "train": "seqmeta.trainer",
    "FinetuneConfig": "seqmeta.finetune",
    "finetune": "seqmeta.finetune",
    "SelfSuperviseConfig": "seqmeta.selfsupervise",
    "self_supervise": "seqmeta.selfsupervise",
    "EvalProtocol": "seqmeta.evaluation",
    "evaluate": "seqmeta.evaluation",
    "evaluate_env": "seqmeta.envs",
    "check_env": "seqmeta.envs",
    "collect_episodes": "seqmeta.data.collect",
    "Agent": "seqmeta.agent",
    "run_episodes": "seqmeta.rollout",
    "Rollouts": "seqmeta.rollout",
    "prompts_from_episodes": "seqmeta.prompts",
    "Episodes": "seqmeta.data.episodes",
    "push_model": "seqmeta.hub",
    "push_dataset": "seqmeta.hub",
    "load_model": "seqmeta.models",
    "list_pretrained": "seqmeta.pretrained",
    "pretrained_path": "seqmeta.pretrained",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seqmeta' has no attribute {name!r}")


__all__ = [
    "Agent",
    "Episodes",
    "EvalProtocol",
    "FinetuneConfig",
    "PromptDTConfig",
    "PromptDTModel",
    "Rollouts",
    "ScriptedExpert",
    "SelfSuperviseConfig",
    "TaskFamily",
    "TaskSet",
    "TrainConfig",
    "TrajectoryDataset",
    "__version__",
    "check_env",
    "collect_dataset",
    "collect_episodes",
    "evaluate",
    "evaluate_env",
    "finetune",
    "get_family",
    "list_families",
    "list_pretrained",
    "load_model",
    "load_trajectories",
    "pretrained_path",
    "prompts_from_episodes",
    "push_dataset",
    "push_model",
    "register_family",
    "run_episodes",
    "self_supervise",
    "train",
]
