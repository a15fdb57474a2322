"""Input checks of the model's `forward`: fail fast, saying what is wrong and how to fix it, before a tower or GPT-2
fails deep inside with a shape error (or, worse, silently computes something else).

This is a "Hub file": it imports only torch, transformers and its sibling Hub files.
"""

import torch
from torch import nn
from transformers import PreTrainedConfig
from transformers.cache_utils import Cache

from .configuration_multimodal_gpt import INTERPOLATING_VISION_TOWERS, MultimodalGPTConfig, _pair


def check_pixel_values(
    pixel_values: torch.Tensor, vision_tower: nn.Module | None, vision_config: PreTrainedConfig | None
) -> None:
    """Images of shape (num_images, channels, height, width) at the tower's size (any multiple of the patch for
    towers that interpolate their position embeddings)."""
    if vision_tower is None:
        raise ValueError("pixel_values were given, but this model has no vision tower (config.vision_config).")
    if pixel_values.ndim != 4:
        raise ValueError(
            f"pixel_values must have shape (num_images, channels, height, width), got {tuple(pixel_values.shape)}."
        )
    channels = getattr(vision_config, "num_channels", 3)
    if pixel_values.shape[1] != channels:
        raise ValueError(
            f"pixel_values have {pixel_values.shape[1]} channels, the vision tower expects {channels}: convert "
            "images to RGB (the processor does)."
        )
    size = tuple(pixel_values.shape[-2:])
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
    expected_shape = (audio.shape[0], audio.shape[-1])  # (num_clips, samples or frames)
    if audio_mask is None:
        audio_mask = torch.ones(expected_shape, dtype=torch.long, device=audio.device)
    if tuple(audio_mask.shape) != expected_shape:
        raise ValueError(f"The audio mask has shape {tuple(audio_mask.shape)}, expected {expected_shape}.")
    return audio, audio_mask


def check_sequence_length(sequence_length: int, cache: Cache | None, n_positions: int) -> None:
    """GPT-2's learned positions end at `n_positions`: past them it would index out of its position table."""
    past = cache.get_seq_length() if cache is not None else 0
    if past + sequence_length > n_positions:
        raise ValueError(
            f"The sequence has {past + sequence_length} tokens ({past} cached + {sequence_length} new), more than "
            f"GPT-2's {n_positions} positions: truncate the text or use fewer media tokens (e.g. the resampler "
            "fusion)."
        )


def check_placeholders_have_media(
    input_ids: torch.Tensor,
    config: MultimodalGPTConfig,
    has_vision: bool,
    has_audio: bool,
    media_embeds: torch.Tensor | None,
) -> None:
    """At prefill, a placeholder without its medium would silently feed GPT-2 the placeholder's embedding."""
    for name, token_id, given in (
        ("image", config.image_token_id, has_vision),
        ("audio", config.audio_token_id, has_audio),
    ):
        if token_id is None or given or media_embeds is not None:
            continue
        count = int((input_ids == token_id).sum())
        if count:
            inputs = "pixel_values" if name == "image" else "input_features / input_values"
            raise ValueError(f"input_ids hold {count} <{name}> tokens but no {inputs} were given.")


__all__ = ["check_audio_inputs", "check_pixel_values", "check_placeholders_have_media", "check_sequence_length"]
