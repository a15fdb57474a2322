"""The `PreTrainedModel` base of MultimodalGPT: what every class shares for loading, saving (the Auto classes and
pipelines written into config.json, the model card) and initialisation.

This is a "Hub file": it imports only torch, transformers and its sibling Hub files (see DESIGN.md).
"""

import os
from collections.abc import Callable
from typing import Any

from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from .configuration_multimodal_gpt import MultimodalGPTConfig
from .fusion_multimodal_gpt import GatedCrossAttentionLayer, PerceiverResampler
from .pipeline_multimodal_gpt import CUSTOM_PIPELINES

# `register_for_auto_class` records one Auto class per model class; this model answers all of these, so
# `save_pretrained` writes them all into config.json's `auto_map` for `trust_remote_code=True` users.
_GENERATION_CLASS = "modeling_multimodal_gpt.MultimodalGPTForConditionalGeneration"
AUTO_MAP = {
    "AutoConfig": "configuration_multimodal_gpt.MultimodalGPTConfig",
    "AutoModel": "modeling_multimodal_gpt.MultimodalGPTModel",
    "AutoModelForCausalLM": _GENERATION_CLASS,
    "AutoModelForImageTextToText": _GENERATION_CLASS,
    "AutoModelForMultimodalLM": _GENERATION_CLASS,
    "AutoModelForSpeechSeq2Seq": _GENERATION_CLASS,
}


class MultimodalGPTPreTrainedModel(PreTrainedModel):
    config: MultimodalGPTConfig
    config_class = MultimodalGPTConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    # Blocks that `device_map` keeps on one device and FSDP wraps as one unit. The towers add their own (ViTLayer,
    # CLIPEncoderLayer, WhisperEncoderLayer, ...); wav2vec2 declares none and HuBERT misses its stable-layer-norm
    # layer, so they are named here, with the weight-normed positional convolution whose two halves must stay together.
    _no_split_modules = [
        "MultimodalGPT2Block",
        "GPT2Block",
        "PerceiverResampler",
        "Wav2Vec2EncoderLayer",
        "Wav2Vec2EncoderLayerStableLayerNorm",
        "HubertEncoderLayer",
        "HubertEncoderLayerStableLayerNorm",
        "ParametrizedConv1d",
    ]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    # A decoding step with a static cache compiles as one graph (`torch.compile(fullgraph=True)`), every fusion:
    # tests/test_modeling_multimodal_gpt.py checks it, and that torch.export traces text + image and text + audio.
    _can_compile_fullgraph = True
    accepts_loss_kwargs = True
    # Writes README.md (the model card) into every saved folder: `model_card_writer(model, folder, repo_id=None)`.
    # The installed package sets it (`multimodal_gpt/__init__.py`); remote-code users, without the package and its
    # card template, save no card.
    model_card_writer: Callable[..., Any] | None = None

    @property
    def input_modalities(self) -> tuple[str, ...]:
        """Text, plus image / audio where the model has that tower: pipelines read this (`any-to-any` asks for
        torchvision only for a model that takes images)."""
        towers = (("image", self.config.vision_config), ("audio", self.config.audio_config))
        return (*(modality for modality, tower in towers if tower is not None), "text")

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.from_pretrained`, with the parameters that are frozen at build time frozen again (the
        towers' unused poolers and pooling heads, Whisper's fixed sinusoidal positions): loading leaves every
        parameter trainable, and DDP without `find_unused_parameters` would then wait for gradients that never
        come."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, loading_info) with output_loading_info
        for name, parameter in model.named_parameters():
            if name in model._frozen_at_build:
                parameter.requires_grad_(False)
        return loaded

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """`PreTrainedModel.save_pretrained` (also behind `push_to_hub`), with every Auto class in `auto_map`."""
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **AUTO_MAP}
        # `pipeline(task, model=folder, trust_remote_code=True)` reads these; the `from .pipeline_multimodal_gpt`
        # import above makes `save_pretrained` ship that file. Fresh copies: `pipeline()` turns the loaded ones'
        # class names into classes, which JSON cannot hold.
        pipelines = {task: {**info, "pt": list(info["pt"])} for task, info in CUSTOM_PIPELINES.items()}
        self.config.custom_pipelines = {**(getattr(self.config, "custom_pipelines", None) or {}), **pipelines}
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.model_card_writer is not None and self.should_save_on_this_rank(kwargs.get("is_main_process", True)):
            self.model_card_writer(self, save_directory)

    def _upload_modified_files(self, working_dir: str | os.PathLike, repo_id: str, *args: Any, **kwargs: Any) -> Any:
        # `push_to_hub` saves README.md (the Hub repo's card, or transformers' generic one) over the card that
        # `save_pretrained` wrote, just before this upload: write ours again (the writer keeps a hand-written card,
        # and the tags).
        if self.model_card_writer is not None:
            self.model_card_writer(self, working_dir, repo_id=repo_id)
        return super()._upload_modified_files(working_dir, repo_id, *args, **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, GatedCrossAttentionLayer):
            init.zeros_(module.attention_gate)  # closed gates: a fresh model is exactly GPT-2
            if module.feed_forward_gate is not None:
                init.zeros_(module.feed_forward_gate)
        elif isinstance(module, PerceiverResampler):
            init.normal_(module.latents, std=self.config.initializer_range)

    def initialize_weights(self) -> None:
        super().initialize_weights()
        # The gated cross-attention layers live inside GPT-2, whose own `_init_weights` does not know their gates.
        for module in self.modules():
            if isinstance(module, GatedCrossAttentionLayer):
                self._init_weights(module)

    def post_init(self) -> None:
        super().post_init()  # gathers the towers' `_no_split_modules` too (ViTLayer, WhisperEncoderLayer, ...)
        # What the build froze (see `from_pretrained`): the towers' unused parts, and what the towers freeze.
        self._frozen_at_build = {name for name, parameter in self.named_parameters() if not parameter.requires_grad}
        # Keep only the block classes this model has: FSDP's transformer auto-wrap (accelerate) stops on any name it
        # cannot find, e.g. Whisper's decoder layer (the tower is the encoder alone) or the fusion not chosen.
        present = {type(module).__name__ for module in self.modules()}
        self._no_split_modules = {name for name in self._no_split_modules if name in present}


__all__ = ["AUTO_MAP", "MultimodalGPTPreTrainedModel"]
