"""seqmeta: pretrained decision transformers that adapt to new tasks in context."""

from seqmeta.tasks import TaskFamily, TaskSet, get_family, list_families

__version__ = "0.1.0"

__all__ = ["TaskFamily", "TaskSet", "__version__", "get_family", "list_families"]
