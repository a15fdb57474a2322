"""Generation for MultimodalGPT: media encoded once at prefill, and batch expansion (beam search,
`num_return_sequences`) that keeps each sample's media with it.

This is a "Hub file": it imports only torch, transformers and the standard library.
"""

from typing import Any

import torch
from transformers import GenerationMixin
from transformers.cache_utils import Cache

from .cache_multimodal_gpt import MultimodalGPTCache
from .configuration_multimodal_gpt import count_media_tokens

# Written into the generation_config of every model this package builds, so that a bare `generate()` and the pipelines
# do not fall back to transformers' 20 new tokens (with a warning); a training run writes its own `--max_new_tokens`
# and `--num_beams` (`multimodal_gpt.training.run`).
DEFAULT_MAX_NEW_TOKENS = 48

# The flat media inputs: one row per image or clip, in the order of their placeholders in the batch (LLaVA's layout).
VISION_INPUTS = ("pixel_values", "image_features")
AUDIO_INPUTS = (
    "input_features",
    "input_features_mask",
    "input_values",
    "input_values_mask",
    "audio_features",
    "audio_features_mask",
)
# Media inputs that transformers does not know to drop after the prefill (precomputed features).
FEATURE_INPUTS = ("image_features", "audio_features", "audio_features_mask")


class MultimodalGPTGenerationMixin(GenerationMixin):
    """`GenerationMixin` for a decoder-only model whose media inputs are flat (one row per medium, not per sample).

    Media inputs (`pixel_values`, `input_features`, `input_values` and their masks) reach the model only at
    prefill (transformers drops them afterwards): the spliced fusions need them only there, and the cross-attention
    fusion keeps the media's keys and values in its cache (`MultimodalGPTCache`), which every later step reads.
    """

    def _prepare_cache_for_generation(self, generation_config: Any, model_kwargs: dict[str, Any], *args: Any) -> Any:
        """Transformers' cache (dynamic or static), wrapped in a `MultimodalGPTCache` under cross-attention fusion, so
        that the cache object `generate` holds from the start is the one that carries the media."""
        prepared = super()._prepare_cache_for_generation(generation_config, model_kwargs, *args)
        cache = model_kwargs.get("cache")
        wrapped = isinstance(cache, MultimodalGPTCache)
        if self.config.cross_attention_layers and isinstance(cache, Cache) and not wrapped:
            model_kwargs["cache"] = MultimodalGPTCache(cache)
        return prepared

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        next_sequence_length: int | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Transformers' inputs, with the media at every prefill: an assistant model (assisted decoding) prefills
        the prompt in a call that transformers does not count as a first iteration, and would drop the media of a
        prompt full of placeholders. An empty cache means the prompt is being prefilled (without a cache,
        transformers keeps the media at every step)."""
        prefill = is_first_iteration or (cache is not None and cache.get_seq_length() == 0)
        if not prefill and cache is not None:  # transformers drops the raw media after the prefill, not these
            kwargs = {key: value for key, value in kwargs.items() if key not in FEATURE_INPUTS}
        return super().prepare_inputs_for_generation(
            input_ids,
            next_sequence_length=next_sequence_length,
            cache=cache,
            inputs_embeds=inputs_embeds,
            is_first_iteration=prefill,
            **kwargs,
        )

    def _expand_inputs_for_generation(
        self,
        expand_size: int = 1,
        is_encoder_decoder: bool = False,
        input_ids: torch.LongTensor | None = None,
        **model_kwargs: Any,
    ) -> tuple[torch.LongTensor, dict[str, Any]]:
        """Beam search and `num_return_sequences` repeat every sample; flat media rows (one per medium, not per
        sample) must be repeated with the sample that owns them, not one by one."""
        if expand_size == 1:
            return super()._expand_inputs_for_generation(expand_size, is_encoder_decoder, input_ids, **model_kwargs)
        media = {
            key: model_kwargs.pop(key) for key in VISION_INPUTS + AUDIO_INPUTS if model_kwargs.get(key) is not None
        }
        inputs_embeds = model_kwargs.get("inputs_embeds")
        text = input_ids if input_ids is not None and input_ids.shape[1] > 0 else None
        placeholder_masks = self.model.get_placeholder_masks(text, inputs_embeds) if media else {}
        batch_size = next(iter(placeholder_masks.values())).shape[0] if media else 0
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size, is_encoder_decoder, input_ids, **model_kwargs
        )
        for keys, modality in ((VISION_INPUTS, "vision"), (AUDIO_INPUTS, "audio")):
            given = {key: value for key, value in media.items() if key in keys}
            if given:
                owners = self._media_owners(placeholder_masks, modality, given)
                order = [item for row in range(batch_size) for _ in range(expand_size) for item in owners[row]]
                index = torch.tensor(order, dtype=torch.long, device=next(iter(given.values())).device)
                model_kwargs.update({key: value.index_select(0, index) for key, value in given.items()})
        return input_ids, model_kwargs

    def _media_owners(
        self, placeholder_masks: dict[str, torch.Tensor], modality: str, media: dict[str, torch.Tensor]
    ) -> list[list[int]]:
        """For each batch row, the indices of the media rows that its placeholders stand for."""
        config = self.config
        spec = config.media_token_spec()
        if modality == "vision" and "image_features" in media:
            features = media["image_features"]
            tokens = [count_media_tokens(spec["image"], features.shape[1])] * len(features)
            placeholder_mask = placeholder_masks["image"]
        elif modality == "vision":
            pixel_values = media["pixel_values"]
            tokens = [config.num_image_tokens(*pixel_values.shape[-2:])] * len(pixel_values)
            placeholder_mask = placeholder_masks["image"]
        elif "audio_features" in media:
            lengths = media["audio_features_mask"].sum(-1).tolist()
            tokens = [count_media_tokens(spec["audio"], int(length)) for length in lengths]
            placeholder_mask = placeholder_masks["audio"]
        else:
            mask_key = "input_features_mask" if "input_features" in media else "input_values_mask"
            audio = media.get("input_features", media.get("input_values"))
            mask = media.get(mask_key)
            lengths = mask.sum(-1).tolist() if mask is not None else [audio.shape[-1]] * len(audio)
            tokens = [config.num_audio_tokens(int(length)) for length in lengths]
            placeholder_mask = placeholder_masks["audio"]
        placeholder_rows = placeholder_mask.nonzero()[:, 0].tolist()
        owners: list[list[int]] = [[] for _ in range(len(placeholder_mask))]
        start = 0
        for item, count in enumerate(tokens):
            if start >= len(placeholder_rows):
                raise ValueError(f"There are more {modality} inputs than placeholders in input_ids.")
            owners[placeholder_rows[start]].append(item)
            start += count
        return owners


__all__ = ["DEFAULT_MAX_NEW_TOKENS", "MultimodalGPTGenerationMixin"]
