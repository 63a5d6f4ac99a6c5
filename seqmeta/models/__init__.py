"""seqmeta's transformers models, registered with the Auto classes on import."""

from transformers import AutoConfig, AutoModel

from seqmeta.models.prompt_dt import PromptDTConfig, PromptDTModel, PromptDTOutput

AutoConfig.register(PromptDTConfig.model_type, PromptDTConfig, exist_ok=True)
AutoModel.register(PromptDTConfig, PromptDTModel, exist_ok=True)

__all__ = ["PromptDTConfig", "PromptDTModel", "PromptDTOutput"]
