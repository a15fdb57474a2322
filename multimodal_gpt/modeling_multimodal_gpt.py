"""MultimodalGPT: GPT-2 with pluggable Transformers vision and audio towers and a fusion module.

Top to bottom: the base model (towers + fusion + GPT-2), the model with the LM head. The blocks are in
`fusion_multimodal_gpt.py`, the `PreTrainedModel` base in `pretrained_multimodal_gpt.py`, the outputs and the cache in
`outputs_multimodal_gpt.py` and `cache_multimodal_gpt.py`. This is a "Hub file": it imports only torch,
transformers, huggingface_hub, the standard library and its sibling Hub files (see DESIGN.md).
"""

import os
from typing import Any

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel
from transformers import AutoModelForCausalLM
from transformers.cache_utils import Cache, DynamicCache
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
from transformers.models.gpt2.modeling_gpt2 import GPT2Model
from transformers.utils import is_torchdynamo_compiling
from transformers.utils.generic import can_return_tuple

from .cache_multimodal_gpt import MultimodalGPTCache
from .checks_multimodal_gpt import (
    check_audio_inputs,
    check_media_count,
    check_pixel_values,
    check_placeholders_have_media,
    check_sequence_length,
    check_text_inputs,
)
from .configuration_multimodal_gpt import (
    MultimodalGPTConfig,
    _pair,
    add_multimodal_tokens,
    load_text_tokenizer,
)
from .fusion_multimodal_gpt import (
    AudioFrameReducer,
    CrossAttentionKeyValues,
    MultimodalGPT2Block,
    MultimodalProjector,
    PerceiverResampler,
    media_per_sample,
    splice_media_tokens,
)
from .generation_multimodal_gpt import DEFAULT_MAX_NEW_TOKENS, MultimodalGPTGenerationMixin
from .objectives_multimodal_gpt import (
    CAUSAL_ATTENTION_KWARG,
    MultimodalGPTObjectivesMixin,
    enable_causal_attention,
)
from .outputs_multimodal_gpt import (
    MultimodalGPTCausalLMOutputWithPast,
    MultimodalGPTMediaOutput,
    MultimodalGPTModelOutputWithPast,
)
from .pretrained_multimodal_gpt import MultimodalGPTPreTrainedModel
from .towers_multimodal_gpt import build_tower, is_trainable, load_tower

MODALITY_TOKENS = {"vision": "image", "audio": "audio"}


class MultimodalGPTModel(MultimodalGPTPreTrainedModel):
    """The towers, the fusion and GPT-2 (without its LM head)."""

    def __init__(self, config: MultimodalGPTConfig):
        super().__init__(config)
        text_config = config.text_config
        self.language_model = GPT2Model(text_config)
        cross_attention_layers = config.cross_attention_layers
        if cross_attention_layers:
            self.language_model.h = nn.ModuleList(
                MultimodalGPT2Block(
                    text_config,
                    layer_idx=index,
                    cross_attention_index=cross_attention_layers.index(index)
                    if index in cross_attention_layers
                    else None,
                    cross_attention_heads=config.cross_attention_heads,
                )
                for index in range(text_config.n_layer)
            )
        self.vision_tower = build_tower(config.vision_config) if config.vision_config is not None else None
        self.audio_tower = build_tower(config.audio_config) if config.audio_config is not None else None
        self.audio_frame_reducer = (
            AudioFrameReducer(factor=config.audio_frame_reduction, mode=config.audio_frame_reduction_mode)
            if config.audio_config is not None
            else None
        )
        self.vision_fusion = self._build_fusion("vision") if config.vision_config is not None else None
        self.audio_fusion = self._build_fusion("audio") if config.audio_config is not None else None
        for modality in config.media_prediction_modalities:  # media prediction runs these towers causally
            enable_causal_attention(getattr(self, f"{modality}_tower"))
        self.cross_attention_key_values = (
            CrossAttentionKeyValues(
                dim=text_config.hidden_size,
                num_layers=len(cross_attention_layers),
                num_heads=config.cross_attention_heads,
            )
            if cross_attention_layers
            else None
        )
        self.post_init()

    def _build_fusion(self, modality: str) -> nn.Module:
        """The module that turns tower features into GPT-2-width media tokens for `modality`."""
        config = self.config
        in_features = config.modality_config(modality).hidden_size
        if modality == "audio":
            in_features = self.audio_frame_reducer.output_features(in_features)
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

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    # ----- media encoding ---------------------------------------------------------------------------------------

    @can_return_tuple
    def get_image_features(self, pixel_values: torch.Tensor, **kwargs: Any) -> MultimodalGPTMediaOutput:
        """Encode images (num_images, channels, height, width): the vision tower's outputs, with the fusion's image
        tokens (num_images, num_image_tokens, hidden_size) as `pooler_output` (the Transformers 5.x contract).
        `output_hidden_states` / `output_attentions` go to the tower."""
        check_pixel_values(pixel_values, self.vision_tower, self.config.vision_config)
        layer = self.config.vision_feature_layer
        kwargs["output_hidden_states"] = kwargs.get("output_hidden_states") or layer != -1
        with torch.set_grad_enabled(torch.is_grad_enabled() and is_trainable(self.vision_tower)):
            pixel_values = pixel_values.to(self.vision_tower.dtype)
            outputs = self.vision_tower(pixel_values=pixel_values, return_dict=True, **kwargs)
        features = outputs.last_hidden_state if layer == -1 else outputs.hidden_states[layer]
        patch_size = _pair(self.config.vision_config.patch_size)
        num_patches = (pixel_values.shape[-2] // patch_size[0]) * (pixel_values.shape[-1] // patch_size[1])
        features = features[:, -num_patches:]  # patch tokens only: class and register tokens come first
        if self.config.fusion["vision"] == "resampler":  # the config, not isinstance: PEFT may wrap the fusion
            tokens = self.vision_fusion(features, features.new_ones(features.shape[:2], dtype=torch.bool))
        else:
            tokens = self.vision_fusion(features)
        token_mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return MultimodalGPTMediaOutput(
            last_hidden_state=outputs.last_hidden_state,
            pooler_output=tokens,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            pooler_output_mask=token_mask,
        )

    @can_return_tuple
    def get_audio_features(
        self,
        input_features: torch.Tensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        input_values_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> MultimodalGPTMediaOutput:
        """Encode audio clips, either log-mel `input_features` (num_clips, num_mel_bins, frames) for Whisper-style
        towers or waveforms `input_values` (num_clips, samples) for wav2vec2-style towers, each with its mask of
        valid positions. Returns the tower's outputs with the fusion's audio tokens (num_clips, max_tokens,
        hidden_size) as `pooler_output` and their validity as `pooler_output_mask`."""
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
        if self.config.fusion["audio"] == "resampler":
            tokens = self.audio_fusion(frames, frame_mask)
            frame_mask = frame_mask.new_ones(tokens.shape[:2])
        else:
            tokens = self.audio_fusion(frames)
        return MultimodalGPTMediaOutput(
            last_hidden_state=outputs.last_hidden_state,
            pooler_output=tokens,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            pooler_output_mask=frame_mask,
        )

    # ----- placeholders -----------------------------------------------------------------------------------------

    def get_placeholder_masks(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Where the `<image>` / `<audio>` placeholders are, {"image" / "audio": (batch_size, sequence_length) bool},
        for the modalities this model has: from `input_ids`, or, without them, from `inputs_embeds` (the
        placeholder's embedding), as LLaVA does, so that `inputs_embeds` work with media too."""
        masks = {}
        for modality, name in MODALITY_TOKENS.items():
            token_id = getattr(self.config, f"{name}_token_id")
            if self.config.modality_config(modality) is None or token_id is None:
                continue
            if input_ids is not None:
                masks[name] = input_ids == token_id
            else:
                token = torch.full((), token_id, dtype=torch.long, device=inputs_embeds.device)
                masks[name] = (inputs_embeds == self.get_input_embeddings()(token)).all(-1)
        return masks

    def _media_to_encode(
        self, placeholder_masks: dict[str, torch.Tensor], media: dict[str, dict[str, torch.Tensor]], continuing: bool
    ) -> dict[str, dict[str, torch.Tensor]]:
        """The media of this call that still have to reach GPT-2. When a generation continues from a cache, the
        media given again (as Transformers' `generate` does, and assistants) were consumed at prefill: their
        placeholders are in the cache, not among the new tokens. New media at a continuation are spliced in; with
        cross-attention they cannot come later, since the cached text attended to its sample's media only."""
        if not continuing:
            return media
        kept = {}
        for name, inputs in media.items():
            if not bool(placeholder_masks[name].any()):
                continue
            modality = "vision" if name == "image" else "audio"
            if self.config.fusion[modality] == "cross_attention":
                raise ValueError(
                    f"New <{name}> markers after the prefill: with cross-attention fusion every text token attends to "
                    "all the media of its sample, so all media must be given with the first call (the prompt)."
                )
            kept[name] = inputs
        return kept

    # ----- fusion -----------------------------------------------------------------------------------------------

    def _fuse_media(
        self,
        inputs_embeds: torch.Tensor,
        placeholder_masks: dict[str, torch.Tensor],
        media: dict[str, dict[str, torch.Tensor]],
        sharded: bool,
        causal_towers: tuple[str, ...] = (),
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]], dict[str, MultimodalGPTMediaOutput]]:
        """Encode the media of this call (the towers of `causal_towers` with a causal attention mask); splice the
        tokens of spliced fusions into `inputs_embeds`, and return the cross-attention media grouped by sample
        [(media (B, M, D), mask (B, M))] and the encoders' outputs. Sharded engines (FSDP, ZeRO-3) gather a module's
        parameters only while it runs, in call order, on every rank alike: a rank without images or audio encodes a
        blank medium where the real one would run."""
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
                cross_media.append(media_per_sample(placeholders, tokens, token_mask))
            else:
                check_media_count(name, placeholders.sum(), token_mask.sum(), cross_attention=False)
                inputs_embeds = splice_media_tokens(inputs_embeds, placeholders, tokens, token_mask)
        return inputs_embeds, cross_media, encoded

    def _cross_attention_media(
        self,
        cross_media: list[tuple[torch.Tensor, torch.Tensor]],
        cache: Cache | None,
        inputs_embeds: torch.Tensor,
        sharded: bool,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The media keys and values of the gated cross-attention layers (B, layers, 2, heads, M, head_dim) and
        their mask (B, M): projected once from this call's media and kept in the cache, or read from the cache."""
        if cross_media:
            media_embeds = torch.cat([embeds for embeds, _ in cross_media], dim=1)
            media_mask = torch.cat([mask for _, mask in cross_media], dim=1)
        elif isinstance(cache, MultimodalGPTCache) and cache.has_media:
            return cache.media_key_values, cache.media_mask
        elif sharded:
            # every rank runs the same modules: with no valid media they leave the text as it is
            media_embeds = inputs_embeds.new_zeros(inputs_embeds.shape[0], 1, inputs_embeds.shape[-1])
            media_mask = torch.zeros(media_embeds.shape[:2], dtype=torch.bool, device=media_embeds.device)
        else:
            return None, None
        media_key_values = self.cross_attention_key_values(media_embeds)
        if isinstance(cache, MultimodalGPTCache) and cross_media:
            cache.set_media(media_key_values, media_mask)
        return media_key_values, media_mask

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

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        input_features: torch.FloatTensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        input_values: torch.FloatTensor | None = None,
        input_values_mask: torch.Tensor | None = None,
        use_cache: bool | None = None,
        causal_towers: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> MultimodalGPTModelOutputWithPast:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
            Token ids, with `<image>` / `<audio>` placeholders expanded by the processor. Or `inputs_embeds`
            (batch_size, sequence_length, hidden_size): the placeholders are then found by their embedding.
        pixel_values (`torch.FloatTensor` of shape `(num_images, channels, height, width)`, *optional*):
            All images of the batch, in the order of their placeholders (row by row).
        input_features (`torch.FloatTensor` of shape `(num_clips, num_mel_bins, frames)`, *optional*):
            Log-mel features for Whisper-style audio towers, with `input_features_mask` `(num_clips, frames)`.
        input_values (`torch.FloatTensor` of shape `(num_clips, samples)`, *optional*):
            Waveforms for wav2vec2-style audio towers, with `input_values_mask` `(num_clips, samples)`.
        cache (`Cache`, *optional*):
            The cache of earlier calls. With cross-attention fusion it becomes a `MultimodalGPTCache`, which also
            holds the media keys and values: later calls need no media. Media given again when continuing from a
            cache (as `generate` does) are recognised as already consumed and not encoded twice.
        causal_towers (`tuple[str, ...]`, defaults to `()`):
            Modalities ("vision", "audio") whose tower runs with a causal attention mask, each patch or frame seeing
            only itself and earlier ones: what next-element prediction trains with (see `media_loss_weight`).

        Floating-point media of another dtype are cast to the tower's; `return_dict=False` gives a tuple.
        """
        compiling = is_torchdynamo_compiling()
        past_length = cache.get_seq_length() if cache is not None and not compiling else 0
        check_text_inputs(input_ids, inputs_embeds, attention_mask, None if compiling else past_length)
        sequence_length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        if not compiling:
            check_sequence_length(sequence_length, cache, self.config.text_config.n_positions)
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        use_cache = use_cache if use_cache is not None else self.config.text_config.use_cache
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config.text_config)
        if self.config.cross_attention_layers and cache is not None and not isinstance(cache, MultimodalGPTCache):
            cache = MultimodalGPTCache(cache)  # the media keys and values will live in the cache too

        placeholder_masks = self.get_placeholder_masks(input_ids, inputs_embeds)
        media = {}
        if pixel_values is not None:
            media["image"] = {"pixel_values": pixel_values}
        if input_features is not None or input_values is not None:
            media["audio"] = {
                "input_features": input_features,
                "input_features_mask": input_features_mask,
                "input_values": input_values,
                "input_values_mask": input_values_mask,
            }
        media = self._media_to_encode(placeholder_masks, media, continuing=past_length > 0)
        if past_length == 0:
            given = {name: name in media or self._cache_has_media(cache) for name in placeholder_masks}
            check_placeholders_have_media(placeholder_masks, given)

        training = self.training and torch.is_grad_enabled()
        sharded = training and self._parameters_are_sharded()
        inputs_embeds, cross_media, encoded = self._fuse_media(
            inputs_embeds, placeholder_masks, media, sharded, causal_towers
        )
        if training and not sharded:
            present = {modality for modality, name in MODALITY_TOKENS.items() if name in media}
            inputs_embeds = inputs_embeds + self._absent_modality_anchor(present)

        media_key_values = media_mask = None
        if self.config.cross_attention_layers:
            media_key_values, media_mask = self._cross_attention_media(cross_media, cache, inputs_embeds, sharded)
        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            # GPT-2 hands these to every block positionally (reentrant gradient checkpointing sees them as inputs);
            # a 4-D mask reaches the blocks as it is
            encoder_hidden_states=media_key_values,
            encoder_attention_mask=media_mask[:, None, None, :] if media_mask is not None else None,
            return_dict=True,
            **kwargs,
        )
        return MultimodalGPTModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=encoded.get("image"),
            audio_outputs=encoded.get("audio"),
        )

    @staticmethod
    def _cache_has_media(cache: Cache | None) -> bool:
        return isinstance(cache, MultimodalGPTCache) and cache.has_media


class MultimodalGPTForConditionalGeneration(
    MultimodalGPTObjectivesMixin, MultimodalGPTPreTrainedModel, MultimodalGPTGenerationMixin
):
    """MultimodalGPT with GPT-2's LM head (tied to the input embeddings): the model to train and generate with."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.wte.weight"}

    def __init__(self, config: MultimodalGPTConfig):
        super().__init__(config)
        self.model = MultimodalGPTModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.media_prediction_heads = self._build_media_prediction_heads()  # none unless media_loss_weight > 0
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.lm_head = new_embeddings

    @property
    def vision_tower(self) -> nn.Module | None:
        return self.model.vision_tower

    @property
    def audio_tower(self) -> nn.Module | None:
        return self.model.audio_tower

    @property
    def language_model(self) -> GPT2Model:
        return self.model.language_model

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs: Any) -> MultimodalGPTMediaOutput:
        """See [`MultimodalGPTModel.get_image_features`]."""
        return self.model.get_image_features(pixel_values, **kwargs)

    def get_audio_features(self, **audio_inputs: Any) -> MultimodalGPTMediaOutput:
        """See [`MultimodalGPTModel.get_audio_features`]."""
        return self.model.get_audio_features(**audio_inputs)

    # ----- freezing ---------------------------------------------------------------------------------------------

    def freeze_towers(self, modality: str | None = None) -> None:
        """Freeze the vision and/or audio tower (`modality` "vision", "audio" or None for both). A frozen tower
        runs without building an autograd graph."""
        for name in ("vision", "audio") if modality is None else (modality,):
            tower = getattr(self.model, f"{name}_tower")
            if tower is not None:
                tower.requires_grad_(False)

    def freeze_language_model(self) -> None:
        """Freeze GPT-2, embeddings and (tied) LM head included; gated cross-attention layers stay trainable."""
        self.model.language_model.requires_grad_(False)
        self.lm_head.requires_grad_(False)
        for block in self.model.language_model.h:
            if getattr(block, "gated_cross_attention", None) is not None:
                block.gated_cross_attention.requires_grad_(True)

    def freeze_all_but_fusion(self) -> None:
        """Train only the fusion (projectors, resamplers, gated cross-attention), LLaVA's first stage."""
        self.freeze_towers()
        self.freeze_language_model()

    # ----- forward ----------------------------------------------------------------------------------------------

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        input_features: torch.FloatTensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        input_values: torch.FloatTensor | None = None,
        input_values_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> MultimodalGPTCausalLMOutputWithPast:
        r"""
        Inputs as in [`MultimodalGPTModel.forward`], plus:

        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Targets, -100 where no loss is wanted (prompt, media, padding). Shifted inside, like GPT-2. With
            `config.media_loss_weight` above 0 for a modality, a media position labelled with its own placeholder id
            is a media target: the position before it predicts that patch or audio token (see
            `objectives_multimodal_gpt`), and it counts as one item of `num_items_in_batch` like a text token.
        logits_to_keep (`int` or `torch.Tensor`, defaults to 0):
            Compute logits only for the last `logits_to_keep` positions (0: all), as `generate()` asks.
        """
        media_targets = self._media_target_positions(input_ids, inputs_embeds, labels)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            pixel_values=pixel_values,
            input_features=input_features,
            input_features_mask=input_features_mask,
            input_values=input_values,
            input_values_mask=input_values_mask,
            use_cache=use_cache,
            causal_towers=self._causal_towers(media_targets),
            return_dict=True,
            **kwargs,
        )
        media = {"vision": pixel_values, "audio": input_features}
        loss, logits = self._loss(outputs, labels, logits_to_keep, media_targets, media, **kwargs)
        return MultimodalGPTCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=outputs.image_outputs,
            audio_outputs=outputs.audio_outputs,
        )

    # ----- building from pretrained parts -----------------------------------------------------------------------

    @classmethod
    def from_pretrained_parts(
        cls,
        text_model: str | os.PathLike,
        vision_model: str | os.PathLike | None = None,
        audio_model: str | os.PathLike | None = None,
        tokenizer: Any = None,
        **config_kwargs: Any,
    ) -> "MultimodalGPTForConditionalGeneration":
        """One model from separately pretrained checkpoints (Hub ids or local folders), like
        `VisionEncoderDecoderModel.from_encoder_decoder_pretrained`: a GPT-2, a vision model and/or an audio model.
        Their weights are carried over exactly; `<image>` / `<audio>` are added to GPT-2's vocabulary (the same ids
        as `MultimodalGPTProcessor.from_pretrained_parts` gives), and the LM head stays tied to the embeddings.
        `config_kwargs` go to [`MultimodalGPTConfig`] (e.g. `fusion="resampler"`).

        `tokenizer` (optional) replaces the tokenizer saved with `text_model`; either must cover every row of
        GPT-2's embedding matrix (a folder without tokenizer files is an error, never a shrunken vocabulary)."""
        tokenizer = load_text_tokenizer(text_model, tokenizer)
        add_multimodal_tokens(tokenizer)
        config = MultimodalGPTConfig.from_pretrained_parts(
            text_model, vision_model, audio_model, tokenizer=tokenizer, **config_kwargs
        )
        language_model = AutoModelForCausalLM.from_pretrained(text_model)
        language_model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        towers = {"vision": load_tower(vision_model), "audio": load_tower(audio_model)}
        model = cls(config)
        missing, unexpected = model.model.language_model.load_state_dict(
            language_model.transformer.state_dict(), strict=False
        )
        if unexpected or any("gated_cross_attention" not in key for key in missing):
            raise RuntimeError(f"GPT-2 weights did not fit: missing {missing}, unexpected {unexpected}.")
        for modality, tower in towers.items():
            if tower is not None:
                getattr(model.model, f"{modality}_tower").load_state_dict(tower.state_dict())
        model.tie_weights()
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
        return model


__all__ = ["MultimodalGPTForConditionalGeneration", "MultimodalGPTModel", "MultimodalGPTPreTrainedModel"]
