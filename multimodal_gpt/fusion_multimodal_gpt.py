"""The fusion blocks: how encoder features reach GPT-2.

Leaf blocks take explicit keyword-only sizes, so each can be built and tested alone (flamingo-pytorch's style); the
model wires them from the config. This is a "Hub file": it imports only torch, transformers and the standard library.
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.models.gpt2.configuration_gpt2 import GPT2Config
from transformers.models.gpt2.modeling_gpt2 import GPT2Block
from transformers.utils import is_torchdynamo_compiling


class MultimodalProjector(nn.Module):
    """Maps encoder features to GPT-2's width: one `Linear`, or LLaVA-1.5's `Linear -> act -> Linear`."""

    def __init__(self, *, in_features: int, out_features: int, kind: str = "mlp", hidden_act: str = "gelu"):
        super().__init__()
        if kind == "linear":
            self.layers = nn.Sequential(nn.Linear(in_features, out_features))
        elif kind == "mlp":
            self.layers = nn.Sequential(
                nn.Linear(in_features, out_features), ACT2FN[hidden_act], nn.Linear(out_features, out_features)
            )
        else:
            raise ValueError(f"MultimodalProjector kind must be 'linear' or 'mlp', got '{kind}'.")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class AudioFrameReducer(nn.Module):
    """Cuts the frame rate of audio features by `factor` (50 Hz encoders -> 12.5 Hz with the default 4).

    `"stack"` concatenates `factor` consecutive frames (the width grows `factor`-fold, no information lost), `"mean"`
    averages the valid ones. The last group is zero-padded; a reduced frame is valid when any of its frames is.
    """

    def __init__(self, *, factor: int, mode: str = "stack"):
        super().__init__()
        if mode not in ("stack", "mean"):
            raise ValueError(f"AudioFrameReducer mode must be 'stack' or 'mean', got '{mode}'.")
        self.factor = factor
        self.mode = mode

    def output_features(self, in_features: int) -> int:
        return in_features * self.factor if self.mode == "stack" else in_features

    def forward(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames: (N, T, D), frame_mask: (N, T) bool -> (N, ceil(T / factor), D') and its mask."""
        if self.factor == 1:
            return frames, frame_mask
        num_clips, num_frames, width = frames.shape
        pad = -num_frames % self.factor
        frames = F.pad(frames * frame_mask.unsqueeze(-1), (0, 0, 0, pad))  # zero out padding frames
        frame_mask = F.pad(frame_mask, (0, pad))
        groups = frames.view(num_clips, -1, self.factor, width)  # (N, T', factor, D)
        group_mask = frame_mask.view(num_clips, -1, self.factor)
        if self.mode == "stack":
            reduced = groups.flatten(2)
        else:
            counts = group_mask.sum(-1, keepdim=True).clamp(min=1)
            reduced = groups.sum(2) / counts
        return reduced, group_mask.any(-1)


class VisionTokenMerger(nn.Module):
    """Merges each `factor` x `factor` block of neighbouring patches into one feature: fewer image tokens for the
    same picture (InternVL's pixel shuffle, LLaVA-OneVision's pooling).

    `"stack"` concatenates the block's features in row-major order (space-to-depth: the width grows `factor**2`-fold,
    nothing is lost), `"mean"` averages the block's patches. A grid that `factor` does not divide (7 x 7 and 2) is
    padded at the bottom and right: zero features for `"stack"`, left out of the average for `"mean"`. Shapes come
    from the grid alone, never from the data, so the model still exports and compiles.
    """

    def __init__(self, *, factor: int, mode: str = "stack"):
        super().__init__()
        if mode not in ("stack", "mean"):
            raise ValueError(f"VisionTokenMerger mode must be 'stack' or 'mean', got '{mode}'.")
        self.factor = factor
        self.mode = mode

    def output_features(self, in_features: int) -> int:
        return in_features * self.factor**2 if self.mode == "stack" else in_features

    def forward(self, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """patches: (N, rows * columns, D) in row-major order, grid: (rows, columns) -> (N, ceil(rows / factor) *
        ceil(columns / factor), D')."""
        if self.factor == 1:
            return patches
        num_images, _, width = patches.shape
        rows, columns = grid
        factor = self.factor
        pad_rows, pad_columns = -rows % factor, -columns % factor
        patches = F.pad(patches.view(num_images, rows, columns, width), (0, 0, 0, pad_columns, 0, pad_rows))
        block_rows, block_columns = (rows + pad_rows) // factor, (columns + pad_columns) // factor
        blocks = patches.view(num_images, block_rows, factor, block_columns, factor, width).permute(0, 1, 3, 2, 4, 5)
        blocks = blocks.reshape(num_images, block_rows * block_columns, factor * factor, width)  # (N, T', f*f, D)
        if self.mode == "stack":
            return blocks.flatten(2)
        real = F.pad(patches.new_ones(rows, columns), (0, pad_columns, 0, pad_rows))
        counts = real.view(block_rows, factor, block_columns, factor).sum((1, 3)).reshape(1, -1, 1)
        return blocks.sum(2) / counts


def masked_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_mask: torch.Tensor
) -> torch.Tensor:
    """SDPA of `query` (N, H, Q, d) over `key` / `value` (N, H, K, d), ignoring keys where `key_mask` is False.
    `key_mask`: (N, K), or any shape that broadcasts to (N, H, Q, K) with K last. A row with no valid key (a sample
    without media) would give NaN, so it attends everywhere and its caller zeroes the result."""
    attend = key_mask | ~key_mask.any(-1, keepdim=True)
    if attend.ndim == 2:
        attend = attend[:, None, None, :]  # every query sees the same valid keys
    return F.scaled_dot_product_attention(query, key, value, attn_mask=attend)


class MaskedCrossAttention(nn.Module):
    """Multi-head attention from `queries` (N, Q, D) to `context` (N, K, Dc), ignoring context positions where
    `context_mask` (N, K) is False. Uses `F.scaled_dot_product_attention` (SDPA)."""

    def __init__(self, *, dim: int, context_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.kv_proj = nn.Linear(context_dim, 2 * dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, queries: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        num_items, num_queries, dim = queries.shape
        head_dim = dim // self.num_heads
        query = self.q_proj(queries).view(num_items, num_queries, self.num_heads, head_dim).transpose(1, 2)
        key, value = self.kv_proj(context).view(num_items, -1, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        attended = masked_attention(query, key, value, context_mask)
        return self.out_proj(attended.transpose(1, 2).reshape(num_items, num_queries, dim))


class FeedForward(nn.Module):
    def __init__(self, *, dim: int, mult: int = 4):
        super().__init__()
        self.layers = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * mult, bias=False),
            nn.GELU(),
            nn.Linear(dim * mult, dim, bias=False),
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.layers(hidden_states)


class PerceiverResampler(nn.Module):
    """Flamingo's Perceiver resampler: `num_queries` learned latents cross-attend to the media features (and to
    themselves), so every medium becomes exactly `num_queries` tokens, whatever its length.

    Input (N, T, in_features) with mask (N, T); output (N, num_queries, dim).
    """

    def __init__(self, *, in_features: int, dim: int, depth: int = 2, num_heads: int = 8, num_queries: int = 16):
        super().__init__()
        self.input_proj = nn.Linear(in_features, dim)
        self.latents = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.layers = nn.ModuleList(
            nn.ModuleDict(
                {
                    "media_norm": nn.LayerNorm(dim),
                    "latent_norm": nn.LayerNorm(dim),
                    "attention": MaskedCrossAttention(dim=dim, context_dim=dim, num_heads=num_heads),
                    "feed_forward": FeedForward(dim=dim),
                }
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor, feature_mask: torch.Tensor) -> torch.Tensor:
        media = self.input_proj(features)
        latents = self.latents.unsqueeze(0).expand(media.shape[0], -1, -1)
        latent_mask = feature_mask.new_ones(latents.shape[:2])
        for layer in self.layers:
            normed_latents = layer["latent_norm"](latents)
            # Flamingo: keys and values are the media *and* the latents
            context = torch.cat([layer["media_norm"](media), normed_latents], dim=1)
            context_mask = torch.cat([feature_mask, latent_mask], dim=1)
            latents = latents + layer["attention"](normed_latents, context, context_mask)
            latents = latents + layer["feed_forward"](latents)
        return self.norm(latents)


class CrossAttentionKeyValues(nn.Module):
    """The media keys and values of every gated cross-attention layer, in one projection.

    The media do not change while the text grows, so their keys and values are computed once: once per training
    step (outside GPT-2's blocks, so that gradient checkpointing does not recompute them) and once per generation
    (kept in the cache, `MultimodalGPTCache`), where each layer would otherwise project them at every step.

    Input (B, M, dim); output (B, num_layers, 2, num_heads, M, dim // num_heads): keys at index 0, values at 1.
    """

    def __init__(self, *, dim: int, num_layers: int, num_heads: int):
        super().__init__()
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.proj = nn.Linear(dim, num_layers * 2 * dim, bias=False)

    def forward(self, media: torch.Tensor) -> torch.Tensor:
        batch_size, num_media_tokens, dim = media.shape
        key_values = self.proj(media).view(
            batch_size, num_media_tokens, self.num_layers, 2, self.num_heads, dim // self.num_heads
        )
        return key_values.permute(0, 2, 3, 4, 1, 5)


class GatedCrossAttentionLayer(nn.Module):
    """Flamingo's GATED XATTN-DENSE: text attends to media, then a feed-forward, each through a tanh gate that
    starts at 0, so a freshly built layer is the identity and GPT-2 starts out exactly as pretrained.

    text: (B, T, dim); media keys and values: (B, num_heads, M, dim // num_heads), projected by
    `CrossAttentionKeyValues`; media_mask: (B, 1, 1, M), or (B, 1, T, M) when each text token has its own media
    (packed rows of several samples). Text tokens with no valid media are left unchanged. `feed_forward_mult=0`
    leaves the feed-forward out: a cheaper block, the cross-attention alone.
    """

    def __init__(self, *, dim: int, num_heads: int, feed_forward_mult: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim)
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)
        self.attention_gate = nn.Parameter(torch.zeros(1))
        if feed_forward_mult > 0:
            self.feed_forward = FeedForward(dim=dim, mult=feed_forward_mult)
            self.feed_forward_gate = nn.Parameter(torch.zeros(1))
        else:
            self.feed_forward = self.feed_forward_gate = None

    def forward(
        self, text: torch.Tensor, media_keys: torch.Tensor, media_values: torch.Tensor, media_mask: torch.Tensor
    ) -> torch.Tensor:
        batch_size, length, dim = text.shape
        has_media = media_mask.any(-1).flatten(1).unsqueeze(-1).to(text.dtype)  # (B, 1, 1) or (B, T, 1)
        query = self.q_proj(self.norm(text)).view(batch_size, length, self.num_heads, -1).transpose(1, 2)
        attended = masked_attention(query, media_keys.to(query.dtype), media_values.to(query.dtype), media_mask)
        attended = self.out_proj(attended.transpose(1, 2).reshape(batch_size, length, dim))
        text = text + attended * self.attention_gate.tanh() * has_media
        if self.feed_forward is None:
            return text
        return text + self.feed_forward(text) * self.feed_forward_gate.tanh() * has_media


class MultimodalGPT2Block(GPT2Block):
    """A GPT-2 block, optionally with a gated cross-attention to the media in front of it (Flamingo). Its GPT-2
    weights keep GPT-2's names, so a pretrained GPT-2 loads into it unchanged.

    The media keys and values of all gated layers come in GPT-2's `encoder_hidden_states` slot, which `GPT2Model`
    passes positionally, so reentrant gradient checkpointing sees them as inputs (a tensor hidden in keyword
    arguments would be backpropagated through once per layer); the media mask comes in `encoder_attention_mask`.
    """

    def __init__(
        self,
        config: GPT2Config,
        layer_idx: int,
        *,
        cross_attention_index: int | None = None,
        cross_attention_heads: int | None = None,
        cross_attention_feed_forward_mult: int = 4,
    ):
        super().__init__(config, layer_idx=layer_idx)
        self.cross_attention_index = cross_attention_index
        self.gated_cross_attention = (
            GatedCrossAttentionLayer(
                dim=config.hidden_size,
                num_heads=cross_attention_heads,
                feed_forward_mult=cross_attention_feed_forward_mult,
            )
            if cross_attention_index is not None
            else None
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        cache: Any = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """`encoder_hidden_states`: the media keys and values (B, num_cross_attention_layers, 2, heads, M, d) of
        `CrossAttentionKeyValues`; `encoder_attention_mask`: the media mask (B, 1, 1, M)."""
        if self.gated_cross_attention is not None and encoder_hidden_states is not None:
            media_keys, media_values = encoder_hidden_states[:, self.cross_attention_index].unbind(1)
            hidden_states = self.gated_cross_attention(hidden_states, media_keys, media_values, encoder_attention_mask)
        return super().forward(hidden_states, cache, attention_mask, **kwargs)


# ----- where media tokens go: static shapes throughout, so that torch.export and torch.compile trace the model -----


def splice_media_tokens(
    inputs_embeds: torch.Tensor,
    placeholder_mask: torch.Tensor,
    media_tokens: torch.Tensor,
    media_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Write the valid media tokens, in order, over the placeholder positions of `inputs_embeds` (LLaVA's merge).

    inputs_embeds: (B, T, D); placeholder_mask: (B, T) bool; media_tokens: (N, L, D) with media_mask (N, L), `None`
    when all are valid. The valid tokens are moved to the front by a stable sort rather than picked by a boolean
    index, whose output size would depend on the data. The caller checks that the counts match."""
    tokens = media_tokens.reshape(-1, media_tokens.shape[-1])
    if media_mask is not None:
        order = torch.argsort((~media_mask.reshape(-1)).to(torch.int32), stable=True)
        tokens = tokens[order]
    return inputs_embeds.masked_scatter(placeholder_mask.unsqueeze(-1), tokens.to(inputs_embeds.dtype))


def media_per_sample(
    marker_mask: torch.Tensor,
    media_tokens: torch.Tensor,
    media_mask: torch.Tensor,
    segment_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Group flat media (one row per medium, in marker order) by the sample whose marker token they stand for.

    marker_mask: (B, T) bool with one marker per medium; media_tokens: (N, L, D); media_mask: (N, L); segment_ids
    (B, T), optional: which packed sample of its row each position belongs to. Returns (B, S * L, D), its mask, and
    (with `segment_ids`) the packed sample of each of the S * L positions, S being the most media any row has. A
    traced graph (torch.export / torch.compile) cannot size S from the data and uses its bound N: more padding, the
    same result."""
    batch_size, length = marker_mask.shape
    num_media = media_tokens.shape[0]
    positions = torch.argsort((~marker_mask.flatten()).to(torch.int32), stable=True)[:num_media]
    owners = positions // length  # (N,) sample of each medium, ascending
    slots = torch.arange(num_media, device=owners.device) - torch.searchsorted(owners, owners)
    num_slots = num_media if is_torchdynamo_compiling() else int(slots.max()) + 1
    grouped = media_tokens.new_zeros(batch_size, num_slots, *media_tokens.shape[1:])
    grouped_mask = media_mask.new_zeros(batch_size, num_slots, media_mask.shape[1])
    grouped = grouped.index_put((owners, slots), media_tokens)
    grouped_mask = grouped_mask.index_put((owners, slots), media_mask)
    grouped_segments = None
    if segment_ids is not None:  # each medium belongs to the packed sample of its marker
        grouped_segments = segment_ids.new_full((batch_size, num_slots), -1)
        grouped_segments = grouped_segments.index_put((owners, slots), segment_ids.flatten()[positions])
        grouped_segments = grouped_segments.repeat_interleave(media_mask.shape[1], dim=1)
    return grouped.flatten(1, 2), grouped_mask.flatten(1, 2), grouped_segments


__all__ = [
    "AudioFrameReducer",
    "CrossAttentionKeyValues",
    "GatedCrossAttentionLayer",
    "MaskedCrossAttention",
    "MultimodalGPT2Block",
    "MultimodalProjector",
    "PerceiverResampler",
    "VisionTokenMerger",
    "media_per_sample",
    "splice_media_tokens",
]
