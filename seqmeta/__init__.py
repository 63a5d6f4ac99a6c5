"""seqmeta: pretrained decision transformers that adapt to new tasks in context.

``import seqmeta`` registers the task families' gymnasium ids and the models with transformers'
Auto classes (``AutoModel.from_pretrained(folder)`` then works); the data API is imported on first use.
"""

from importlib import import_module
from typing import Any

from seqmeta.models import PromptDTConfig, PromptDTModel
from seqmeta.tasks import TaskFamily, TaskSet, get_family, list_families

__version__ = "0.1.0"

_LAZY = {
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
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seqmeta' has no attribute {name!r}")


__all__ = [
    "EvalProtocol",
    "FinetuneConfig",
    "PromptDTConfig",
    "PromptDTModel",
    "SelfSuperviseConfig",
    "TaskFamily",
    "TaskSet",
    "TrainConfig",
    "TrajectoryDataset",
    "__version__",
    "collect_dataset",
    "evaluate",
    "finetune",
    "get_family",
    "list_families",
    "load_trajectories",
    "self_supervise",
    "train",
]
