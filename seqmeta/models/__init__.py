"""seqmeta's transformers models, registered with the Auto classes on import."""

from pathlib import Path

from transformers import AutoConfig, AutoModel, PreTrainedConfig

from seqmeta.errors import ConfigError
from seqmeta.models.prompt_dt import PromptDTConfig, PromptDTModel, PromptDTOutput

NORMALIZATION_FIELDS = ("state_mean", "state_std", "action_low", "action_high")

AutoConfig.register(PromptDTConfig.model_type, PromptDTConfig, exist_ok=True)
AutoModel.register(PromptDTConfig, PromptDTModel, exist_ok=True)


def load_model(path, **kwargs):
    """A seqmeta model folder, Hub id ``org/name`` or shipped model's name (``seqmeta.list_pretrained()``)
    as the model class its config names, through transformers' Auto classes; no remote code runs.
    Callers outside ``models/`` load models only through this. A path that names a local folder which
    does not exist is refused, never taken for a Hub id."""
    from seqmeta.pretrained import list_pretrained, names_hub_repo, resolve_shipped

    text = resolve_shipped(str(path))  # a model that ships with seqmeta, by name
    if not text.strip() or Path(text).expanduser().is_file():
        raise ConfigError(
            f"{text!r} is not a model folder: give a `seqmeta train` model/ folder, a Hub id org/name or a shipped "
            "model's name"
        )
    if "/" not in text and not Path(text).exists():
        raise ConfigError(
            f"no model folder at {text} and no shipped model of that name (shipped: "
            f"{', '.join(list_pretrained()) or 'none'}): give a `seqmeta train` model/ folder, a Hub id org/name or "
            "a shipped model's name"
        )
    if not names_hub_repo(text) and not Path(text).expanduser().exists():
        raise ConfigError(
            f"no model folder at {text}: give a `seqmeta train` model/ folder, a Hub id org/name or a shipped "
            "model's name (`seqmeta families` names them)"
        )
    if Path(text).expanduser().is_dir() and not (Path(text).expanduser() / "config.json").is_file():
        raise ConfigError(f"{text} is not a model folder (no config.json): give a `seqmeta train` model/ folder")
    config = AutoConfig.from_pretrained(text, **kwargs)
    if not str(getattr(config, "model_type", "")).startswith("seqmeta"):
        raise ConfigError(
            f"{text} holds a {getattr(config, 'model_type', 'unknown')!r} model, not a seqmeta model: give a folder "
            "that `seqmeta train` (or save_pretrained of a seqmeta model) wrote"
        )
    raw, _ = PreTrainedConfig.get_config_dict(text, **kwargs)  # config.json as written, before defaults
    missing = [k for k in NORMALIZATION_FIELDS if raw.get(k) is None]
    if missing:
        raise ConfigError(
            f"{text}: config.json lacks {missing}, the normalization the weights were trained with; the model "
            "would act on wrongly scaled inputs: use the folder its training run wrote"
        )
    if hasattr(config, "check_shapes"):
        try:
            config.check_shapes()
        except ValueError as e:
            raise ConfigError(
                f"{text}: config.json is not usable ({e}): use the config.json its training run wrote"
            ) from None
    local = Path(text).expanduser()
    if local.is_dir() and not any(local.glob("*.safetensors")):
        pickle_suffixes = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
        pickles = sorted(p.name for p in local.iterdir() if p.suffix in pickle_suffixes)
        found = f" (only {pickles}, pickle files that could run code)" if pickles else ""
        raise ConfigError(
            f"{text} has no safetensors weights{found}: seqmeta loads model.safetensors only; save the model with "
            "save_pretrained"
        )
    if local.is_dir():
        _check_weight_shapes(text, local, config)
    kwargs.setdefault("use_safetensors", True)  # never unpickle weights
    model, info = AutoModel.from_pretrained(text, config=config, output_loading_info=True, **kwargs)
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        raise ConfigError(
            f"{text}: the weights do not match config.json "
            f"({'; '.join(f'{k}: {list(v)[:3]}' for k, v in problems.items())}): some layers would be random; use the "
            "weights and config.json its training run wrote together"
        )
    # A Hub model's branch or commit: push_model publishes the repository's files from it.
    model.hub_revision = kwargs.get("revision")
    return model


def _check_weight_shapes(text: str, folder: Path, config) -> None:
    """The safetensors tensors against the shapes ``config`` builds (read from the file headers, before loading)."""
    import torch
    from safetensors import safe_open

    with torch.device("meta"):
        expected = {k: list(v.shape) for k, v in AutoModel.from_config(config).state_dict().items()}
    wrong = []
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            wrong += [
                f"{k} {f.get_slice(k).get_shape()} (config: {expected[k]})"
                for k in f.keys()  # noqa: SIM118 (a safetensors file, not a dict)
                if k in expected and list(f.get_slice(k).get_shape()) != expected[k]
            ]
    if wrong:
        raise ConfigError(
            f"{text}: the weights do not match config.json ({len(wrong)} tensors of other sizes, e.g. {wrong[0]}): "
            "use the weights and config.json its training run wrote together"
        )


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
