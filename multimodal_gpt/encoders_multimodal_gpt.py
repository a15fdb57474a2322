"""How MultimodalGPT turns media into what GPT-2 reads: the towers, the patch merge and frame reduction, and the
fusion modules, from raw media or from features computed earlier (a media-feature cache).

[`MultimodalGPTMediaMixin`] holds these methods of `MultimodalGPTModel` (split from `modeling_multimodal_gpt.py` to
keep that file readable). Each medium goes through two stages:

1. the *feature* stage (`encode_images`, `encode_audio`): the tower's output at `vision_feature_layer` /
   `audio_feature_layer` (patch tokens only), then the parameter-free `vision_token_merge` / `audio_frame_reduction`:
   the fusion's input, which a frozen tower computes the same way every epoch, so it can be cached and given back as
   `image_features=` / `audio_features=`;
2. the *fusion* stage: projector, resampler, or the cross-attention media projection.

This is a "Hub file": it imports only torch, transformers and its sibling Hub files (see DESIGN.md).
"""

from typing import Any

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel
from transformers.cache_utils import Cache
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
from transformers.utils.generic import can_return_tuple

from .cache_multimodal_gpt import MultimodalGPTCache
from .checks_multimodal_gpt import check_audio_inputs, check_media_count, check_media_features, check_pixel_values
from .configuration_multimodal_gpt import _pair, tower_feature_width
from .fusion_multimodal_gpt import MultimodalProjector, PerceiverResampler, media_per_sample, splice_media_tokens
from .objectives_multimodal_gpt import CAUSAL_ATTENTION_KWARG
from .outputs_multimodal_gpt import MultimodalGPTMediaOutput
from .towers_multimodal_gpt import is_trainable

MODALITY_TOKENS = {"vision": "image", "audio": "audio"}


class MultimodalGPTMediaMixin:
    """The media methods of `MultimodalGPTModel` (see the module docstring). The model provides `config`,
    `vision_tower` / `audio_tower`, `vision_token_merger` / `audio_frame_reducer`, `vision_fusion` / `audio_fusion`,
    `cross_attention_key_values` and `language_model`."""

    def fusion_input_width(self, modality: str) -> int:
        """The width of the features the fusion of `modality` takes: the tower's hidden size, times the patches or
        frames that `"stack"` merging concatenates."""
        width = tower_feature_width(self.config.modality_config(modality))
        merger = self.vision_token_merger if modality == "vision" else self.audio_frame_reducer
        return merger.output_features(width)

    def _build_fusion(self, modality: str) -> nn.Module:
        """The module that turns the fusion's input features into GPT-2-width media tokens for `modality`."""
        config = self.config
        in_features = self.fusion_input_width(modality)
        fusion = config.fusion[modality]
        hidden_size = config.text_config.hidden_size
        if fusion == "resampler":
            return PerceiverResampler(
                in_features=in_features,
                dim=hidden_size,
                depth=config.resampler_depth,
                num_heads=config.resampler_num_heads,
                num_queries=config.resampler_num_queries,
            )
        kind = "linear" if fusion == "cross_attention" else fusion
        return MultimodalProjector(
            in_features=in_features, out_features=hidden_size, kind=kind, hidden_act=config.projector_hidden_act
        )

    # ----- 1. the feature stage: towers, patch merge, frame reduction -----------------------------------------

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The features the vision fusion takes, (num_images, num_features, width), for images (num_images,
        channels, height, width): what `image_features=` expects. A frozen tower gives the same features every time,
        so they can be computed once and cached (`multimodal_gpt.data.feature_cache`)."""
        return self._image_tower_features(pixel_values)[0]

    def encode_audio(
        self,
        input_features: torch.Tensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        input_values_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The features the audio fusion takes, (num_clips, max_features, width), and their validity (num_clips,
        max_features), for clips given as the tower takes them: what `audio_features=` and `audio_features_mask=`
        expect."""
        audio_inputs = (input_features, input_features_mask, input_values, input_values_mask)
        features, mask, _ = self._audio_tower_features(*audio_inputs)
        return features, mask

    def _image_tower_features(self, pixel_values: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        check_pixel_values(pixel_values, self.vision_tower, self.config.vision_config)
        layer = self.config.vision_feature_layer
        kwargs["output_hidden_states"] = kwargs.get("output_hidden_states") or layer != -1
        with torch.set_grad_enabled(torch.is_grad_enabled() and is_trainable(self.vision_tower)):
            pixel_values = pixel_values.to(self.vision_tower.dtype)
            outputs = self.vision_tower(pixel_values=pixel_values, return_dict=True, **kwargs)
        features = outputs.last_hidden_state if layer == -1 else outputs.hidden_states[layer]
        if features.ndim == 4:  # a convolutional tower's feature map (images, channels, rows, columns)
            grid = (features.shape[-2], features.shape[-1])
            features = features.flatten(2).transpose(1, 2)  # one feature per position, row by row
        else:
            patch_size = _pair(self.config.vision_config.patch_size)
            grid = (pixel_values.shape[-2] // patch_size[0], pixel_values.shape[-1] // patch_size[1])
            features = features[:, -grid[0] * grid[1] :]  # patch tokens only: class and register tokens come first
        return self.vision_token_merger(features, grid), outputs

    def _audio_tower_features(
        self,
        input_features: torch.Tensor | None,
        input_features_mask: torch.Tensor | None,
        input_values: torch.Tensor | None,
        input_values_mask: torch.Tensor | None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        audio_inputs = (input_features, input_features_mask, input_values, input_values_mask)
        audio, audio_mask = check_audio_inputs(self.audio_tower, self.config.audio_config, *audio_inputs)
        layer = self.config.audio_feature_layer
        kwargs["output_hidden_states"] = kwargs.get("output_hidden_states") or layer != -1
        tower_kwargs = {self.audio_tower.main_input_name: audio.to(self.audio_tower.dtype), **kwargs}
        if input_values is not None and getattr(self.config.audio_config, "feat_extract_norm", "layer") == "layer":
            tower_kwargs["attention_mask"] = audio_mask  # wav2vec2 checkpoints with group norm take no mask
        with torch.set_grad_enabled(torch.is_grad_enabled() and is_trainable(self.audio_tower)):
            outputs = self.audio_tower(**tower_kwargs, return_dict=True)
        frames = outputs.last_hidden_state if layer == -1 else outputs.hidden_states[layer]
        lengths = self.config.audio_encoder_output_length(audio_mask.sum(-1))  # a tensor: no host sync, traceable
        frame_mask = torch.arange(frames.shape[1], device=frames.device)[None, :] < lengths.to(frames.device)[:, None]
        frames, frame_mask = self.audio_frame_reducer(frames, frame_mask)
        return frames, frame_mask, outputs

    # ----- 2. the fusion stage ----------------------------------------------------------------------------------

    @can_return_tuple
    def get_image_features(
        self, pixel_values: torch.Tensor | None = None, image_features: torch.Tensor | None = None, **kwargs: Any
    ) -> MultimodalGPTMediaOutput:
        """Encode images (num_images, channels, height, width): the vision tower's outputs, with the fusion's image
        tokens (num_images, num_image_tokens, hidden_size) as `pooler_output` (the Transformers 5.x contract).
        `output_hidden_states` / `output_attentions` go to the tower. Or fuse `image_features` computed earlier by
        `encode_images` (the tower does not run: its outputs are `None`)."""
        outputs = None
        if image_features is not None:
            check_media_features("image", image_features, None, self.fusion_input_width("vision"), self.vision_tower)
            features = image_features.to(self.vision_tower.dtype)
        else:
            features, outputs = self._image_tower_features(pixel_values, **kwargs)
        if self.config.fusion["vision"] == "resampler":  # the config, not isinstance: PEFT may wrap the fusion
            tokens = self.vision_fusion(features, features.new_ones(features.shape[:2], dtype=torch.bool))
        else:
            tokens = self.vision_fusion(features)
        token_mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return MultimodalGPTMediaOutput(
            last_hidden_state=outputs.last_hidden_state if outputs is not None else None,
            pooler_output=tokens,
            hidden_states=outputs.hidden_states if outputs is not None else None,
            attentions=getattr(outputs, "attentions", None),  # convolutional towers have none
            pooler_output_mask=token_mask,
        )

    @can_return_tuple
    def get_audio_features(
        self,
        input_features: torch.Tensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        input_values_mask: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        audio_features_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> MultimodalGPTMediaOutput:
        """Encode audio clips, either log-mel `input_features` (num_clips, num_mel_bins, frames) for Whisper-style
        towers or waveforms `input_values` (num_clips, samples) for wav2vec2-style towers, each with its mask of
        valid positions. Returns the tower's outputs with the fusion's audio tokens (num_clips, max_tokens,
        hidden_size) as `pooler_output` and their validity as `pooler_output_mask`. Or fuse `audio_features` and
        `audio_features_mask` computed earlier by `encode_audio` (the tower does not run: its outputs are `None`)."""
        outputs = None
        if audio_features is not None:
            width = self.fusion_input_width("audio")
            check_media_features("audio", audio_features, audio_features_mask, width, self.audio_tower)
            frames, frame_mask = audio_features.to(self.audio_tower.dtype), audio_features_mask.bool()
        else:
            audio_inputs = (input_features, input_features_mask, input_values, input_values_mask)
            frames, frame_mask, outputs = self._audio_tower_features(*audio_inputs, **kwargs)
        if self.config.fusion["audio"] == "resampler":
            tokens = self.audio_fusion(frames, frame_mask)
            frame_mask = frame_mask.new_ones(tokens.shape[:2])
        else:
            tokens = self.audio_fusion(frames)
        return MultimodalGPTMediaOutput(
            last_hidden_state=outputs.last_hidden_state if outputs is not None else None,
            pooler_output=tokens,
            hidden_states=outputs.hidden_states if outputs is not None else None,
            attentions=outputs.attentions if outputs is not None else None,
            pooler_output_mask=frame_mask,
        )

    def _fuse_media(
        self,
        inputs_embeds: torch.Tensor,
        placeholder_masks: dict[str, torch.Tensor],
        media: dict[str, dict[str, torch.Tensor]],
        sharded: bool,
        segment_ids: torch.Tensor | None = None,
        causal_towers: tuple[str, ...] = (),
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, ...]], dict[str, MultimodalGPTMediaOutput]]:
        """Encode the media of this call (the towers of `causal_towers` with a causal attention mask); splice the
        tokens of spliced fusions into `inputs_embeds`, and return the cross-attention media grouped by sample
        [(media (B, M, D), mask (B, M), sample of each medium (B, M) or `None`)] and the encoders' outputs.
        `segment_ids` (B, T): which packed sample each position belongs to, for rows that pack several samples.
        Sharded engines (FSDP, ZeRO-3) gather a module's parameters only while it runs, in call order, on every rank
        alike: a rank without images or audio encodes a blank medium where the real one would run."""
        encoded = {}
        cross_media = []
        for name in ("image", "audio"):  # a fixed order: sharded ranks must run the same modules in the same order
            modality = "vision" if name == "image" else "audio"
            if name not in media:
                if sharded and getattr(self, f"{modality}_tower") is not None:
                    blank = self._encode_blank_image if name == "image" else self._encode_blank_audio
                    inputs_embeds = inputs_embeds + blank(inputs_embeds).sum() * 0.0
                continue
            inputs = media[name]
            if modality in causal_towers:
                inputs = {**inputs, CAUSAL_ATTENTION_KWARG: True}
            features = self.get_image_features(**inputs) if name == "image" else self.get_audio_features(**inputs)
            encoded[name] = features
            tokens, token_mask = features.pooler_output, features.pooler_output_mask
            placeholders = placeholder_masks[name]
            if self.config.fusion[modality] == "cross_attention":
                check_media_count(name, placeholders.sum(), tokens.shape[0], cross_attention=True)
                cross_media.append(media_per_sample(placeholders, tokens, token_mask, segment_ids))
            else:
                check_media_count(name, placeholders.sum(), token_mask.sum(), cross_attention=False)
                inputs_embeds = splice_media_tokens(inputs_embeds, placeholders, tokens, token_mask)
        return inputs_embeds, cross_media, encoded

    def _cross_attention_media(
        self,
        cross_media: list[tuple[torch.Tensor, ...]],
        cache: Cache | None,
        inputs_embeds: torch.Tensor,
        sharded: bool,
        segment_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The media keys and values of the gated cross-attention layers (B, layers, 2, heads, M, head_dim) and
        which media each text token attends to, (B, 1, 1, M), or (B, 1, T, M) for packed rows (a token sees only
        the media of its own sample): projected once from this call's media and kept in the cache, or read from the
        cache."""
        if cross_media:
            media_embeds = torch.cat([grouped[0] for grouped in cross_media], dim=1)
            media_mask = torch.cat([grouped[1] for grouped in cross_media], dim=1)
        elif isinstance(cache, MultimodalGPTCache) and cache.has_media:
            return cache.media_key_values, cache.media_mask[:, None, None, :]
        elif sharded:
            # every rank runs the same modules: with no valid media they leave the text as it is
            media_embeds = inputs_embeds.new_zeros(inputs_embeds.shape[0], 1, inputs_embeds.shape[-1])
            media_mask = torch.zeros(media_embeds.shape[:2], dtype=torch.bool, device=media_embeds.device)
        else:
            return None, None
        media_key_values = self.cross_attention_key_values(media_embeds)
        if isinstance(cache, MultimodalGPTCache) and cross_media:
            cache.set_media(media_key_values, media_mask)
        if segment_ids is None or not cross_media:
            return media_key_values, media_mask[:, None, None, :]
        media_segments = torch.cat([grouped[2] for grouped in cross_media], dim=1)  # (B, M)
        same_sample = segment_ids[:, None, :, None] == media_segments[:, None, None, :]  # (B, 1, T, M)
        return media_key_values, same_sample & media_mask[:, None, None, :]

    # ----- every parameter in every step (DDP, FSDP, ZeRO-3) ---------------------------------------------------

    def _absent_modality_anchor(self, present: set[str]) -> torch.Tensor | float:
        """0 times the trainable parameters of modalities absent from this batch: keeps every parameter in the
        graph, so DDP without `find_unused_parameters` does not hang on a text-only batch (sharded engines encode a
        blank medium instead: see `forward`)."""
        modules = [
            module
            for modality in ("vision", "audio")
            if modality not in present
            for module in (getattr(self, f"{modality}_tower"), getattr(self, f"{modality}_fusion"))
            if module is not None
        ]
        if self.config.cross_attention_layers and not present & {
            m for m, f in self.config.fusion.items() if f == "cross_attention"
        }:
            modules += [block.gated_cross_attention for block in self.language_model.h if block.gated_cross_attention]
            modules.append(self.cross_attention_key_values)
        parameters = [p for module in modules for p in module.parameters() if p.requires_grad]
        return sum(p.sum() for p in parameters) * 0.0 if parameters else 0.0

    def _parameters_are_sharded(self) -> bool:
        """FSDP (1 or 2) or DeepSpeed ZeRO-3: parameters are gathered only while their own module runs, so summing
        them from outside (`_absent_modality_anchor`) fails, and every rank must run the same modules in the same
        order for the collectives to match."""
        # ZeRO-3 marks the parameters it partitions with `ds_id`. `parameters()` does not gather them, whereas
        # reading `module.weight` in a forward all-gathers it (see `_encode_blank_image`).
        if is_deepspeed_zero3_enabled() or any(hasattr(p, "ds_id") for p in self.get_input_embeddings().parameters()):
            return True
        return any(isinstance(module, (FSDPModule, FullyShardedDataParallel)) for module in self.modules())

    def _encode_blank_image(self, like: torch.Tensor) -> torch.Tensor:
        """One black image through the vision tower and fusion (sharded engines, on a rank whose batch has none),
        with the dtype and device of `like`. Only modules run here, no parameter is read from outside: ZeRO-3
        all-gathers a parameter read in a forward (`embeddings.weight.device`), and that extra collective, on the
        ranks without images only, would not match the other ranks'."""
        vision_config = self.config.vision_config
        shape = (1, getattr(vision_config, "num_channels", 3), *_pair(vision_config.image_size))
        return self.get_image_features(like.new_zeros(shape)).pooler_output

    def _encode_blank_audio(self, like: torch.Tensor) -> torch.Tensor:
        """One silent clip through the audio tower and fusion (sharded engines, on a rank whose batch has none):
        the fixed window of a Whisper-style tower, or one second at 16 kHz for a waveform tower. As in
        `_encode_blank_image`, `like` gives the dtype and device."""
        if self.audio_tower.main_input_name == "input_features":
            audio_config = self.config.audio_config
            shape = (1, audio_config.num_mel_bins, 2 * audio_config.max_source_positions)
            return self.get_audio_features(input_features=like.new_zeros(shape)).pooler_output
        return self.get_audio_features(input_values=like.new_zeros(1, 16000)).pooler_output


__all__ = ["MODALITY_TOKENS", "MultimodalGPTMediaMixin"]
