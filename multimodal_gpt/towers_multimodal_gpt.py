"""The encoder towers: any patch-based Transformers vision encoder (ViT-style: see
`configuration_multimodal_gpt.is_patch_sequence_tower`), a convolutional one (ResNet, ConvNeXt: see
`configuration_multimodal_gpt.vision_tower_convolutions`) or an audio encoder, built from its config or loaded
pretrained.

This is a "Hub file": it imports only torch, transformers and the standard library.
"""

import os

from torch import nn
from transformers import AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_MAPPING

from .configuration_multimodal_gpt import tower_config

# Parts of a tower that the features we take do not pass through: frozen at build time, so DDP without
# `find_unused_parameters` never waits for their gradients (ViT's pooler, SigLIP's attention-pooling head, CLIP's
# post-layernorm and ConvNeXt's final layer norm, which only the pooled output sees). A bare name matches a module of
# that name anywhere in the tower; "model_type:path" matches the module at that dotted path of that tower only
# (ConvNeXt's stages have layer norms named `layernorm` too).
UNUSED_TOWER_PARTS = {
    "pooler",
    "head",
    "clip_vision_model:post_layernorm",
    "convnext:layernorm",
    "convnextv2:layernorm",
}


def build_tower(config: PreTrainedConfig) -> PreTrainedModel:
    """An encoder tower from its config: `AutoModel.from_config`, but for encoder-decoder configs (Whisper) only
    the encoder. Tower parts that our features never pass through (poolers, pooling heads) are frozen."""
    if getattr(config, "is_encoder_decoder", False):
        tower = AutoModel.from_config(config).get_encoder()
    else:
        tower = AutoModel.from_config(config)
    freeze_unused_tower_parts(tower)
    return tower


def load_tower(name_or_path: str | os.PathLike | None) -> PreTrainedModel | None:
    """A pretrained encoder tower from a Hub id or local folder. A dual-encoder checkpoint (CLIP, SigLIP) gives its
    vision model, an encoder-decoder one (Whisper) its encoder."""
    if name_or_path is None:
        return None
    config = tower_config(name_or_path)
    if getattr(config, "is_encoder_decoder", False):
        return AutoModel.from_pretrained(name_or_path).get_encoder()
    return MODEL_MAPPING[type(config)].from_pretrained(name_or_path)  # e.g. a CLIPModel folder -> CLIPVisionModel


def freeze_unused_tower_parts(tower: PreTrainedModel) -> None:
    """Freeze the parts of `tower` in `UNUSED_TOWER_PARTS` (at build; the model's `from_pretrained` restores what
    the build froze, since loading leaves every parameter trainable)."""
    for name, module in tower.named_modules():
        if name and is_unused_tower_part(tower.config.model_type, name):
            module.requires_grad_(False)


def is_unused_tower_part(model_type: str, name: str) -> bool:
    """Whether the module at dotted path `name` of a `model_type` tower is, or lies inside, a part of
    `UNUSED_TOWER_PARTS`."""
    parts = name.split(".")
    prefixes = (".".join(parts[: index + 1]) for index in range(len(parts)))
    return any(part in UNUSED_TOWER_PARTS for part in parts) or any(
        f"{model_type}:{prefix}" in UNUSED_TOWER_PARTS for prefix in prefixes
    )


def is_trainable(module: nn.Module) -> bool:
    return any(parameter.requires_grad for parameter in module.parameters())


__all__ = ["build_tower", "freeze_unused_tower_parts", "is_trainable", "is_unused_tower_part", "load_tower"]
