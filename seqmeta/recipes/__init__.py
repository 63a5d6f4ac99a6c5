"""The shipped recipes: training, fine-tuning and self-supervision configs, and accelerate launch configs.

    seqmeta train --config cheetah_vel                   # a shipped recipe, by name
    seqmeta train --config my_recipe.yaml                # or any YAML file
    seqmeta recipes                                      # names, paths and what each is for
    accelerate launch --config_file "$(seqmeta recipes --path accelerate/ddp)" -m seqmeta train --config cheetah_vel

A recipe is a YAML mapping of config fields (``seqmeta.configs``); its opening comment says what it is
for and the commands that make its data. They ship inside the package, so an installed seqmeta runs
them without a checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from seqmeta.errors import ConfigError


def recipes_dir() -> Path:
    return Path(str(resources.files("seqmeta") / "recipes"))


def list_recipes() -> dict[str, Path]:
    """Recipe name (``accelerate/ddp`` for launch configs) -> its file."""
    root = recipes_dir()
    return {p.relative_to(root).with_suffix("").as_posix(): p for p in sorted(root.rglob("*.yaml"))}


def recipe_summary(path: Path) -> str:
    """The first line of a recipe's opening comment."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        break
    return ""


def find_recipe(name: str) -> Path:
    """The shipped recipe called ``name`` (``cheetah_vel``, ``cheetah-vel`` and ``cheetah_vel.yaml`` alike)."""
    key = name.removesuffix(".yaml").replace("-", "_")
    recipes = list_recipes()
    if key in recipes:
        return recipes[key]
    raise ConfigError(
        f"no recipe file {name} and no shipped recipe of that name; shipped: {', '.join(recipes)} "
        "(`seqmeta recipes` describes each), or give the path of a YAML file"
    )


def resolve_config_path(path: str | Path) -> Path:
    """A config argument as a file: an existing path as it is, else a shipped recipe of that name."""
    path = Path(path)
    if path.is_file() or len(path.parts) > 2 or path.suffix not in ("", ".yaml"):
        return path
    return find_recipe(path.as_posix())
