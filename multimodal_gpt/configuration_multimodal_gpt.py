"""MultimodalGPT configuration: GPT-2 plus optional vision and audio towers and a fusion choice per modality.

This is a "Hub file": `save_pretrained` ships it next to the weights, so it imports only torch, transformers,
huggingface_hub and the standard library (see the import rule in DESIGN.md).
"""

import math
import os
from typing import Any, Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, AutoTokenizer, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

IMAGE_TOKEN = "<image>"
AUDIO_TOKEN = "<audio>"
PAD_TOKEN = "<|pad|>"
FUSION_TYPES = ("linear", "mlp", "resampler", "cross_attention")
MODALITIES = ("vision", "audio")
# Fusions that give GPT-2 one token per patch / audio frame group, in order: media prediction needs them.
PER_ELEMENT_FUSIONS = ("linear", "mlp")
# Towers whose features at patch / frame i mix the other positions only through self-attention (plus, for Whisper,
# the known overlap of its two convolutions), so that a causal attention mask makes them causal.
CAUSAL_CAPABLE_TOWERS = {
    "vision": ("vit", "clip_vision_model", "siglip_vision_model", "dinov2", "dinov2_with_registers"),
    "audio": ("whisper",),
}
# Vision towers that interpolate their position embeddings, so any image size (a multiple of the patch) works.
INTERPOLATING_VISION_TOWERS = ("dinov2", "dinov2_with_registers", "dinov3_vit")
# Convolutional vision towers: a feature map (channels, height, width) whose positions become the image's features,
# row by row; any image size works (see `vision_tower_convolutions`).
CONVOLUTIONAL_VISION_TOWERS = ("resnet", "convnext", "convnextv2")
# The image size a convolutional tower config without `image_size` (ResNet's has none) gets: ImageNet's, at which
# Transformers' ResNet and ConvNeXt checkpoints were trained. The processor resizes images to it.
DEFAULT_CONVOLUTIONAL_IMAGE_SIZE = 224


@strict
class MultimodalGPTConfig(PreTrainedConfig):
    r"""
    Configuration of a [`MultimodalGPTForConditionalGeneration`]: a GPT-2 language model that reads images and audio
    through pluggable Transformers encoder towers and a fusion module.

    Args:
        text_config (`GPT2Config` or `dict`, *optional*):
            The GPT-2 decoder. Defaults to GPT-2 small's architecture.
        vision_config (`PreTrainedConfig` or `dict`, *optional*):
            A Transformers vision encoder: a patch-based transformer (CLIP / SigLIP vision, ViT, DINOv2, ...) or a
            convolutional network (ResNet, ConvNeXt, ConvNeXt V2), whose last feature map gives one feature per
            position (a 224 px image through a ResNet: 7 x 7). A convolutional config's `image_size` (default 224; an
            extra key for ResNet, e.g. `ResNetConfig(image_size=96)`) is the size the processor resizes images to.
            `None`: no vision tower.
        audio_config (`PreTrainedConfig` or `dict`, *optional*):
            Any Transformers audio encoder (Whisper, whose encoder is used, wav2vec2, HuBERT, ...). `None`: no
            audio tower.
        fusion (`str` or `dict[str, str]`, defaults to `"mlp"`):
            How media reach GPT-2: `"linear"` or `"mlp"` (a projector; one token per feature, spliced in at the
            `<image>` / `<audio>` placeholders, the LLaVA way), `"resampler"` (a Perceiver resampler that turns each
            medium into `resampler_num_queries` tokens, spliced in the same way) or `"cross_attention"` (GPT-2 blocks
            attend to the media through zero-initialised tanh gates, Flamingo's way; the placeholder stays one marker
            token). A string applies to every tower; `{"vision": ..., "audio": ...}` chooses per modality.
        image_token_id (`int`, *optional*):
            Id of the `<image>` placeholder token. Required with a vision tower.
        audio_token_id (`int`, *optional*):
            Id of the `<audio>` placeholder token. Required with an audio tower.
        vision_feature_layer (`int`, defaults to -1):
            Which hidden state of the vision tower feeds the fusion (-1: the last; LLaVA uses -2 with CLIP). Only
            patch tokens are used: class and register tokens are dropped. A convolutional tower's stages differ in
            resolution and width, so it takes -1 only.
        audio_feature_layer (`int`, defaults to -1):
            Which hidden state of the audio tower feeds the fusion.
        vision_token_merge (`int`, defaults to 1):
            Each `n` x `n` block of neighbouring patches becomes one feature before the fusion (`1`: every patch is
            one), so the `"linear"` / `"mlp"` fusions send `n * n` times fewer image tokens (a 7 x 7 grid and `n=2`:
            16 instead of 49; a grid that `n` does not divide is padded with zero features), and the resampler and
            cross-attention attend to fewer media positions. InternVL's pixel shuffle and LLaVA-OneVision's pooling.
        vision_token_merge_mode (`str`, defaults to `"stack"`):
            `"stack"` concatenates the block's features (space-to-depth: nothing lost, the fusion input grows
            `n * n`-fold); `"mean"` averages the block's real patches.
        audio_frame_reduction (`int`, defaults to 4):
            Audio encoders emit about 50 frames a second; this many consecutive frames become one (`1` to keep all).
        audio_frame_reduction_mode (`str`, defaults to `"stack"`):
            `"stack"` concatenates the frames' features (keeps detail, widens the fusion input); `"mean"` averages.
        projector_hidden_act (`str`, defaults to `"gelu"`):
            Activation of the `"mlp"` projector.
        resampler_num_queries (`int`, defaults to 16):
            Learned queries, hence tokens per medium, of the `"resampler"` fusion.
        resampler_depth (`int`, defaults to 2):
            Cross-attention layers of the resampler.
        resampler_num_heads (`int`, defaults to 8):
            Attention heads of the resampler (must divide GPT-2's hidden size).
        cross_attention_interval (`int`, defaults to 1):
            With `"cross_attention"` fusion, a gated cross-attention layer sits before every n-th GPT-2 block.
        cross_attention_num_heads (`int`, *optional*):
            Heads of the gated cross-attention; defaults to GPT-2's number of heads.
        cross_attention_feed_forward_mult (`int`, defaults to 4):
            Width of the gated feed-forward after each gated cross-attention, in multiples of GPT-2's hidden size
            (Flamingo's `ff_mult`); `0` leaves the feed-forward out (a cheaper block: the cross-attention alone).
        labelled_logits_only (`bool`, defaults to `True`):
            In training mode with `labels`, compute the 50k-way LM head only at positions that have a label (prompt,
            media and padding positions have none): the LM head dominates the cost of a step. The loss is identical;
            `logits` is then `None`. Evaluation (`model.eval()`) always returns full logits.
        tie_word_embeddings (`bool`, defaults to `True`):
            Tie GPT-2's LM head to its input embeddings, as GPT-2 does.
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the initialisation of the fusion weights.
        media_loss_weight (`float` or `dict[str, float]`, defaults to 0.0):
            Weight of next-element prediction for media against the next-token text loss (0: text only, exactly
            GPT-2's loss). With a weight above 0 the model has a prediction head for that modality, and a media token
            whose label is its own placeholder id (`<image>` / `<audio>`; the pretraining collator labels them so) is
            a target: the GPT-2 state one position earlier regresses that patch's normalised pixels (AIM) or that
            audio token's normalised log-mel frames (APC), while the tower runs with a causal attention mask, so that
            no position has seen the element it predicts. Needs a per-element fusion (`"linear"` / `"mlp"`) and a
            ViT-family vision tower or a Whisper audio tower. A float applies to every tower; `{"vision": ...,
            "audio": ...}` chooses per modality.
        label_smoothing (`float`, defaults to 0.0):
            Label smoothing of the text loss (the training scripts set it from `--label_smoothing_factor`): computed
            here because with `labelled_logits_only` the `Trainer`'s label smoother has no logits to smooth.

    Example:

    ```python
    >>> from transformers import CLIPVisionConfig, GPT2Config
    >>> from multimodal_gpt import MultimodalGPTConfig, MultimodalGPTForConditionalGeneration

    >>> config = MultimodalGPTConfig(
    ...     text_config=GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=1000),
    ...     vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                                    num_attention_heads=2, image_size=32, patch_size=8),
    ...     fusion="mlp", image_token_id=999,
    ... )
    >>> model = MultimodalGPTForConditionalGeneration(config)
    ```
    """

    model_type = "multimodal_gpt"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="gpt2"),
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="clip_vision_model", optional=True),
        "audio_config": SubConfigSpec(config_class=AutoConfig, model_type="wav2vec2", optional=True),
    }

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None
    fusion: str | dict[str, str] = "mlp"
    image_token_id: int | None = None
    audio_token_id: int | None = None
    vision_feature_layer: int = -1
    audio_feature_layer: int = -1
    vision_token_merge: int = 1
    vision_token_merge_mode: Literal["stack", "mean"] = "stack"
    audio_frame_reduction: int = 4
    audio_frame_reduction_mode: Literal["stack", "mean"] = "stack"
    projector_hidden_act: str = "gelu"
    resampler_num_queries: int = 16
    resampler_depth: int = 2
    resampler_num_heads: int = 8
    cross_attention_interval: int = 1
    cross_attention_num_heads: int | None = None
    cross_attention_feed_forward_mult: int = 4
    labelled_logits_only: bool = True
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02
    media_loss_weight: float | dict[str, float] = 0.0
    label_smoothing: float = 0.0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.fusion = self._normalized_fusion()
        self.media_loss_weight = self.media_loss_weights()
        self._check_towers()
        self._check_sizes()
        if self.text_config.model_type != "gpt2":
            raise ValueError(
                f"text_config must be a GPT-2 config (model_type 'gpt2'), got '{self.text_config.model_type}'."
            )

    @classmethod
    def from_pretrained_parts(
        cls,
        text_model: str | os.PathLike,
        vision_model: str | os.PathLike | None = None,
        audio_model: str | os.PathLike | None = None,
        *,
        tokenizer: Any,
        **config_kwargs: Any,
    ) -> "MultimodalGPTConfig":
        """The config of a model assembled from pretrained checkpoints (Hub ids or local folders): GPT-2's config
        with the vocabulary of `tokenizer` (which `add_multimodal_tokens` gives the placeholders), the towers'
        encoder configs, and `config_kwargs` (e.g. `fusion="resampler"`)."""
        text_config = gpt2_config(text_model)
        text_config.vocab_size = len(tokenizer)
        token_ids = add_multimodal_tokens(tokenizer)
        return cls(
            text_config=text_config,
            vision_config=tower_config(vision_model) if vision_model is not None else None,
            audio_config=tower_config(audio_model) if audio_model is not None else None,
            image_token_id=token_ids["image_token_id"] if vision_model is not None else None,
            audio_token_id=token_ids["audio_token_id"] if audio_model is not None else None,
            **config_kwargs,
        )

    # ----- validation -------------------------------------------------------------------------------------------

    def _normalized_fusion(self) -> dict[str, str]:
        """Turn `fusion` into `{modality: fusion}` for the modalities that have a tower, checking every name."""
        towers = [modality for modality in MODALITIES if self.modality_config(modality) is not None]
        if isinstance(self.fusion, str):
            fusion = {modality: self.fusion for modality in towers}
            names = [self.fusion]
        else:
            fusion = dict(self.fusion)
            names = list(fusion.values())
            for modality in fusion:
                if modality not in MODALITIES:
                    raise ValueError(f"fusion has an entry for '{modality}'; the modalities are {list(MODALITIES)}.")
                if self.modality_config(modality) is None:
                    raise ValueError(
                        f"fusion names '{fusion[modality]}' for {modality}, but the config has no {modality}_config: "
                        f"give a {modality}_config or remove '{modality}' from fusion."
                    )
            for modality in towers:
                if modality not in fusion:
                    raise ValueError(
                        f"fusion has no entry for '{modality}', which has a tower; add one of {FUSION_TYPES}."
                    )
        for name in names:
            if name not in FUSION_TYPES:
                raise ValueError(f"Unknown fusion '{name}': choose one of {FUSION_TYPES}.")
        return fusion

    def media_loss_weights(self) -> dict[str, float]:
        """`media_loss_weight` as `{modality: weight}` for the modalities with a tower, each checked: a weight above 0
        needs a per-element fusion and a tower that a causal attention mask makes causal. (Read through here: a
        `from_pretrained(..., media_loss_weight=0.0)` override sets the field after the checks.)"""
        towers = [modality for modality in MODALITIES if self.modality_config(modality) is not None]
        given = self.media_loss_weight
        weights = {modality: float(given) for modality in towers} if isinstance(given, (int, float)) else dict(given)
        for modality, weight in weights.items():
            if modality not in towers:
                raise ValueError(
                    f"media_loss_weight has an entry for '{modality}', which has no tower here; the modalities with a "
                    f"tower are {towers}."
                )
            if not weight >= 0:
                raise ValueError(f"media_loss_weight for {modality} must be >= 0, got {weight}.")
            if weight > 0:
                self._check_media_prediction(modality)
        return {modality: float(weights.get(modality, 0.0)) for modality in towers}

    def _check_media_prediction(self, modality: str) -> None:
        fusion = self.fusion[modality]
        if fusion not in PER_ELEMENT_FUSIONS:
            raise ValueError(
                f"media_loss_weight > 0 for {modality} predicts each next patch / frame from the GPT-2 position of "
                f"the one before, but fusion '{fusion}' gives GPT-2 no per-element positions: use fusion "
                f"{' or '.join(PER_ELEMENT_FUSIONS)} for {modality}, or media_loss_weight 0."
            )
        if modality == "vision" and self.vision_token_merge > 1:
            raise ValueError(
                f"media_loss_weight > 0 for vision predicts each next patch from the position of the one before, but "
                f"vision_token_merge={self.vision_token_merge} merges patches into fewer positions: use "
                "vision_token_merge 1, or media_loss_weight 0 for vision."
            )
        model_type = self.modality_config(modality).model_type
        if model_type not in CAUSAL_CAPABLE_TOWERS[modality]:
            raise ValueError(
                f"media_loss_weight > 0 for {modality} needs a tower that a causal attention mask makes causal (else "
                f"position i has already seen element i+1): {list(CAUSAL_CAPABLE_TOWERS[modality])}, not "
                f"'{model_type}' (convolutional towers, wav2vec2 and HuBERT mix neighbouring positions through their "
                f"convolutions). Give {modality} a weight of 0: `media_loss_weight={{'{modality}': 0.0, ...}}`, on "
                f"the command line `--media_loss_weight {modality}=0,...`."
            )

    def _check_towers(self) -> None:
        vision = self.vision_config
        if vision is not None and vision.model_type in CONVOLUTIONAL_VISION_TOWERS:
            self._check_convolutional_tower(vision)
        elif vision is not None and not is_patch_sequence_tower(vision):
            raise ValueError(
                f"Cannot use '{vision.model_type}' as the vision tower: the towers supported are plain patch-based "
                "transformers, whose config has `patch_size`, `image_size` and `hidden_size` and whose output is one "
                "feature per patch (ViT, CLIP, SigLIP, DINOv2, ...), and the convolutional networks "
                f"{list(CONVOLUTIONAL_VISION_TOWERS)}. Hierarchical transformers (Swin, ...) merge patches in stages, "
                "which this model does not count or turn into image tokens."
            )
        for modality, token in (("vision", "image"), ("audio", "audio")):
            if self.modality_config(modality) is not None and getattr(self, f"{token}_token_id") is None:
                raise ValueError(
                    f"A {modality} tower needs `{token}_token_id`: the id of the <{token}> placeholder in your "
                    "tokenizer (`multimodal_gpt.add_multimodal_tokens(tokenizer)` adds it and returns the ids)."
                )
        if self.image_token_id is not None and self.image_token_id == self.audio_token_id:
            raise ValueError(f"image_token_id and audio_token_id are both {self.image_token_id}; they must differ.")
        vocab_size = self.text_config.vocab_size
        for name in ("image_token_id", "audio_token_id"):
            token_id = getattr(self, name)
            if token_id is not None and not 0 <= token_id < vocab_size:
                raise ValueError(
                    f"{name}={token_id} is outside the text vocabulary (size {vocab_size}): set "
                    "text_config.vocab_size to len(tokenizer) after adding the special tokens."
                )

    def _check_convolutional_tower(self, vision: PreTrainedConfig) -> None:
        if self.vision_feature_layer != -1:
            raise ValueError(
                f"vision_feature_layer={self.vision_feature_layer} with the convolutional tower "
                f"'{vision.model_type}': its stages differ in resolution and width, so only its last feature map (-1) "
                "feeds the fusion."
            )
        if not hasattr(vision, "image_size"):  # ResNetConfig has no such field: kept as an extra key, and saved
            vision.image_size = DEFAULT_CONVOLUTIONAL_IMAGE_SIZE
        if vision.model_type != "resnet" and len(set(_pair(vision.patch_size))) > 1:
            raise ValueError(f"'{vision.model_type}' towers with a non-square patch_size are not supported.")

    def _check_sizes(self) -> None:
        if self.audio_frame_reduction < 1:
            raise ValueError(f"audio_frame_reduction must be >= 1, got {self.audio_frame_reduction}.")
        if self.vision_token_merge < 1:
            raise ValueError(f"vision_token_merge must be >= 1 (1: no merge), got {self.vision_token_merge}.")
        if self.cross_attention_feed_forward_mult < 0:
            raise ValueError(
                "cross_attention_feed_forward_mult must be >= 0 (0: no feed-forward), got "
                f"{self.cross_attention_feed_forward_mult}."
            )
        if self.cross_attention_interval < 1:
            raise ValueError(f"cross_attention_interval must be >= 1, got {self.cross_attention_interval}.")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        hidden_size = self.text_config.hidden_size
        if "resampler" in self.fusion.values() and hidden_size % self.resampler_num_heads:
            raise ValueError(
                f"resampler_num_heads={self.resampler_num_heads} must divide GPT-2's hidden size {hidden_size}."
            )
        if "cross_attention" in self.fusion.values() and hidden_size % self.cross_attention_heads:
            raise ValueError(
                f"cross_attention_num_heads={self.cross_attention_heads} must divide GPT-2's hidden size "
                f"{hidden_size}."
            )

    # ----- derived quantities -----------------------------------------------------------------------------------

    def modality_config(self, modality: str) -> PreTrainedConfig | None:
        """The tower config of `modality` ("vision" or "audio"), or `None` when the model has no such tower."""
        return self.vision_config if modality == "vision" else self.audio_config

    @property
    def media_prediction_modalities(self) -> list[str]:
        """The modalities with next-element prediction (`media_loss_weight` above 0)."""
        return [modality for modality, weight in self.media_loss_weights().items() if weight > 0]

    @property
    def cross_attention_heads(self) -> int:
        return self.cross_attention_num_heads or self.text_config.n_head

    @property
    def cross_attention_layers(self) -> list[int]:
        """Indices of the GPT-2 blocks that get a gated cross-attention in front (empty without that fusion)."""
        if "cross_attention" not in self.fusion.values():
            return []
        return list(range(0, self.text_config.n_layer, self.cross_attention_interval))

    def media_token_spec(self) -> dict[str, dict[str, Any] | None]:
        """What the processor needs to know to expand `<image>` / `<audio>` to the number of tokens this model
        produces: the fusion per modality, the vision patch size (or a convolutional tower's convolutions), the
        audio tower's convolutions and the frame reduction. Plain JSON, saved in `processor_config.json`;
        `num_image_tokens` / `num_audio_tokens` below and the processor both count through it. A spec saved before
        `token_merge` existed counts as `token_merge=1`."""
        spec: dict[str, dict[str, Any] | None] = {"image": None, "audio": None}
        if self.vision_config is not None:
            convolutions = vision_tower_convolutions(self.vision_config)
            downsampling = {"convolutions": convolutions} if convolutions is not None else None
            spec["image"] = {
                "fusion": self.fusion["vision"],
                **(downsampling or {"patch_size": list(_pair(self.vision_config.patch_size))}),
                "image_size": list(_pair(self.vision_config.image_size)),
                "token_merge": self.vision_token_merge,
                "resampler_num_queries": self.resampler_num_queries,
            }
        if self.audio_config is not None:
            spec["audio"] = {
                "fusion": self.fusion["audio"],
                "convolutions": audio_tower_convolutions(self.audio_config),
                "frame_reduction": self.audio_frame_reduction,
                "resampler_num_queries": self.resampler_num_queries,
            }
        return spec

    def num_image_tokens(self, height: int | None = None, width: int | None = None) -> int:
        """How many tokens one `<image>` placeholder expands to, for an image of `height` x `width` pixels (default:
        the tower's `image_size`)."""
        if self.vision_config is None:
            raise ValueError("This model has no vision tower, so images cannot be given.")
        return count_image_tokens(self.media_token_spec()["image"], height, width)

    def audio_encoder_output_length(self, input_length: Any) -> Any:
        """Frames the audio tower emits for an input of `input_length` (samples for waveform towers, mel frames for
        Whisper-style towers), before the frame reduction. An int, or a tensor of lengths (computed on the device,
        so the model needs no host sync and traces)."""
        if self.audio_config is None:
            raise ValueError("This model has no audio tower, so audio cannot be given.")
        return convolved_length(input_length, audio_tower_convolutions(self.audio_config))

    def num_audio_tokens(self, input_length: int) -> int:
        """How many tokens one `<audio>` placeholder expands to, for a clip whose tower input is `input_length` long
        (samples, or valid mel frames for Whisper)."""
        if self.audio_config is None:
            raise ValueError("This model has no audio tower, so audio cannot be given.")
        return count_audio_tokens(self.media_token_spec()["audio"], input_length)


def is_patch_sequence_tower(vision_config: PreTrainedConfig) -> bool:
    """Whether a vision tower gives one feature per `patch_size` patch of its input, in order (ViT-style): a
    `patch_size`, `image_size` and `hidden_size`, and no stages (`depths`, `hidden_sizes`) that downsample."""
    patch_sequence = all(hasattr(vision_config, name) for name in ("patch_size", "image_size", "hidden_size"))
    return patch_sequence and not any(hasattr(vision_config, name) for name in ("depths", "hidden_sizes"))


def vision_tower_convolutions(vision_config: PreTrainedConfig) -> list[list[int]] | None:
    """A convolutional vision tower's downsampling along each image axis, as `[kernel, stride, padding]` per strided
    convolution or pooling (the same along height and width); `None` for a patch-based tower."""
    if vision_config.model_type == "resnet":
        # the stem's 7x7 convolution and 3x3 max-pool, both with stride 2; then the first stage halves only with
        # `downsample_in_first_stage`, each later one always (a 3x3 convolution with padding 1, or a 1x1 in the
        # shortcut and with `downsample_in_bottleneck`: the same output size)
        stages = len(vision_config.depths) - (0 if vision_config.downsample_in_first_stage else 1)
        return [[7, 2, 3], [3, 2, 1], *[[3, 2, 1]] * stages]
    if vision_config.model_type in ("convnext", "convnextv2"):
        # the patchifying stem (kernel = stride = patch_size), then a 2x2 convolution with stride 2 before each stage
        # but the first
        patch = _pair(vision_config.patch_size)[0]
        return [[patch, patch, 0], *[[2, 2, 0]] * (vision_config.num_stages - 1)]
    return None


def tower_feature_width(tower_config: PreTrainedConfig) -> int:
    """The width of a tower's features: its hidden size, or a convolutional tower's last stage's channels."""
    if tower_config.model_type in CONVOLUTIONAL_VISION_TOWERS:
        return tower_config.hidden_sizes[-1]
    return tower_config.hidden_size


def audio_tower_convolutions(audio_config: PreTrainedConfig) -> list[list[int]]:
    """The audio tower's downsampling as `[kernel, stride, padding]` per 1-D convolution over time."""
    if hasattr(audio_config, "conv_kernel"):  # wav2vec2 family: a stack of 1-D convolutions over the waveform
        convolutions = [
            [kernel, stride, 0] for kernel, stride in zip(audio_config.conv_kernel, audio_config.conv_stride)
        ]
        if getattr(audio_config, "add_adapter", False):
            convolutions += [[1, audio_config.adapter_stride, 0]] * audio_config.num_adapter_layers
        return convolutions
    if hasattr(audio_config, "num_mel_bins"):  # Whisper family: conv(k3, s1, p1) then conv(k3, s2, p1) over mel frames
        return [[3, 1, 1], [3, 2, 1]]
    raise ValueError(
        f"Cannot compute output lengths of audio tower '{audio_config.model_type}': supported towers have "
        "`conv_kernel`/`conv_stride` (wav2vec2, HuBERT, ...) or `num_mel_bins` (Whisper)."
    )


def convolved_length(input_length: Any, convolutions: list[list[int]]) -> Any:
    """The length after `convolutions`, for an int or a tensor of lengths."""
    for kernel, stride, padding in convolutions:
        input_length = (input_length + 2 * padding - kernel) // stride + 1
        input_length = input_length.clamp(min=0) if hasattr(input_length, "clamp") else max(input_length, 0)
    return input_length


def count_image_features(spec: dict[str, Any], height: int | None = None, width: int | None = None) -> int:
    """Features one image gives the fusion under `spec`: its patches (or the positions of a convolutional tower's
    feature map), `token_merge` x `token_merge` blocks merged (a partial block at the edge counts as one)."""
    height, width = height or spec["image_size"][0], width or spec["image_size"][1]
    merge = spec.get("token_merge", 1)  # absent from processor configs saved before the option existed
    if "convolutions" in spec:
        rows, columns = (convolved_length(size, spec["convolutions"]) for size in (height, width))
    else:
        rows, columns = height // spec["patch_size"][0], width // spec["patch_size"][1]
    return math.ceil(rows / merge) * math.ceil(columns / merge)


def count_audio_features(spec: dict[str, Any], input_length: int) -> int:
    """Valid features one clip whose tower input is `input_length` long gives the fusion: the tower's frames, every
    `frame_reduction` of them made one."""
    return math.ceil(convolved_length(input_length, spec["convolutions"]) / spec["frame_reduction"])


def count_media_tokens(spec: dict[str, Any], num_features: int) -> int:
    """Tokens one medium of `num_features` fusion-input features becomes under `spec`: one per feature for the
    projector fusions, the resampler's queries, or one marker for cross-attention (GPT-2 attends to the features)."""
    if spec["fusion"] == "cross_attention":
        return 1
    if spec["fusion"] == "resampler":
        return spec["resampler_num_queries"]
    return num_features


def count_image_tokens(spec: dict[str, Any], height: int | None = None, width: int | None = None) -> int:
    """Tokens for one image under `spec` (see `MultimodalGPTConfig.media_token_spec`)."""
    return count_media_tokens(spec, count_image_features(spec, height, width))


def count_audio_tokens(spec: dict[str, Any], input_length: int) -> int:
    """Tokens for one clip whose tower input is `input_length` long, under `spec`."""
    return count_media_tokens(spec, count_audio_features(spec, input_length))


def add_multimodal_tokens(tokenizer: Any) -> dict[str, int]:
    """Give any tokenizer the `<image>` and `<audio>` placeholders and a pad token; safe to call more than once.

    The placeholders are added as special tokens (never split, skipped by `decode(..., skip_special_tokens=True)`)
    and listed in `tokenizer.extra_special_tokens`, so they are saved with the tokenizer. A tokenizer without a pad
    token (the real GPT-2 one) gets `<|pad|>` (not its eos token: a collator that masks padding must never mask the
    end of text the model has to learn); an existing pad token is kept. New tokens take the next free ids, so the
    same tokenizer always gives the same ids: a model and a processor built from the same parts agree. Resize the
    model's embeddings to `len(tokenizer)` afterwards.

    Returns:
        `dict[str, int]`: `image_token_id`, `audio_token_id` and `pad_token_id`, named like the config fields.
    """
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    missing = [token for token in (IMAGE_TOKEN, AUDIO_TOKEN) if token not in tokenizer.extra_special_tokens]
    if missing:
        # `replace_extra_special_tokens=False` keeps the tokenizer's own extra special tokens flagged as special.
        tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    return {
        "image_token_id": tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        "audio_token_id": tokenizer.convert_tokens_to_ids(AUDIO_TOKEN),
        "pad_token_id": tokenizer.pad_token_id,
    }


def gpt2_config(text_model: str | os.PathLike) -> PreTrainedConfig:
    """The config of the GPT-2 checkpoint `text_model` (a Hub id or local folder); any other model is an error."""
    text_config = AutoConfig.from_pretrained(text_model)
    if text_config.model_type != "gpt2":
        raise ValueError(f"text_model must be a GPT-2 checkpoint, got '{text_config.model_type}' from {text_model}.")
    return text_config


def load_text_tokenizer(text_model: str | os.PathLike, tokenizer: Any = None) -> Any:
    """The tokenizer of the GPT-2 checkpoint `text_model` (or `tokenizer`, given explicitly), checked to cover every
    row of GPT-2's embedding matrix. `AutoTokenizer` silently returns a 1-token tokenizer for a folder without
    tokenizer files, and the embeddings would then be cut down to its size: a destroyed model, without an error."""
    embedding_rows = gpt2_config(text_model).vocab_size
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(text_model)
    if len(tokenizer) < embedding_rows:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the embedding matrix of {text_model} has "
            f"{embedding_rows} rows: resizing would drop the embeddings of {embedding_rows - len(tokenizer)} tokens. "
            "Does the folder lack its tokenizer files? Save the tokenizer GPT-2 was trained with next to it, or pass "
            "it as `tokenizer=`."
        )
    return tokenizer


def tower_config(name_or_path: str | os.PathLike) -> PreTrainedConfig:
    """The encoder config of a pretrained vision or audio checkpoint: a dual encoder's (CLIP, SigLIP) vision config,
    or the checkpoint's own config (ViT, DINOv2, wav2vec2, HuBERT, Whisper, whose encoder is used)."""
    config = AutoConfig.from_pretrained(name_or_path)
    if getattr(config, "vision_config", None) is not None and not getattr(config, "is_encoder_decoder", False):
        config.vision_config._name_or_path = config._name_or_path  # kept in config.json: the card's base_model
        return config.vision_config
    return config


def _pair(value: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


__all__ = [
    "AUDIO_TOKEN",
    "IMAGE_TOKEN",
    "PAD_TOKEN",
    "MultimodalGPTConfig",
    "add_multimodal_tokens",
    "count_audio_features",
    "count_audio_tokens",
    "count_image_features",
    "count_image_tokens",
    "count_media_tokens",
    "load_text_tokenizer",
    "tower_config",
    "tower_feature_width",
    "vision_tower_convolutions",
]
