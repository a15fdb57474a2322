"""MultimodalGPT: GPT-2 with pluggable Transformers vision and audio towers and a fusion module.

Top to bottom: the base model (towers + fusion + GPT-2), the model with the LM head. The blocks are in
`fusion_multimodal_gpt.py`, how media become tokens (towers, merge, fusion) in `encoders_multimodal_gpt.py`, the
`PreTrainedModel` base in `pretrained_multimodal_gpt.py`, the outputs and the cache in `outputs_multimodal_gpt.py` and
`cache_multimodal_gpt.py`. This is a "Hub file": it imports only torch,
transformers, huggingface_hub, the standard library and its sibling Hub files (see DESIGN.md).
"""

import os
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import find_packed_sequence_indices
from transformers.models.gpt2.modeling_gpt2 import GPT2Model
from transformers.utils import is_torchdynamo_compiling
from transformers.utils.generic import can_return_tuple

from .cache_multimodal_gpt import MultimodalGPTCache
from .checks_multimodal_gpt import check_placeholders_have_media, check_sequence_length, check_text_inputs
from .configuration_multimodal_gpt import MultimodalGPTConfig, add_multimodal_tokens, load_text_tokenizer
from .encoders_multimodal_gpt import MODALITY_TOKENS, MultimodalGPTMediaMixin
from .fusion_multimodal_gpt import AudioFrameReducer, CrossAttentionKeyValues, MultimodalGPT2Block, VisionTokenMerger
from .generation_multimodal_gpt import (
    AUDIO_INPUTS,
    DEFAULT_MAX_NEW_TOKENS,
    VISION_INPUTS,
    MultimodalGPTGenerationMixin,
)
from .objectives_multimodal_gpt import MultimodalGPTObjectivesMixin, enable_causal_attention
from .outputs_multimodal_gpt import (
    MultimodalGPTCausalLMOutputWithPast,
    MultimodalGPTMediaOutput,
    MultimodalGPTModelOutputWithPast,
)
from .pretrained_multimodal_gpt import MultimodalGPTPreTrainedModel
from .towers_multimodal_gpt import build_tower, is_trainable, load_tower


class MultimodalGPTModel(MultimodalGPTMediaMixin, MultimodalGPTPreTrainedModel):
    """The towers, the fusion and GPT-2 (without its LM head). The media methods (`encode_images`, `encode_audio`,
    `get_image_features`, `get_audio_features`) come from [`MultimodalGPTMediaMixin`]."""

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
                    cross_attention_feed_forward_mult=config.cross_attention_feed_forward_mult,
                )
                for index in range(text_config.n_layer)
            )
        self.vision_tower = build_tower(config.vision_config) if config.vision_config is not None else None
        self.audio_tower = build_tower(config.audio_config) if config.audio_config is not None else None
        self.vision_token_merger = (
            VisionTokenMerger(factor=config.vision_token_merge, mode=config.vision_token_merge_mode)
            if config.vision_config is not None
            else None
        )
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

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def train(self, mode: bool = True) -> "MultimodalGPTModel":
        """`nn.Module.train`, except that a frozen tower (no trainable parameter) stays in evaluation mode, as
        BLIP-2 keeps its frozen ViT: its batch norms (a ResNet's) normalise with the running statistics it came with
        and leave them as they are, and its dropout is off, so a frozen tower gives an image the same features
        whatever batch it is in (what the media-feature cache assumes)."""
        super().train(mode)
        for tower in (self.vision_tower, self.audio_tower):
            if mode and tower is not None and not is_trainable(tower):
                tower.eval()
        return self

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
        image_features: torch.FloatTensor | None = None,
        audio_features: torch.FloatTensor | None = None,
        audio_features_mask: torch.Tensor | None = None,
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
        image_features (`torch.FloatTensor` of shape `(num_images, num_features, width)`, *optional*):
            Instead of `pixel_values`: the images' features as `encode_images` computed them with this (frozen)
            vision tower, e.g. from a media-feature cache. The tower does not run.
        audio_features (`torch.FloatTensor` of shape `(num_clips, num_features, width)`, *optional*):
            Instead of the audio inputs: the clips' features as `encode_audio` computed them with this (frozen) audio
            tower, with `audio_features_mask` `(num_clips, num_features)`. The tower does not run.
        position_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            With no `attention_mask` and no cache, positions that restart at 0 mark rows that pack several samples
            (`TaskCollator(packing=True)`): each token attends only to its own sample, text and media.
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
        segment_ids = self._packed_samples(attention_mask, position_ids, cache)
        if segment_ids is not None:
            use_cache = False  # a packed row is no prompt to continue
        use_cache = use_cache if use_cache is not None else self.config.text_config.use_cache
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config.text_config)
        if self.config.cross_attention_layers and cache is not None and not isinstance(cache, MultimodalGPTCache):
            cache = MultimodalGPTCache(cache)  # the media keys and values will live in the cache too

        placeholder_masks = self.get_placeholder_masks(input_ids, inputs_embeds)
        media = media_inputs(
            pixel_values=pixel_values,
            image_features=image_features,
            input_features=input_features,
            input_features_mask=input_features_mask,
            input_values=input_values,
            input_values_mask=input_values_mask,
            audio_features=audio_features,
            audio_features_mask=audio_features_mask,
        )
        media = self._media_to_encode(placeholder_masks, media, continuing=past_length > 0)
        if past_length == 0:
            given = {name: name in media or self._cache_has_media(cache) for name in placeholder_masks}
            check_placeholders_have_media(placeholder_masks, given)

        training = self.training and torch.is_grad_enabled()
        sharded = training and self._parameters_are_sharded()
        inputs_embeds, cross_media, encoded = self._fuse_media(
            inputs_embeds, placeholder_masks, media, sharded, segment_ids, causal_towers
        )
        if training and not sharded:
            present = {modality for modality, name in MODALITY_TOKENS.items() if name in media}
            inputs_embeds = inputs_embeds + self._absent_modality_anchor(present)

        media_key_values = media_mask = None
        if self.config.cross_attention_layers:
            media_key_values, media_mask = self._cross_attention_media(
                cross_media, cache, inputs_embeds, sharded, segment_ids
            )
        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            # GPT-2 hands these to every block positionally (reentrant gradient checkpointing sees them as inputs);
            # a 4-D mask reaches the blocks as it is
            encoder_hidden_states=media_key_values,
            encoder_attention_mask=media_mask,
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

    @staticmethod
    def _packed_samples(
        attention_mask: torch.Tensor | None, position_ids: torch.Tensor | None, cache: Cache | None
    ) -> torch.Tensor | None:
        """(B, T): which sample of its row each position belongs to, for rows that pack several samples (positions
        restart at 0, no attention mask, no cache: Transformers' packed format, which GPT-2's causal mask follows
        too); `None` for ordinary rows."""
        if attention_mask is not None or position_ids is None or cache is not None or position_ids.ndim != 2:
            return None
        return find_packed_sequence_indices(position_ids)


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

    def get_image_features(self, pixel_values: torch.Tensor | None = None, **kwargs: Any) -> MultimodalGPTMediaOutput:
        """See [`MultimodalGPTModel.get_image_features`]."""
        return self.model.get_image_features(pixel_values, **kwargs)

    def get_audio_features(self, **audio_inputs: Any) -> MultimodalGPTMediaOutput:
        """See [`MultimodalGPTModel.get_audio_features`]."""
        return self.model.get_audio_features(**audio_inputs)

    # ----- freezing ---------------------------------------------------------------------------------------------

    def freeze_towers(self, modality: str | None = None) -> None:
        """Freeze the vision and/or audio tower (`modality` "vision", "audio" or None for both). A frozen tower
        runs without building an autograd graph, in evaluation mode (see `MultimodalGPTModel.train`)."""
        for name in ("vision", "audio") if modality is None else (modality,):
            tower = getattr(self.model, f"{name}_tower")
            if tower is not None:
                tower.requires_grad_(False)
        self.model.train(self.model.training)

    def freeze_feature_encoder(self) -> None:
        """Freeze the audio tower's convolutional front end, as Transformers' speech examples do by default when they
        finetune a pretrained encoder (`--freeze_feature_encoder`): wav2vec2-family towers (wav2vec2, HuBERT, WavLM,
        Data2VecAudio, ...) through their feature encoder's `_freeze_parameters()` (what
        `Wav2Vec2Model.freeze_feature_encoder()` calls), Whisper-style encoders by freezing `conv1` and `conv2`. The
        front end then runs without building an autograd graph; the transformer layers train."""
        tower = self.model.audio_tower
        if tower is None:
            raise ValueError("freeze_feature_encoder() freezes the audio tower's front end, but this model has none.")
        front_end = getattr(tower, "feature_extractor", None)
        if isinstance(front_end, nn.Module) and hasattr(front_end, "_freeze_parameters"):
            # What `Wav2Vec2Model.freeze_feature_encoder()` does (HuBERT's base model lacks that method); it also
            # clears the flag that makes the encoder build a graph for its input.
            front_end._freeze_parameters()
        elif all(isinstance(getattr(tower, name, None), nn.Conv1d) for name in ("conv1", "conv2")):
            tower.conv1.requires_grad_(False)
            tower.conv2.requires_grad_(False)
        else:
            raise ValueError(
                f"The audio tower ({tower.config.model_type}) has no convolutional feature encoder this method knows "
                "(a wav2vec2-family `feature_extractor`, or Whisper's `conv1` / `conv2`): freeze its parameters "
                "directly, or use freeze_towers('audio')."
            )

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
        image_features: torch.FloatTensor | None = None,
        audio_features: torch.FloatTensor | None = None,
        audio_features_mask: torch.Tensor | None = None,
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
        image_features, audio_features, audio_features_mask:
            Precomputed media features instead of raw media (see [`MultimodalGPTModel.forward`]).
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
            image_features=image_features,
            audio_features=audio_features,
            audio_features_mask=audio_features_mask,
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


def media_inputs(**inputs: torch.Tensor | None) -> dict[str, dict[str, torch.Tensor | None]]:
    """The media of a `forward` call by placeholder name: {"image": {...}, "audio": {...}}, the keyword arguments of
    `get_image_features` / `get_audio_features`, for the media given (raw, or as precomputed features)."""
    media = {}
    for name, keys in (("image", VISION_INPUTS), ("audio", AUDIO_INPUTS)):
        if any(inputs[key] is not None for key in keys if not key.endswith("_mask")):
            media[name] = {key: inputs[key] for key in keys}
    return media


__all__ = ["MultimodalGPTForConditionalGeneration", "MultimodalGPTModel", "MultimodalGPTPreTrainedModel"]
