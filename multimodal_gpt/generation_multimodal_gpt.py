"""Generation for MultimodalGPT: media encoded once at prefill, and batch expansion (beam search,
`num_return_sequences`) that keeps each sample's media with it.

This is a "Hub file": it imports only torch, transformers and the standard library.
"""

from typing import Any

import torch
from transformers import GenerationMixin
from transformers.modeling_outputs import ModelOutput

# The flat media inputs: one row per image or clip, in the order of their placeholders in the batch (LLaVA's layout).
VISION_INPUTS = ("pixel_values",)
AUDIO_INPUTS = ("input_features", "input_features_mask", "input_values", "input_values_mask")


class MultimodalGPTGenerationMixin(GenerationMixin):
    """`GenerationMixin` for a decoder-only model whose media inputs are flat (one row per medium, not per sample).

    Media inputs (`pixel_values`, `input_features`, `input_values` and their masks) reach the model only at
    prefill (transformers drops them afterwards); the spliced fusions need them only there, and the cross-attention
    fusion returns the encoded media, which `_update_model_kwargs_for_generation` feeds back at every step.
    """

    def _update_model_kwargs_for_generation(
        self,
        outputs: ModelOutput,
        model_kwargs: dict[str, Any],
        is_encoder_decoder: bool = False,
        num_new_tokens: int = 1,
    ) -> dict[str, Any]:
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        if getattr(outputs, "media_embeds", None) is not None:
            # Cross-attention media were encoded at prefill: every later step reuses them, the towers run once.
            model_kwargs["media_embeds"] = outputs.media_embeds
            model_kwargs["media_mask"] = outputs.media_mask
        return model_kwargs

    def _expand_inputs_for_generation(
        self,
        expand_size: int = 1,
        is_encoder_decoder: bool = False,
        input_ids: torch.LongTensor | None = None,
        **model_kwargs: Any,
    ) -> tuple[torch.LongTensor, dict[str, Any]]:
        """Beam search and `num_return_sequences` repeat every sample; flat media rows (one per medium, not per
        sample) must be repeated with the sample that owns them, not one by one."""
        if expand_size == 1 or input_ids is None:
            return super()._expand_inputs_for_generation(expand_size, is_encoder_decoder, input_ids, **model_kwargs)
        media = {
            key: model_kwargs.pop(key) for key in VISION_INPUTS + AUDIO_INPUTS if model_kwargs.get(key) is not None
        }
        input_ids_before = input_ids
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size, is_encoder_decoder, input_ids, **model_kwargs
        )
        for keys, modality in ((VISION_INPUTS, "vision"), (AUDIO_INPUTS, "audio")):
            given = {key: value for key, value in media.items() if key in keys}
            if given:
                owners = self._media_owners(input_ids_before, modality, given)
                order = [
                    item for row in range(len(input_ids_before)) for _ in range(expand_size) for item in owners[row]
                ]
                index = torch.tensor(order, dtype=torch.long, device=next(iter(given.values())).device)
                model_kwargs.update({key: value.index_select(0, index) for key, value in given.items()})
        return input_ids, model_kwargs

    def _media_owners(self, input_ids: torch.Tensor, modality: str, media: dict[str, torch.Tensor]) -> list[list[int]]:
        """For each batch row, the indices of the media rows that its placeholders stand for."""
        config = self.config
        if modality == "vision":
            pixel_values = media["pixel_values"]
            tokens = [config.num_image_tokens(*pixel_values.shape[-2:])] * len(pixel_values)
            token_id = config.image_token_id
        else:
            mask_key = "input_features_mask" if "input_features" in media else "input_values_mask"
            audio = media.get("input_features", media.get("input_values"))
            mask = media.get(mask_key)
            lengths = mask.sum(-1).tolist() if mask is not None else [audio.shape[-1]] * len(audio)
            tokens = [config.num_audio_tokens(int(length)) for length in lengths]
            token_id = config.audio_token_id
        placeholder_rows = (input_ids == token_id).nonzero()[:, 0].tolist()
        owners: list[list[int]] = [[] for _ in range(len(input_ids))]
        start = 0
        for item, count in enumerate(tokens):
            if start >= len(placeholder_rows):
                raise ValueError(f"There are more {modality} inputs than placeholders in input_ids.")
            owners[placeholder_rows[start]].append(item)
            start += count
        return owners


__all__ = ["MultimodalGPTGenerationMixin"]
