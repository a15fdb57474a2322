"""Input checks of the model's `forward`: fail fast, saying what is wrong and how to fix it, before a tower or GPT-2
fails deep inside with a shape error (or, worse, silently computes something else).

This is a "Hub file": it imports only torch, transformers and its sibling Hub files.
"""

import torch
from torch import nn
from transformers import PreTrainedConfig
from transformers.cache_utils import Cache
from transformers.utils import is_torchdynamo_compiling, torch_compilable_check

from .configuration_multimodal_gpt import (
    INTERPOLATING_VISION_TOWERS,
    _pair,
    convolved_length,
    vision_tower_convolutions,
)


def check_text_inputs(
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    past_length: int | None,
) -> None:
    """Exactly one of `input_ids` (batch_size, sequence_length) and `inputs_embeds` (batch_size, sequence_length,
    hidden_size), and a 2-D `attention_mask` that covers the cached and the new tokens (`past_length` of them, `None`
    when unknown: a compiled graph cannot read a static cache's length)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Give exactly one of input_ids and inputs_embeds.")
    if input_ids is not None:
        if input_ids.ndim != 2:
            raise ValueError(
                f"input_ids must have shape (batch_size, sequence_length), got {tuple(input_ids.shape)}: add the "
                "batch dimension (input_ids[None]) or use the processor with return_tensors='pt'."
            )
        if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}.")
        shape = tuple(input_ids.shape)
    else:
        if inputs_embeds.ndim != 3:
            raise ValueError(
                "inputs_embeds must have shape (batch_size, sequence_length, hidden_size), got "
                f"{tuple(inputs_embeds.shape)}."
            )
        shape = tuple(inputs_embeds.shape[:2])
    if shape[1] == 0:
        raise ValueError("The input has no tokens (sequence_length 0): give at least one token, e.g. the bos token.")
    if attention_mask is not None and attention_mask.ndim != 4 and past_length is not None:  # 4-D: prepared
        expected = (shape[0], past_length + shape[1])
        if tuple(attention_mask.shape) != expected:
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}, expected (batch_size, cached + new "
                f"tokens) = {expected}: one entry per token of the whole sequence, cached ones included."
            )


def check_media_values(name: str, values: torch.Tensor) -> None:
    """Media must be floating point (normalised by the processor) and finite: uint8 pixels or NaN would give
    garbage features without any error."""
    if not values.dtype.is_floating_point:
        raise ValueError(
            f"{name} must be a floating-point tensor (the processor's normalised output), got dtype {values.dtype}: "
            "pass the images or clips through the processor instead of raw integer data."
        )
    if not is_torchdynamo_compiling():
        torch_compilable_check(
            torch.isfinite(values).all(), f"{name} hold NaN or infinite values: check the preprocessing."
        )


def check_pixel_values(
    pixel_values: torch.Tensor, vision_tower: nn.Module | None, vision_config: PreTrainedConfig | None
) -> None:
    """Images of shape (num_images, channels, height, width) at the tower's size (any multiple of the patch for
    towers that interpolate their position embeddings, any size that leaves a feature map for convolutional ones)."""
    if vision_tower is None:
        raise ValueError("pixel_values were given, but this model has no vision tower (config.vision_config).")
    if pixel_values.ndim != 4:
        raise ValueError(
            f"pixel_values must have shape (num_images, channels, height, width), got {tuple(pixel_values.shape)}."
        )
    check_media_values("pixel_values", pixel_values)
    channels = getattr(vision_config, "num_channels", 3)
    if pixel_values.shape[1] != channels:
        raise ValueError(
            f"pixel_values have {pixel_values.shape[1]} channels, the vision tower expects {channels}: convert "
            "images to RGB (the processor does)."
        )
    size = tuple(pixel_values.shape[-2:])
    convolutions = vision_tower_convolutions(vision_config)
    if convolutions is not None:
        if min(convolved_length(length, convolutions) for length in size) < 1:
            raise ValueError(
                f"Images of {size[0]}x{size[1]} pixels are too small for the '{vision_config.model_type}' tower: its "
                "convolutions leave no feature map. Resize them (the processor does)."
            )
        return
    patch = _pair(vision_config.patch_size)
    if vision_config.model_type in INTERPOLATING_VISION_TOWERS:
        if size[0] % patch[0] or size[1] % patch[1]:
            raise ValueError(f"Image size {size} is not a multiple of the patch size {patch}.")
    elif size != _pair(vision_config.image_size):
        raise ValueError(
            f"Images are {size[0]}x{size[1]} pixels, the vision tower expects "
            f"{'x'.join(map(str, _pair(vision_config.image_size)))}: resize them (the processor does)."
        )


def check_audio_inputs(
    audio_tower: nn.Module | None,
    audio_config: PreTrainedConfig | None,
    input_features: torch.Tensor | None,
    input_features_mask: torch.Tensor | None,
    input_values: torch.Tensor | None,
    input_values_mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The audio input the tower takes (log-mel `input_features` or waveform `input_values`) and its mask of valid
    positions (all valid when none is given): (num_clips, ..., frames or samples), (num_clips, frames or samples)."""
    if audio_tower is None:
        raise ValueError("Audio inputs were given, but this model has no audio tower (config.audio_config).")
    expected = audio_tower.main_input_name
    audio, audio_mask = (
        (input_features, input_features_mask) if expected == "input_features" else (input_values, input_values_mask)
    )
    if audio is None:
        other = "input_values" if expected == "input_features" else "input_features"
        raise ValueError(
            f"The audio tower ({audio_config.model_type}) takes `{expected}`, but `{other}` was given: use the "
            "feature extractor that matches the tower (the processor does)."
        )
    expected_ndim = 3 if expected == "input_features" else 2
    if audio.ndim != expected_ndim:
        layout = "(num_clips, num_mel_bins, frames)" if expected_ndim == 3 else "(num_clips, samples)"
        raise ValueError(f"{expected} must have shape {layout}, got {tuple(audio.shape)}.")
    check_media_values(expected, audio)
    expected_shape = (audio.shape[0], audio.shape[-1])  # (num_clips, samples or frames)
    if audio_mask is None:
        audio_mask = torch.ones(expected_shape, dtype=torch.long, device=audio.device)
    if tuple(audio_mask.shape) != expected_shape:
        raise ValueError(f"The audio mask has shape {tuple(audio_mask.shape)}, expected {expected_shape}.")
    return audio, audio_mask


def check_media_features(
    name: str, features: torch.Tensor, mask: torch.Tensor | None, width: int, tower: nn.Module | None
) -> None:
    """Precomputed `image_features` / `audio_features` (num_media, num_features, width), computed by the model's
    `encode_images` / `encode_audio` (audio with its mask (num_media, num_features)). They skip the tower, so the
    tower must not be training: its gradients would silently be lost."""
    argument = f"{name}_features"
    modality = "vision" if name == "image" else "audio"
    if tower is None:
        raise ValueError(f"{argument} were given, but this model has no {modality} tower (config.{modality}_config).")
    if features.ndim != 3 or features.shape[-1] != width:
        raise ValueError(
            f"{argument} must have shape (num_{name}s, num_features, {width}), got {tuple(features.shape)}: compute "
            f"them with this model's encode_{'images' if name == 'image' else 'audio'} (the width depends on the "
            "tower, the feature layer and the token merge or frame reduction)."
        )
    check_media_values(argument, features)
    if name == "audio" and (mask is None or tuple(mask.shape) != tuple(features.shape[:2])):
        shape = None if mask is None else tuple(mask.shape)
        raise ValueError(f"audio_features need audio_features_mask of shape {tuple(features.shape[:2])}, got {shape}.")
    if torch.is_grad_enabled() and tower.training and any(p.requires_grad for p in tower.parameters()):
        raise ValueError(
            f"{argument} skip the {modality} tower, which is trainable: it would get no gradient. Freeze it "
            f"(model.freeze_towers('{modality}'), --freeze_towers), or give the raw media instead."
        )


def check_sequence_length(sequence_length: int, cache: Cache | None, n_positions: int) -> None:
    """GPT-2's learned positions end at `n_positions`: past them it would index out of its position table."""
    past = cache.get_seq_length() if cache is not None else 0
    if past + sequence_length > n_positions:
        raise ValueError(
            f"The sequence has {past + sequence_length} tokens ({past} cached + {sequence_length} new), more than "
            f"GPT-2's {n_positions} positions: truncate the text or use fewer media tokens (e.g. the resampler "
            "fusion)."
        )


def check_placeholders_have_media(placeholder_masks: dict[str, torch.Tensor], media_given: dict[str, bool]) -> None:
    """At prefill, a placeholder without its medium would silently feed GPT-2 the placeholder's embedding.
    `placeholder_masks`: {"image" / "audio": (batch_size, sequence_length) bool}."""
    for name, mask in placeholder_masks.items():
        if media_given[name] or is_torchdynamo_compiling():
            continue
        count = int(mask.sum())
        if count:
            inputs = "pixel_values" if name == "image" else "input_features / input_values"
            raise ValueError(f"input_ids hold {count} <{name}> tokens but no {inputs} were given.")


def check_media_count(name: str, num_placeholders: torch.Tensor, num_features: int, cross_attention: bool) -> None:
    """As many placeholder tokens as media tokens (spliced fusions) or media (cross-attention, one marker each)."""
    hint = (
        f"with cross-attention fusion each <{name}> stays one marker token"
        if cross_attention
        else f"build the inputs with MultimodalGPTProcessor, which expands each <{name}> to the right count"
    )
    torch_compilable_check(
        num_placeholders == num_features,
        lambda: (
            f"{name.capitalize()} features and <{name}> tokens do not match, tokens: {int(num_placeholders)}, "
            f"features: {num_features} ({hint})."
        ),
    )


__all__ = [
    "check_audio_inputs",
    "check_media_count",
    "check_media_features",
    "check_media_values",
    "check_pixel_values",
    "check_placeholders_have_media",
    "check_sequence_length",
    "check_text_inputs",
]
