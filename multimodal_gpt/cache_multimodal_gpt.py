"""The cache of a model with gated cross-attention: GPT-2's self-attention cache plus the media every text token
attends to, projected once into the keys and values of every gated cross-attention layer.

Like an encoder-decoder's cross-attention cache (Whisper, VisionEncoderDecoder), it lets the decoding steps reuse the
media keys and values computed at prefill, and it carries the media with the text: a generation continued from a
returned cache sees the same media as one uninterrupted call. This is a "Hub file": it imports only torch,
transformers and the standard library.
"""

import torch
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache


class MultimodalGPTCache(EncoderDecoderCache):
    """GPT-2's `self_attention_cache` (dynamic or static), plus the cross-attention media of each sample.

    Args:
        self_attention_cache ([`Cache`]):
            GPT-2's keys and values, as any decoder-only model keeps them.
        media_key_values (`torch.Tensor` of shape `(batch_size, num_cross_attention_layers, 2, num_heads,
        num_media_tokens, head_dim)`, *optional*):
            The keys (index 0) and values (index 1) of the media, for every gated cross-attention layer in order.
        media_mask (`torch.BoolTensor` of shape `(batch_size, num_media_tokens)`, *optional*):
            Which media tokens are real (samples have different numbers of media, and some none).

    Beam search, assisted decoding and contrastive search reorder, crop, repeat or select rows of the cache: the
    media follow their rows. The (unused) `cross_attention_cache` of the parent class stays empty.
    """

    def __init__(
        self,
        self_attention_cache: Cache,
        media_key_values: torch.Tensor | None = None,
        media_mask: torch.BoolTensor | None = None,
    ):
        super().__init__(self_attention_cache, DynamicCache())
        self.media_key_values = media_key_values
        self.media_mask = media_mask

    @property
    def has_media(self) -> bool:
        return self.media_key_values is not None

    def set_media(self, media_key_values: torch.Tensor, media_mask: torch.BoolTensor) -> None:
        self.media_key_values = media_key_values
        self.media_mask = media_mask

    def reset(self) -> None:
        super().reset()
        self.media_key_values = self.media_mask = None

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        self._select_media_rows(beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        if self.has_media:
            self.media_key_values = self.media_key_values.repeat_interleave(repeats, dim=0)
            self.media_mask = self.media_mask.repeat_interleave(repeats, dim=0)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self._select_media_rows(indices)

    def _select_media_rows(self, rows: torch.Tensor) -> None:
        if self.has_media:
            self.media_key_values = self.media_key_values.index_select(0, rows.to(self.media_key_values.device))
            self.media_mask = self.media_mask.index_select(0, rows.to(self.media_mask.device))

    def __repr__(self) -> str:
        media = "none" if not self.has_media else f"{tuple(self.media_key_values.shape)}"
        return f"{type(self).__name__}(self_attention_cache={self.self_attention_cache}, media_key_values={media})"


__all__ = ["MultimodalGPTCache"]
