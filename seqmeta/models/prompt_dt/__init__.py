from seqmeta.models.prompt_dt.configuration_prompt_dt import PromptDTConfig
from seqmeta.models.prompt_dt.modeling_prompt_dt import PromptDTModel, PromptDTOutput

__all__ = ["PromptDTConfig", "PromptDTModel", "PromptDTOutput"]
