"""Training objectives beside GPT-2's next-token loss: next-element prediction for media, and label smoothing.

Next-element prediction for media (`MultimodalGPTConfig.media_loss_weight`): in the causal stream `[bos] <image>...
<image> text`, the GPT-2 state at media position i regresses element i+1 of the same medium, as AIM does for image
patches and APC for log-mel frames. The targets are what the tower reads, normalised per element (MAE / AIM's
normalised pixels): an image patch's pixels ([`patch_targets`]), an audio token's log-mel frames ([`frame_targets`]).

The trap is the tower: a ViT or Whisper encoder is bidirectional, so its output at patch i has already seen patch
i+1, and GPT-2 could copy the answer instead of predicting it. So while a modality has media targets the tower runs
with a causal attention mask ([`enable_causal_attention`]: each position attends to itself and earlier positions, the
ViT class and register tokens included), and what its convolutions still see ahead (Whisper's two convolutions reach
one mel frame into the next audio token, [`media_lookahead`]) is left out of the target. Finetuning runs the same
tower bidirectionally, as AIM's downstream use does.

This is a "Hub file": it imports only torch, transformers and the standard library.
"""

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from .configuration_multimodal_gpt import _pair, audio_tower_convolutions

# The keyword argument that asks a tower (and, through it, each of its layers) for causal attention.
CAUSAL_ATTENTION_KWARG = "media_causal_attention"
# Per-element target normalisation (MAE's): a flat patch or a silent stretch has no variance to divide by.
TARGET_NORM_EPS = 1e-6


class MediaPredictionHead(nn.Module):
    """Maps a GPT-2 state to the next media element's target: Linear -> GELU -> Linear (AIM's MLP head, so that the
    trunk's features need not be the targets themselves)."""

    def __init__(self, *, hidden_size: int, target_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.act = nn.GELU()
        self.out = nn.Linear(hidden_size, target_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.dense(hidden_states)))


# ----- targets ---------------------------------------------------------------------------------------------------


def normalized(targets: torch.Tensor) -> torch.Tensor:
    """Each target vector (last dimension) to zero mean and unit variance."""
    mean = targets.mean(-1, keepdim=True)
    variance = targets.var(-1, keepdim=True, unbiased=False)
    return (targets - mean) / torch.sqrt(variance + TARGET_NORM_EPS)


def patch_targets(pixel_values: torch.Tensor, patch_size: tuple[int, int]) -> torch.Tensor:
    """The normalised pixels of every patch, in the ViT's raster order.

    pixel_values: (num_images, channels, height, width). Returns (num_images, num_patches, channels * ph * pw)."""
    patch_height, patch_width = patch_size
    patches = pixel_values.float().unfold(2, patch_height, patch_height).unfold(3, patch_width, patch_width)
    patches = patches.permute(0, 2, 3, 1, 4, 5)  # (N, rows, columns, C, ph, pw)
    return normalized(patches.reshape(patches.shape[0], patches.shape[1] * patches.shape[2], -1))


def frame_targets(input_features: torch.Tensor, *, frames_per_token: int, lookahead: int) -> torch.Tensor:
    """The normalised log-mel frames of every audio token, without the first `lookahead` frames of each, which the
    tower's convolutions already showed the token before.

    input_features: (num_clips, num_mel_bins, frames). Returns (num_clips, ceil(frames / frames_per_token),
    (frames_per_token - lookahead) * num_mel_bins)."""
    num_clips, num_mel_bins, frames = input_features.shape
    padded = F.pad(input_features.float(), (0, -frames % frames_per_token))
    chunks = padded.reshape(num_clips, num_mel_bins, -1, frames_per_token).permute(0, 2, 3, 1)  # (N, L, S, mel)
    return normalized(chunks[:, :, lookahead:].flatten(2))


def media_lookahead(convolutions: list[list[int]], frame_reduction: int) -> tuple[int, int]:
    """How many tower input units (mel frames) one audio token spans, and how many of the next token's units its
    receptive field reaches: `(frames_per_token, lookahead)`.

    `convolutions` are `[kernel, stride, padding]` over time (`audio_tower_convolutions`); output frame o of one
    sees inputs o * stride - padding ... o * stride - padding + kernel - 1. Whisper (k3 s1 p1, k3 s2 p1) with a
    reduction of 4 spans 8 mel frames and reaches 1 into the next token."""
    frames_per_token = frame_reduction * math.prod(stride for _, stride, _ in convolutions)
    right_edge = frame_reduction - 1  # the last tower frame of token 0
    for kernel, stride, padding in reversed(convolutions):
        right_edge = right_edge * stride - padding + kernel - 1
    return frames_per_token, max(0, right_edge - frames_per_token + 1)


# ----- the loss --------------------------------------------------------------------------------------------------


def squared_error(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per element (rows): the squared error averaged over the target's dimensions."""
    return (predictions.float() - targets.to(predictions.device)).pow(2).mean(-1)


def media_prediction_sum(
    hidden_states: torch.Tensor,
    predicted_from: torch.Tensor,
    target_positions: torch.Tensor,
    placeholder_mask: torch.Tensor,
    element_targets: torch.Tensor,
    element_mask: torch.Tensor,
    head: nn.Module,
    error: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = squared_error,
) -> torch.Tensor:
    """The summed `error` (per element: [`squared_error`]) of next-element predictions.

    hidden_states: (B, T, D) GPT-2's last states; predicted_from: (B, T) positions whose next position holds a media
    target; target_positions: (B, T) those targets (placeholder positions); placeholder_mask: (B, T) every
    placeholder of the modality, in the order its tokens were spliced; element_targets: (N, L, dim) the target of
    every media element; element_mask: (N, L) the elements that were spliced. Runs the head even with no target, so
    that its parameters stay in the graph (DDP without `find_unused_parameters`)."""
    spliced_targets = element_targets[element_mask.to(element_targets.device)]  # (placeholders, dim), in splice order
    targets = spliced_targets[target_positions[placeholder_mask]]  # (targets, dim), row-major like the predictions
    return error(head(hidden_states[predicted_from]), targets).sum()


def label_smoothing_sum(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """The uniform-target part of label smoothing, summed over the labelled positions: the mean over the vocabulary
    of -log p. `(1 - eps) * cross_entropy + eps * this / num_items` is `cross_entropy(label_smoothing=eps)`.

    logits: (num_positions, vocab_size); labels: (num_positions,), `ignore_index` where unlabelled."""
    labelled = labels != ignore_index
    return -torch.log_softmax(logits[labelled].float(), dim=-1).mean(-1).sum()


# ----- causal attention in a tower -------------------------------------------------------------------------------


def enable_causal_attention(tower: nn.Module) -> None:
    """Let `tower(..., media_causal_attention=True)` run every transformer layer of the tower with a causal mask.

    Transformers' layers take `(hidden_states, attention_mask, **kwargs)`, and towers pass their keyword arguments
    down to them; a pre-hook on each layer turns the keyword into a causal mask merged with the layer's own. The
    hook runs outside the layer's gradient checkpointing (Transformers checkpoints `forward`), so a recomputation
    sees the same mask. Calls without the keyword are unchanged."""
    layers = [module for module in tower.modules() if isinstance(module, GradientCheckpointingLayer)]
    if not layers:
        raise ValueError(f"{type(tower).__name__} has no transformer layers to make causal.")
    for layer in layers:
        if not getattr(layer, "_media_causal_hook", False):
            layer.register_forward_pre_hook(_causal_attention_hook, with_kwargs=True)
            layer._media_causal_hook = True


def _causal_attention_hook(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    if not kwargs.pop(CAUSAL_ATTENTION_KWARG, False):
        return args, kwargs
    hidden_states = args[0] if args else kwargs["hidden_states"]
    length = hidden_states.shape[1]
    future = torch.ones(length, length, dtype=torch.bool, device=hidden_states.device).triu(1)  # (T, T)
    if len(args) > 1:
        args = (args[0], _with_causal(args[1], future, hidden_states.dtype), *args[2:])
    else:
        kwargs["attention_mask"] = _with_causal(kwargs.get("attention_mask"), future, hidden_states.dtype)
    return args, kwargs


def _with_causal(mask: torch.Tensor | None, future: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`mask` (None, boolean where attended, or additive (B, 1, T, T)) with every future position masked too."""
    if mask is None:
        additive = torch.zeros(future.shape, dtype=dtype, device=future.device)
        return additive.masked_fill(future, torch.finfo(dtype).min)[None, None]  # (1, 1, T, T)
    if mask.dtype == torch.bool:
        return mask & ~future
    return mask.masked_fill(future, torch.finfo(mask.dtype).min)


# ----- the losses of MultimodalGPTForConditionalGeneration -----------------------------------------------------

# Per modality: (predicted_from, targets, placeholders), each (B, T) bool.
MediaTargets = dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
PLACEHOLDER_NAMES = {"vision": "image", "audio": "audio"}


class MultimodalGPTObjectivesMixin:
    """The loss of [`MultimodalGPTForConditionalGeneration`]: GPT-2's next-token loss through `self.loss_function`
    (label-smoothed by `config.label_smoothing`), plus `config.media_loss_weight` times the next-element error of
    each modality, divided together by the number of items (text tokens and media elements, as the `Trainer` counts
    them in `num_items_in_batch`, so that gradient accumulation changes nothing)."""

    def _build_media_prediction_heads(self) -> nn.ModuleDict:
        hidden_size = self.config.text_config.hidden_size
        return nn.ModuleDict(
            {
                modality: MediaPredictionHead(hidden_size=hidden_size, target_size=self._media_target_size(modality))
                for modality in self.config.media_prediction_modalities
            }
        )

    def _media_target_size(self, modality: str) -> int:
        """The size of one media element's target: a patch's pixels, or an audio token's log-mel frames (those its
        predecessor's receptive field has not seen)."""
        if modality == "vision":
            vision_config = self.config.vision_config
            return getattr(vision_config, "num_channels", 3) * math.prod(_pair(vision_config.patch_size))
        frames_per_token, lookahead = self._audio_token_span()
        return self.config.audio_config.num_mel_bins * (frames_per_token - lookahead)

    def _audio_token_span(self) -> tuple[int, int]:
        convolutions = audio_tower_convolutions(self.config.audio_config)
        return media_lookahead(convolutions, self.config.audio_frame_reduction)

    def _causal_towers(self, media_targets: MediaTargets) -> tuple[str, ...]:
        """The modalities whose tower must run causally: those with a media target in the batch."""
        return tuple(modality for modality, (_, targets, _) in media_targets.items() if bool(targets.any()))

    def _media_error(self, modality: str, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per element: how far the head's predictions are from the targets (regression: [`squared_error`])."""
        return squared_error(predictions, targets)

    def _media_target_positions(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, labels: torch.Tensor | None
    ) -> MediaTargets:
        """Per modality with media prediction: the positions whose next element is a target, the targets (media
        positions labelled with their placeholder id; never the first position, which nothing precedes) and every
        placeholder of the modality."""
        if labels is None or not self.media_prediction_heads:
            return {}
        placeholder_masks = self.model.get_placeholder_masks(input_ids, inputs_embeds)
        positions = {}
        for modality in self.media_prediction_heads:
            name = PLACEHOLDER_NAMES[modality]
            placeholders = placeholder_masks[name]
            targets = labels == getattr(self.config, f"{name}_token_id")
            if bool((targets & ~placeholders).any()):
                raise ValueError(
                    f"labels hold the <{name}> id at positions whose input is not an <{name}> placeholder: a media "
                    "target must be a media position (label it -100, or with its placeholder id only where it is one)."
                )
            targets[:, 0] = False
            positions[modality] = (F.pad(targets, (0, 1))[:, 1:], targets, placeholders)
        return positions

    def _loss(
        self,
        outputs: Any,
        labels: torch.Tensor | None,
        logits_to_keep: int | torch.Tensor,
        media_targets: MediaTargets,
        media: dict[str, torch.Tensor | None],
        **kwargs: Any,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The loss (`None` without labels) and the logits (`None` in training with `labelled_logits_only`).
        `media`: the raw `pixel_values` / `input_features` the targets come from, by modality."""
        hidden_states = outputs.last_hidden_state
        if media_targets:
            media_positions = torch.stack([targets for _, targets, _ in media_targets.values()]).any(0)
            labels = labels.masked_fill(media_positions, -100)
            if kwargs.get("num_items_in_batch") is None:  # every text token and media element of this batch
                media_items = sum(targets.sum() for _, targets, _ in media_targets.values())
                kwargs["num_items_in_batch"] = media_items + (labels[:, 1:] != -100).sum()
        loss, logits = self._text_loss(hidden_states, labels, logits_to_keep, **kwargs)
        for modality, positions in media_targets.items():
            media_sum = self._media_prediction_sum(modality, hidden_states, positions, outputs, media[modality])
            loss = loss + self.config.media_loss_weights()[modality] * media_sum / kwargs["num_items_in_batch"]
        return loss, logits

    def _text_loss(
        self, hidden_states: torch.Tensor, labels: torch.Tensor | None, logits_to_keep: int | torch.Tensor, **kwargs
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        vocab_size = self.config.text_config.vocab_size
        if labels is not None and self.training and self.config.labelled_logits_only:
            # The 50k-way head dominates a training step: compute it only where a label is (same loss).
            shift_labels = F.pad(labels, (0, 1), value=-100)[:, 1:]
            labelled = shift_labels != -100
            scored_logits = self.lm_head(hidden_states[labelled])
            shift_labels = shift_labels[labelled]
            loss = self.loss_function(
                logits=scored_logits, labels=None, shift_labels=shift_labels, vocab_size=vocab_size, **kwargs
            )
            logits = None
        else:
            slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
            logits = self.lm_head(hidden_states[:, slice_indices, :])
            if labels is None:
                return None, logits
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=vocab_size, **kwargs)
            scored_logits, shift_labels = logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten()
        smoothing = self.config.label_smoothing
        if smoothing > 0:
            num_items = kwargs.get("num_items_in_batch")
            num_items = (shift_labels != -100).sum() if num_items is None else num_items
            uniform = label_smoothing_sum(scored_logits, shift_labels) / num_items
            loss = (1 - smoothing) * loss + smoothing * uniform
        return loss, logits

    def _media_prediction_sum(
        self,
        modality: str,
        hidden_states: torch.Tensor,
        positions: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        outputs: Any,
        media: torch.Tensor | None,
    ) -> torch.Tensor:
        """The summed next-element error of `modality` (0 with the head still in the graph when no media came)."""
        head = self.media_prediction_heads[modality]
        encoded = outputs.image_outputs if modality == "vision" else outputs.audio_outputs
        if media is None or encoded is None:
            return head(hidden_states[:, :0]).sum()
        if modality == "vision":
            element_targets = patch_targets(media, _pair(self.config.vision_config.patch_size))
        else:
            frames_per_token, lookahead = self._audio_token_span()
            element_targets = frame_targets(media, frames_per_token=frames_per_token, lookahead=lookahead)
        element_mask = encoded.pooler_output_mask
        num_tokens = element_mask.shape[1]  # the tower's frame count may round differently from the mel frames
        element_targets = F.pad(element_targets, (0, 0, 0, max(0, num_tokens - element_targets.shape[1])))
        error = partial(self._media_error, modality)
        return media_prediction_sum(
            hidden_states, *positions, element_targets[:, :num_tokens], element_mask, head, error
        )


__all__ = [
    "CAUSAL_ATTENTION_KWARG",
    "MediaPredictionHead",
    "MultimodalGPTObjectivesMixin",
    "enable_causal_attention",
    "frame_targets",
    "label_smoothing_sum",
    "media_lookahead",
    "media_prediction_sum",
    "patch_targets",
    "squared_error",
]
