"""MultimodalGPT: GPT-2 with pluggable Transformers vision and audio towers and a fusion module.

Top to bottom: output dataclasses, the GPT-2 block with gated cross-attention, the `PreTrainedModel` base, the base
model (towers + fusion + GPT-2), the model with the LM head. This is a "Hub file": it imports only torch,
transformers, huggingface_hub, the standard library and its sibling Hub files (see DESIGN.md).
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
from transformers.modeling_outputs import BaseModelOutputWithPast, ModelOutput
from transformers.models.gpt2.modeling_gpt2 import GPT2Model

from .checks_multimodal_gpt import (
    check_audio_inputs,
    check_pixel_values,
    check_placeholders_have_media,
    check_sequence_length,
)
from .configuration_multimodal_gpt import (
    MultimodalGPTConfig,
    _pair,
    add_multimodal_tokens,
)
from .fusion_multimodal_gpt import (
    AudioFrameReducer,
    GatedCrossAttentionLayer,
    MultimodalGPT2Block,
    MultimodalProjector,
    PerceiverResampler,
)
from .generation_multimodal_gpt import MultimodalGPTGenerationMixin
from .pipeline_multimodal_gpt import CUSTOM_PIPELINES
from .towers_multimodal_gpt import build_tower, is_trainable, load_tower

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


@dataclass
class MultimodalGPTModelOutputWithPast(BaseModelOutputWithPast):
    r"""
    media_embeds (`torch.FloatTensor` of shape `(batch_size, num_media_tokens, hidden_size)`, *optional*):
        The media that the gated cross-attention fusion attends to, encoded at prefill; `generate()` feeds them back
        at every decoding step so that the towers run once.
    media_mask (`torch.BoolTensor` of shape `(batch_size, num_media_tokens)`, *optional*):
        Which entries of `media_embeds` are real (per-sample media counts differ).
    """

    media_embeds: torch.FloatTensor | None = None
    media_mask: torch.BoolTensor | None = None


@dataclass
class MultimodalGPTCausalLMOutputWithPast(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `(1,)`, *optional*, returned when `labels` is given):
        Next-token prediction loss, averaged over the labelled tokens (or divided by `num_items_in_batch`).
    logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, vocab_size)`, *optional*):
        LM-head scores. `None` in training mode with `labels` when `config.labelled_logits_only` is set.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    media_embeds: torch.FloatTensor | None = None
    media_mask: torch.BoolTensor | None = None


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


class MultimodalGPTModel(MultimodalGPTPreTrainedModel):
    """The towers, the fusion and GPT-2 (without its LM head)."""

    def __init__(self, config: MultimodalGPTConfig):
        super().__init__(config)
        text_config = config.text_config
        self.language_model = GPT2Model(text_config)
        if config.cross_attention_layers:
            self.language_model.h = nn.ModuleList(
                MultimodalGPT2Block(
                    text_config,
                    layer_idx=index,
                    cross_attention_heads=config.cross_attention_heads
                    if index in config.cross_attention_layers
                    else None,
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

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Encode images: (num_images, channels, height, width) -> (num_images, num_image_tokens, hidden_size)."""
        check_pixel_values(pixel_values, self.vision_tower, self.config.vision_config)
        layer = self.config.vision_feature_layer
        with torch.set_grad_enabled(torch.is_grad_enabled() and is_trainable(self.vision_tower)):
            outputs = self.vision_tower(pixel_values=pixel_values, output_hidden_states=layer != -1)
        features = outputs.last_hidden_state if layer == -1 else outputs.hidden_states[layer]
        patch_size = _pair(self.config.vision_config.patch_size)
        num_patches = (pixel_values.shape[-2] // patch_size[0]) * (pixel_values.shape[-1] // patch_size[1])
        features = features[:, -num_patches:]  # patch tokens only: class and register tokens come first
        if self.config.fusion["vision"] == "resampler":  # the config, not isinstance: PEFT may wrap the fusion
            return self.vision_fusion(features, features.new_ones(features.shape[:2], dtype=torch.bool))
        return self.vision_fusion(features)

    def get_audio_features(
        self,
        input_features: torch.Tensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        input_values_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode audio clips, either log-mel `input_features` (num_clips, num_mel_bins, frames) for Whisper-style
        towers or waveforms `input_values` (num_clips, samples) for wav2vec2-style towers, each with its mask of
        valid positions. Returns tokens (num_clips, max_tokens, hidden_size) and their validity mask."""
        audio_inputs = (input_features, input_features_mask, input_values, input_values_mask)
        audio, audio_mask = check_audio_inputs(self.audio_tower, self.config.audio_config, *audio_inputs)
        layer = self.config.audio_feature_layer
        tower_kwargs = {self.audio_tower.main_input_name: audio, "output_hidden_states": layer != -1}
        if input_values is not None and getattr(self.config.audio_config, "feat_extract_norm", "layer") == "layer":
            tower_kwargs["attention_mask"] = audio_mask  # wav2vec2 checkpoints with group norm take no mask
        with torch.set_grad_enabled(torch.is_grad_enabled() and is_trainable(self.audio_tower)):
            outputs = self.audio_tower(**tower_kwargs)
        frames = outputs.last_hidden_state if layer == -1 else outputs.hidden_states[layer]
        lengths = [self.config.audio_encoder_output_length(int(length)) for length in audio_mask.sum(-1).tolist()]
        frame_mask = torch.arange(frames.shape[1], device=frames.device)[None, :] < torch.tensor(
            lengths, device=frames.device
        ).unsqueeze(-1)
        frames, frame_mask = self.audio_frame_reducer(frames, frame_mask)
        if self.config.fusion["audio"] == "resampler":
            tokens = self.audio_fusion(frames, frame_mask)
            return tokens, frame_mask.new_ones(tokens.shape[:2])
        return self.audio_fusion(frames), frame_mask

    # ----- fusion -----------------------------------------------------------------------------------------------

    def _splice(
        self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor, token_id: int, tokens: torch.Tensor, name: str
    ) -> torch.Tensor:
        """Write media `tokens` (num_tokens, hidden) over the placeholder positions of `inputs_embeds` (LLaVA)."""
        placeholder_mask = input_ids == token_id
        num_placeholders = int(placeholder_mask.sum())
        if num_placeholders != tokens.shape[0]:
            raise ValueError(
                f"{name.capitalize()} features and <{name}> tokens do not match, tokens: {num_placeholders}, "
                f"features: {tokens.shape[0]}. Build the inputs with MultimodalGPTProcessor, which expands each "
                f"<{name}> to the right count."
            )
        return inputs_embeds.masked_scatter(placeholder_mask.unsqueeze(-1), tokens.to(inputs_embeds.dtype))

    def _media_per_sample(
        self, input_ids: torch.Tensor, media: list[tuple[int, torch.Tensor, torch.Tensor, str]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Group cross-attention media by sample: each medium belongs to the row of its marker token.
        media: (token_id, tokens (N, L, D), mask (N, L), name) -> (B, M, D) and mask (B, M)."""
        per_sample: list[list[torch.Tensor]] = [[] for _ in range(input_ids.shape[0])]
        for token_id, tokens, mask, name in media:
            rows = (input_ids == token_id).nonzero()[:, 0].tolist()
            if len(rows) != tokens.shape[0]:
                raise ValueError(
                    f"{name.capitalize()} features and <{name}> tokens do not match, tokens: {len(rows)}, "
                    f"features: {tokens.shape[0]} (with cross-attention fusion each <{name}> stays one marker token)."
                )
            for row, medium, medium_mask in zip(rows, tokens, mask):
                per_sample[row].append(medium[medium_mask])
        samples = [torch.cat(items) if items else tokens.new_zeros(0, tokens.shape[-1]) for items in per_sample]
        lengths = torch.tensor([len(sample) for sample in samples], device=input_ids.device)
        media_embeds = nn.utils.rnn.pad_sequence(samples, batch_first=True)
        media_mask = torch.arange(media_embeds.shape[1], device=input_ids.device)[None, :] < lengths[:, None]
        return media_embeds, media_mask

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
        return self.get_image_features(like.new_zeros(shape))

    def _encode_blank_audio(self, like: torch.Tensor) -> torch.Tensor:
        """One silent clip through the audio tower and fusion (sharded engines, on a rank whose batch has none):
        the fixed window of a Whisper-style tower, or one second at 16 kHz for a waveform tower. As in
        `_encode_blank_image`, `like` gives the dtype and device."""
        if self.audio_tower.main_input_name == "input_features":
            audio_config = self.config.audio_config
            shape = (1, audio_config.num_mel_bins, 2 * audio_config.max_source_positions)
            tokens, _ = self.get_audio_features(input_features=like.new_zeros(shape))
        else:
            tokens, _ = self.get_audio_features(input_values=like.new_zeros(1, 16000))
        return tokens

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
        media_embeds: torch.FloatTensor | None = None,
        media_mask: torch.BoolTensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> MultimodalGPTModelOutputWithPast:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
            Token ids, with `<image>` / `<audio>` placeholders expanded by the processor.
        pixel_values (`torch.FloatTensor` of shape `(num_images, channels, height, width)`, *optional*):
            All images of the batch, in the order of their placeholders (row by row).
        input_features (`torch.FloatTensor` of shape `(num_clips, num_mel_bins, frames)`, *optional*):
            Log-mel features for Whisper-style audio towers, with `input_features_mask` `(num_clips, frames)`.
        input_values (`torch.FloatTensor` of shape `(num_clips, samples)`, *optional*):
            Waveforms for wav2vec2-style audio towers, with `input_values_mask` `(num_clips, samples)`.
        media_embeds, media_mask (*optional*):
            Cross-attention media encoded by an earlier call (`generate()` passes them at each decoding step).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Give exactly one of input_ids and inputs_embeds.")
        has_vision = pixel_values is not None
        has_audio = input_features is not None or input_values is not None
        if (has_vision or has_audio) and input_ids is None:
            raise ValueError("Media inputs need input_ids, whose placeholders say where each medium goes.")
        sequence = input_ids if input_ids is not None else inputs_embeds[..., 0]
        check_sequence_length(sequence.shape[1], cache, self.config.text_config.n_positions)
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        if input_ids is not None and (cache is None or cache.get_seq_length() == 0):
            check_placeholders_have_media(input_ids, self.config, has_vision, has_audio, media_embeds)

        training = self.training and torch.is_grad_enabled()
        # Sharded engines (FSDP, ZeRO-3) gather a module's parameters only while it runs, in call order, on every
        # rank alike: a rank without images or audio encodes a blank medium at the same point instead.
        sharded = training and self._parameters_are_sharded()
        cross_media = []
        if has_vision:
            image_tokens = self.get_image_features(pixel_values)
            if self.config.fusion["vision"] == "cross_attention":
                image_mask = image_tokens.new_ones(image_tokens.shape[:2], dtype=torch.bool)
                cross_media.append((self.config.image_token_id, image_tokens, image_mask, "image"))
            else:
                inputs_embeds = self._splice(
                    input_ids, inputs_embeds, self.config.image_token_id, image_tokens.flatten(0, 1), "image"
                )
        elif sharded and self.vision_tower is not None:
            inputs_embeds = inputs_embeds + self._encode_blank_image(inputs_embeds).sum() * 0.0
        if has_audio:
            audio_tokens, audio_mask = self.get_audio_features(
                input_features, input_features_mask, input_values, input_values_mask
            )
            if self.config.fusion["audio"] == "cross_attention":
                cross_media.append((self.config.audio_token_id, audio_tokens, audio_mask, "audio"))
            else:
                inputs_embeds = self._splice(
                    input_ids, inputs_embeds, self.config.audio_token_id, audio_tokens[audio_mask], "audio"
                )
        elif sharded and self.audio_tower is not None:
            inputs_embeds = inputs_embeds + self._encode_blank_audio(inputs_embeds).sum() * 0.0
        if cross_media:
            media_embeds, media_mask = self._media_per_sample(input_ids, cross_media)
        if sharded and self.config.cross_attention_layers and media_embeds is None:
            # every rank runs the gated cross-attention layers; with no valid media they leave the text as it is
            media_embeds = inputs_embeds.new_zeros(inputs_embeds.shape[0], 1, inputs_embeds.shape[-1])
            media_mask = torch.zeros(media_embeds.shape[:2], dtype=torch.bool, device=media_embeds.device)
        elif training and not sharded:
            present = {modality for modality, given in (("vision", has_vision), ("audio", has_audio)) if given}
            inputs_embeds = inputs_embeds + self._absent_modality_anchor(present)

        if self.config.cross_attention_layers:
            kwargs.update(media_embeds=media_embeds, media_mask=media_mask)
        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            **kwargs,
        )
        return MultimodalGPTModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            media_embeds=media_embeds,
            media_mask=media_mask,
        )


class MultimodalGPTForConditionalGeneration(MultimodalGPTPreTrainedModel, MultimodalGPTGenerationMixin):
    """MultimodalGPT with GPT-2's LM head (tied to the input embeddings): the model to train and generate with."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.wte.weight"}

    def __init__(self, config: MultimodalGPTConfig):
        super().__init__(config)
        self.model = MultimodalGPTModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
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

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.model.get_image_features(pixel_values, **kwargs)

    def get_audio_features(self, **audio_inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
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
        media_embeds: torch.FloatTensor | None = None,
        media_mask: torch.BoolTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> MultimodalGPTCausalLMOutputWithPast:
        r"""
        Inputs as in [`MultimodalGPTModel.forward`], plus:

        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Targets, -100 where no loss is wanted (prompt, media, padding). Shifted inside, like GPT-2.
        logits_to_keep (`int` or `torch.Tensor`, defaults to 0):
            Compute logits only for the last `logits_to_keep` positions (0: all), as `generate()` asks.
        """
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
            media_embeds=media_embeds,
            media_mask=media_mask,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        vocab_size = self.config.text_config.vocab_size
        loss = logits = None
        if labels is not None and self.training and self.config.labelled_logits_only:
            # The 50k-way head dominates a training step: compute it only where a label is (same loss).
            shift_labels = F.pad(labels, (0, 1), value=-100)[:, 1:]
            labelled = shift_labels != -100
            labelled_logits = self.lm_head(hidden_states[labelled])
            loss = self.loss_function(
                logits=labelled_logits,
                labels=None,
                shift_labels=shift_labels[labelled],
                vocab_size=vocab_size,
                **kwargs,
            )
        else:
            slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
            logits = self.lm_head(hidden_states[:, slice_indices, :])
            if labels is not None:
                loss = self.loss_function(logits=logits, labels=labels, vocab_size=vocab_size, **kwargs)
        return MultimodalGPTCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            media_embeds=outputs.media_embeds,
            media_mask=outputs.media_mask,
        )

    # ----- building from pretrained parts -----------------------------------------------------------------------

    @classmethod
    def from_pretrained_parts(
        cls,
        text_model: str | os.PathLike,
        vision_model: str | os.PathLike | None = None,
        audio_model: str | os.PathLike | None = None,
        **config_kwargs: Any,
    ) -> "MultimodalGPTForConditionalGeneration":
        """One model from separately pretrained checkpoints (Hub ids or local folders), like
        `VisionEncoderDecoderModel.from_encoder_decoder_pretrained`: a GPT-2, a vision model and/or an audio model.
        Their weights are carried over exactly; `<image>` / `<audio>` are added to GPT-2's vocabulary (the same ids
        as `MultimodalGPTProcessor.from_pretrained_parts` gives), and the LM head stays tied to the embeddings.
        `config_kwargs` go to [`MultimodalGPTConfig`] (e.g. `fusion="resampler"`)."""
        tokenizer = AutoTokenizer.from_pretrained(text_model)
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
        return model


__all__ = ["MultimodalGPTForConditionalGeneration", "MultimodalGPTModel", "MultimodalGPTPreTrainedModel"]
