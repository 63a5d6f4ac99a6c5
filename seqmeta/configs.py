"""Typed configs: dataclasses with help text per field, read from YAML recipes, overridden on the command line.

Every run config of seqmeta (training, fine-tuning) is a dataclass whose fields are declared with
``option(default, help)``. The same code turns one into command-line flags, reads a recipe (a YAML
file or a shipped one in ``seqmeta/recipes/``), checks names and types, and writes the resolved config
beside what a run produces:

    config = load_config(TrainConfig, "point_robot", {"max_steps": 100})  # or a path
    save_config(config, "outputs/run/train_config.yaml")

Precedence: field default < recipe < explicit overrides. Unknown keys and wrong types are errors that
name the key, the file and the fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import math
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from seqmeta.errors import ConfigError
from seqmeta.io import atomic_write_text

C = TypeVar("C")


def option(
    default: Any,
    help: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A config field with its help text (shown by ``--help``) and its allowed range: ``low`` <= value
    (< with ``low_open``) <= ``high``, or one of ``choices``. ``check_options`` enforces them."""
    metadata = {"help": help, "low": low, "high": high, "low_open": low_open, "choices": choices}
    return dataclasses.field(default=default, metadata=metadata)


def check_options(config: Any, source: str = "config") -> None:
    """Every field of ``config`` within its declared range (numbers finite), before any work starts."""
    for f in dataclasses.fields(config):
        value, meta = getattr(config, f.name), f.metadata
        problem = None
        if isinstance(value, float) and not math.isfinite(value):
            problem = "a finite number"
        elif meta.get("choices") and value not in meta["choices"]:
            problem = f"one of {', '.join(map(str, meta['choices']))}"
        elif isinstance(value, int | float) and not isinstance(value, bool):
            low, high = meta.get("low"), meta.get("high")
            if low is not None and (value <= low if meta.get("low_open") else value < low):
                problem = f"{'>' if meta.get('low_open') else '>='} {low}"
            elif high is not None and value > high:
                problem = f"<= {high}"
        if problem:
            raise ConfigError(f"{source}: {f.name} must be {problem}, got {value!r}; {f.name}: {meta.get('help', '')}")


def field_order(cls: type) -> list[str]:
    """The fields a config class declares itself first (in its order), then those it inherits."""
    own = [n for n in inspect.get_annotations(cls) if n in cls.__dataclass_fields__]
    return own + [n for n in cls.__dataclass_fields__ if n not in own]


def field_help(cls: type, name: str) -> str:
    return cls.__dataclass_fields__[name].metadata.get("help", "")


def _check_value(cls: type, name: str, value: Any, source: str) -> Any:
    kind = typing.get_type_hints(cls)[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float, str, bool) and not (
        isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    ):
        raise ConfigError(
            f"{source}: {name} must be {kind.__name__}, got {value!r} ({type(value).__name__}); "
            f"{name}: {field_help(cls, name)}"
        )
    return value


def config_from_dict(cls: type[C], values: dict[str, Any], source: str = "config") -> C:
    """Build ``cls`` from a dict, refusing unknown keys and values of the wrong type."""
    fields = cls.__dataclass_fields__
    for key in values:
        if key not in fields:
            near = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise ConfigError(f"{source}: unknown key {key!r}; {hint}known keys: {', '.join(fields)}")
    config = cls(**{k: _check_value(cls, k, v, source) for k, v in values.items()})
    check_options(config, source)
    return config


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; `seqmeta recipes` lists the shipped recipes")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, got {type(values).__name__}")
    return values


def load_config(cls: type[C], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Field defaults, then the YAML recipe at ``path`` (a file, or a shipped recipe's name), then ``overrides``."""
    if path:
        from seqmeta.recipes import resolve_config_path

        path = resolve_config_path(path)
    values = read_yaml(path) if path else {}
    config_from_dict(cls, values, str(path))  # report a recipe's own mistakes against its file
    return config_from_dict(cls, {**values, **(overrides or {})}, str(path or "config"))


def save_config(config: Any, path: str | Path) -> None:
    """The resolved config as YAML (atomically), loadable with ``load_config``."""
    values = dataclasses.asdict(config)
    ordered = {name: values[name] for name in field_order(type(config))}
    atomic_write_text(Path(path), yaml.safe_dump(ordered, sort_keys=False))


class BoolFlag(argparse.Action):
    """A boolean option given alone (true) or followed by true or false (what people type after reading a
    YAML recipe); ``add_config_options`` registers its negation beside it."""

    WORDS: ClassVar[dict[str, bool]] = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs="?", metavar="true|false", **kwargs)

    def __call__(self, parser, namespace, value, option_string=None):
        if value is not None and value.lower() not in self.WORDS:
            parser.error(f"{option_string} takes true or false (or no value), got {value!r}")
        setattr(namespace, self.dest, value is None or self.WORDS[value.lower()])


def add_config_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per field; a flag left out is absent from the namespace (so a recipe's value stands)."""
    hints = typing.get_type_hints(cls)
    for name in field_order(cls):
        f = cls.__dataclass_fields__[name]
        flag = "--" + name.replace("_", "-")
        help_text = f"{f.metadata.get('help', '')} (default: {f.default!r})".replace("%", "%%")
        if hints[name] is bool:
            parser.add_argument(flag, action=BoolFlag, default=argparse.SUPPRESS, help=help_text)
            negated = "--" + "no-" + flag.removeprefix("--")
            parser.add_argument(
                negated, dest=name, action="store_false", default=argparse.SUPPRESS, help=f"{flag} false"
            )
        else:
            parser.add_argument(flag, type=hints[name], default=argparse.SUPPRESS, help=help_text)


def overrides_from_args(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The config fields given explicitly on the command line."""
    return {name: getattr(args, name) for name in cls.__dataclass_fields__ if hasattr(args, name)}
