"""multimodal_gpt: a GPT-2 that sees and hears, as a Hugging Face Transformers extension.

Importing the package registers the config and models with the Auto classes, so `AutoConfig`, `AutoModel`,
`AutoModelForCausalLM`, `AutoModelForImageTextToText`, `AutoModelForMultimodalLM` and `AutoModelForSpeechSeq2Seq`
resolve `model_type="multimodal_gpt"` without `trust_remote_code`, and `AutoProcessor` finds the processor.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
    AutoModelForSpeechSeq2Seq,
    AutoProcessor,
)

from .configuration_multimodal_gpt import AUDIO_TOKEN, IMAGE_TOKEN, MultimodalGPTConfig, add_multimodal_tokens
from .modeling_multimodal_gpt import (
    MultimodalGPTForConditionalGeneration,
    MultimodalGPTModel,
    MultimodalGPTPreTrainedModel,
)
from .pipeline_multimodal_gpt import MultimodalGPTSpeechRecognitionPipeline, MultimodalGPTTranslationPipeline
from .processing_multimodal_gpt import MultimodalGPTProcessor

__version__ = "0.1.0"

GENERATION_AUTO_CLASSES = (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
    AutoModelForSpeechSeq2Seq,
)


def _register() -> None:
    AutoConfig.register(MultimodalGPTConfig.model_type, MultimodalGPTConfig, exist_ok=True)
    AutoModel.register(MultimodalGPTConfig, MultimodalGPTModel, exist_ok=True)
    AutoProcessor.register(MultimodalGPTConfig, MultimodalGPTProcessor, exist_ok=True)
    for auto_class in GENERATION_AUTO_CLASSES:
        auto_class.register(MultimodalGPTConfig, MultimodalGPTForConditionalGeneration, exist_ok=True)
    # `save_pretrained` writes these into config.json's `auto_map`, so `trust_remote_code=True` users need nothing
    # but the checkpoint folder.
    MultimodalGPTConfig.register_for_auto_class()
    MultimodalGPTModel.register_for_auto_class("AutoModel")
    MultimodalGPTProcessor.register_for_auto_class("AutoProcessor")
    for auto_class in GENERATION_AUTO_CLASSES:
        MultimodalGPTForConditionalGeneration.register_for_auto_class(auto_class.__name__)
    # Every `save_pretrained` / `push_to_hub` writes the model card (README.md) from model_cards/.
    MultimodalGPTPreTrainedModel.model_card_writer = staticmethod(_write_model_card)


def _write_model_card(model: MultimodalGPTPreTrainedModel, folder: str, repo_id: str | None = None) -> None:
    from .training.model_card import write_model_card  # on first save: the card module imports the metrics' packages

    write_model_card(folder, model, repo_id=repo_id)


_register()

__all__ = [
    "AUDIO_TOKEN",
    "IMAGE_TOKEN",
    "MultimodalGPTConfig",
    "MultimodalGPTForConditionalGeneration",
    "MultimodalGPTModel",
    "MultimodalGPTPreTrainedModel",
    "MultimodalGPTProcessor",
    "MultimodalGPTSpeechRecognitionPipeline",
    "MultimodalGPTTranslationPipeline",
    "__version__",
    "add_multimodal_tokens",
]
