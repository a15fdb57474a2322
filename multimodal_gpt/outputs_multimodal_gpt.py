"""The output classes of MultimodalGPT, following the Transformers 5.x multimodal contract (LLaVA's): the language
model's outputs plus the outputs of each media encoder that ran (`image_outputs`, `audio_outputs`), whose
`pooler_output` holds the media tokens the fusion produced.

This is a "Hub file": it imports only torch, transformers and the standard library.
"""

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MultimodalBaseModelOutputWithPast,
    MultimodalCausalLMOutputWithPast,
)


@dataclass
class MultimodalGPTMediaOutput(BaseModelOutputWithPooling):
    r"""
    What `get_image_features` / `get_audio_features` return: the tower's outputs (`last_hidden_state`, and
    `hidden_states` / `attentions` when asked for) and the media tokens of the fusion.

    pooler_output (`torch.FloatTensor` of shape `(num_media, num_tokens, hidden_size)`):
        The media tokens the fusion produced: spliced over the placeholders (linear, mlp, resampler), or attended to
        by the gated cross-attention layers.
    pooler_output_mask (`torch.BoolTensor` of shape `(num_media, num_tokens)`):
        Which tokens are real: audio clips of different lengths give different numbers of tokens (padding is False).
    """

    pooler_output_mask: torch.BoolTensor | None = None


@dataclass
class MultimodalGPTModelOutputWithPast(MultimodalBaseModelOutputWithPast):
    r"""
    [`MultimodalBaseModelOutputWithPast`] of [`MultimodalGPTModel`]: `last_hidden_state`, `cache` (a
    `MultimodalGPTCache` with the media keys and values under cross-attention fusion), `hidden_states`,
    `attentions`, and the `image_outputs` / `audio_outputs` ([`MultimodalGPTMediaOutput`]) of the media encoded in
    this call.
    """


@dataclass
class MultimodalGPTCausalLMOutputWithPast(MultimodalCausalLMOutputWithPast):
    r"""
    [`MultimodalCausalLMOutputWithPast`] of [`MultimodalGPTForConditionalGeneration`]: `loss` (next-token loss,
    averaged over the labelled tokens or divided by `num_items_in_batch`), `logits` (`None` in training mode with
    `labels` when `config.labelled_logits_only` is set), `cache`, `hidden_states`, `attentions`, `image_outputs`,
    `audio_outputs`.
    """


__all__ = ["MultimodalGPTCausalLMOutputWithPast", "MultimodalGPTMediaOutput", "MultimodalGPTModelOutputWithPast"]
