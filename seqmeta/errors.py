"""The exceptions seqmeta raises on bad input.

Every error says what was wrong and how to fix it. They subclass ``ValueError`` (or
``FileNotFoundError``) so callers that catch the builtin types keep working.
"""


class SeqmetaError(Exception):
    """Base class of every error seqmeta raises on purpose."""


class UnknownFamilyError(SeqmetaError, KeyError):
    """A task-family name that seqmeta does not define."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class TaskSelectionError(SeqmetaError, ValueError):
    """A task index, split name or task list that does not exist in the family."""


class DatasetFormatError(SeqmetaError, ValueError):
    """Trajectory data with a wrong shape, missing column, non-finite value or empty episode."""


class DatasetNotFoundError(SeqmetaError, FileNotFoundError):
    """A path that does not hold a (complete) seqmeta dataset or source file."""


class BehaviorPolicyError(SeqmetaError, ValueError):
    """A behavior policy or quality level that does not exist for a family."""


class ConfigError(SeqmetaError, ValueError):
    """A recipe or run config with an unknown key, a value of the wrong type, or one a resume cannot accept."""


class RolloutError(SeqmetaError, ValueError):
    """An env or policy that cannot be rolled out as given (wrong shapes, episodes that never end)."""


class EnvMismatchError(SeqmetaError, ValueError):
    """A user env that does not fit the model (observation or action width, horizon, reward scale)."""


class StorageError(SeqmetaError, OSError):
    """A write that the disk refused (full, over quota); what was there before is unchanged."""


class MissingExtraError(ConfigError):
    """An optional integration's package is not installed (``pip install 'seqmeta[<extra>]'``)."""


def import_extra(module: str, extra: str, what: str):
    """``module``, imported; if it is not installed, a ``MissingExtraError`` naming the extra that brings it."""
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{what} needs the {module.split('.')[0]} package, an optional part of seqmeta: "
            f"pip install 'seqmeta[{extra}]' ({e})"
        ) from None
