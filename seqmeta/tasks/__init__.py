"""Meta-RL task families: registered gymnasium envs, seeded task lists, splits, reference returns."""

from seqmeta.tasks.families import get_family, list_families, register_envs, register_family
from seqmeta.tasks.family import ScriptedExpert, SearchPlan, TaskFamily, TaskSet

register_envs()

__all__ = [
    "ScriptedExpert",
    "SearchPlan",
    "TaskFamily",
    "TaskSet",
    "get_family",
    "list_families",
    "register_envs",
    "register_family",
]
