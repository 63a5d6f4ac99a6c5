"""seqmeta's transformers models, registered with the Auto classes on import."""

from pathlib import Path

from transformers import AutoConfig, AutoModel

from seqmeta.errors import ConfigError
from seqmeta.models.prompt_dt import PromptDTConfig, PromptDTModel, PromptDTOutput

AutoConfig.register(PromptDTConfig.model_type, PromptDTConfig, exist_ok=True)
AutoModel.register(PromptDTConfig, PromptDTModel, exist_ok=True)


def load_model(path, **kwargs):
    """A seqmeta model folder (or Hub id ``org/name``) as the model class its config names, through
    transformers' Auto classes; no remote code runs. Callers outside ``models/`` load models only
    through this. A path that names a local folder which does not exist is refused, never taken for
    a Hub id."""
    text = str(path)
    looks_local = text.startswith(("/", ".", "~")) or text.count("/") != 1 or text.endswith("/")
    if looks_local and not Path(text).expanduser().exists():
        raise ConfigError(f"no model folder at {text}: give a `seqmeta train` model/ folder or a Hub id org/name")
    if Path(text).expanduser().is_dir() and not (Path(text).expanduser() / "config.json").is_file():
        raise ConfigError(f"{text} is not a model folder (no config.json): give a `seqmeta train` model/ folder")
    return AutoModel.from_pretrained(text, **kwargs)


def load_model_config(path, **kwargs):
    """The config of a seqmeta model folder (its class named by ``model_type``)."""
    return AutoConfig.from_pretrained(str(path), **kwargs)


def build_model(dataset, **options):
    """A fresh model of the default architecture, sized by ``options`` (config field names) and with
    widths, normalization and action box from ``dataset``."""
    return PromptDTModel(PromptDTConfig.from_dataset(dataset, **options))


def model_fields() -> set[str]:
    """The config fields a training recipe may set for the default architecture."""
    return set(PromptDTConfig.__dataclass_fields__)


__all__ = ["PromptDTConfig", "PromptDTModel", "PromptDTOutput", "build_model", "load_model", "load_model_config"]
