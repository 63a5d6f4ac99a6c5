"""The reference models that ship with seqmeta: one trained model per task family, usable offline at once.

    model = seqmeta.load_model("cheetah-vel-prompt-dt")          # a shipped model, by name
    folder = seqmeta.pretrained_path("cheetah-vel-prompt-dt")    # its folder: what `seqmeta push` publishes
    demos = seqmeta.load_trajectories(folder / "demos")          # the expert demos it was evaluated with

Each folder is a model folder as `seqmeta train` and `seqmeta eval` leave it (``config.json``,
``model.safetensors``, ``train_config.yaml``, ``train_data.json``, ``eval/*/eval_results.json`` and plots)
plus ``demos/`` (a dataset folder: one expert episode of every task of the family; Meta-World: of each
held-out goal) and ``README.md``, its model card. ``eval/adaptation.py`` (its ship option) made each one from the first
training seed of the run behind the README's families table.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from seqmeta.errors import ConfigError


def pretrained_dir() -> Path:
    return Path(str(resources.files("seqmeta") / "pretrained"))


def list_pretrained() -> dict[str, Path]:
    """Shipped model name -> its folder."""
    root = pretrained_dir()
    return {p.parent.name: p.parent for p in sorted(root.glob("*/config.json"))}


def pretrained_path(name: str) -> Path:
    """The folder of the shipped model ``name`` (``seqmeta.list_pretrained()`` names them)."""
    models = list_pretrained()
    if name not in models:
        shipped = ", ".join(models) or "none in this installation"
        raise ConfigError(f"no shipped model named {name!r}; shipped: {shipped}")
    return models[name]


def names_hub_repo(text: str) -> bool:
    """Whether ``text`` reads as a Hub id ``org/name`` rather than a local path (absolute, ``./``, ``~``, a
    trailing ``/`` or more than one ``/``): a local folder that does not exist is then never taken for a Hub id."""
    return not text.startswith(("/", ".", "~")) and text.count("/") == 1 and not text.endswith("/")


def resolve_shipped(text: str) -> str:
    """A shipped model's name as its folder; anything else (a path, a Hub id) as given."""
    if "/" in text or Path(text).exists():
        return text
    return str(list_pretrained().get(text, text))
