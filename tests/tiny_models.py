"""Tiny configurations for the test suite (transformers' model-tester style: hidden 32, 2 layers, vocab 99)."""

import torch
from transformers import (
    CLIPVisionConfig,
    ConvNextConfig,
    GPT2Config,
    HubertConfig,
    ResNetConfig,
    SiglipVisionConfig,
    ViTConfig,
    Wav2Vec2Config,
    WhisperConfig,
)

from multimodal_gpt import MultimodalGPTConfig, MultimodalGPTForConditionalGeneration

VOCAB_SIZE = 99
IMAGE_TOKEN_ID = 97
AUDIO_TOKEN_ID = 98
EOS_TOKEN_ID = 0
IMAGE_SIZE = 8
PATCH_SIZE = 2
NUM_MEL_BINS = 8
FUSIONS = ("linear", "mlp", "resampler", "cross_attention")

_TOWER_SIZES = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2)
_NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def text_config(**overrides) -> GPT2Config:
    kwargs = dict(
        vocab_size=VOCAB_SIZE,
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=EOS_TOKEN_ID,
        eos_token_id=EOS_TOKEN_ID,
        pad_token_id=EOS_TOKEN_ID,
    )
    return GPT2Config(**(kwargs | overrides))


def vision_config(kind: str = "clip"):
    image = dict(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
    if kind == "clip":
        return CLIPVisionConfig(**_TOWER_SIZES, **image, attention_dropout=0.0)
    if kind == "siglip":
        return SiglipVisionConfig(**_TOWER_SIZES, **image, attention_dropout=0.0)
    if kind == "vit":
        return ViTConfig(**_TOWER_SIZES, **image, **_NO_DROPOUT)
    # convolutional towers: a 4 x 4 last feature map of width 32 (16 features, as the patch towers' 4 x 4 patches)
    if kind == "resnet":  # 32 px: stem 7x7 / 2 and max-pool / 2 (8 x 8), a stage, a stage / 2
        return ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic", image_size=32)
    if kind == "convnext":  # 16 px: 2 px patches (8 x 8), a stage, a stage / 2
        return ConvNextConfig(patch_size=2, num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], image_size=16)
    raise ValueError(kind)


def audio_config(kind: str = "wav2vec2"):
    if kind == "whisper":
        return WhisperConfig(
            d_model=32,
            encoder_layers=2,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=37,
            decoder_ffn_dim=37,
            num_mel_bins=NUM_MEL_BINS,
            max_source_positions=50,  # 100 mel frames: a 1 s window
            max_target_positions=32,
            vocab_size=VOCAB_SIZE,
            pad_token_id=EOS_TOKEN_ID,
            bos_token_id=EOS_TOKEN_ID,
            eos_token_id=EOS_TOKEN_ID,
            decoder_start_token_id=EOS_TOKEN_ID,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
        )
    conv = dict(
        conv_dim=(16, 16),
        conv_kernel=(8, 8),
        conv_stride=(4, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        layerdrop=0.0,
        mask_time_prob=0.0,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    if kind == "wav2vec2":
        return Wav2Vec2Config(**_TOWER_SIZES, **conv)
    if kind == "hubert":
        return HubertConfig(**_TOWER_SIZES, **conv)
    raise ValueError(kind)


def tiny_config(vision: str | None = "clip", audio: str | None = "wav2vec2", fusion="mlp", **overrides):
    kwargs = dict(
        text_config=text_config(),
        vision_config=vision_config(vision) if vision else None,
        audio_config=audio_config(audio) if audio else None,
        fusion=fusion,
        image_token_id=IMAGE_TOKEN_ID if vision else None,
        audio_token_id=AUDIO_TOKEN_ID if audio else None,
        resampler_num_queries=4,
        resampler_num_heads=2,
        audio_frame_reduction=2,
    )
    return MultimodalGPTConfig(**(kwargs | overrides))


def tiny_model(seed: int = 0, **config_kwargs) -> MultimodalGPTForConditionalGeneration:
    torch.manual_seed(seed)
    return MultimodalGPTForConditionalGeneration(tiny_config(**config_kwargs)).eval()


def open_gates(model: MultimodalGPTForConditionalGeneration, value: float = 0.5) -> None:
    """Cross-attention gates start closed (the identity); open them so that media change the output."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("_gate"):
                parameter.fill_(value)


def audio_input(model, num_samples: int | list[int] = 1600, seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded audio inputs for the model's tower: waveforms (wav2vec2/HuBERT) or mel frames (Whisper), one
    clip per entry of `num_samples` (lengths in samples, or in mel frames for Whisper)."""
    lengths = [num_samples] if isinstance(num_samples, int) else num_samples
    generator = torch.Generator().manual_seed(seed)
    if model.config.audio_config.model_type == "whisper":
        frames = 2 * model.config.audio_config.max_source_positions  # Whisper's fixed input length
        features = torch.randn(len(lengths), NUM_MEL_BINS, frames, generator=generator)
        mask = (torch.arange(frames)[None, :] < torch.tensor(lengths)[:, None]).long()
        return {"input_features": features * mask[:, None, :], "input_features_mask": mask}
    longest = max(lengths)
    values = torch.randn(len(lengths), longest, generator=generator)
    mask = (torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]).long()
    return {"input_values": values * mask, "input_values_mask": mask}


def image_input(num_images: int = 1, seed: int = 0, size: int = IMAGE_SIZE) -> torch.Tensor:
    return torch.randn(num_images, 3, size, size, generator=torch.Generator().manual_seed(seed))


def tiny_processor_and_model(seed: int = 0, **config_kwargs):
    """A tiny model and its processor, built from scratch the way a user without pretrained parts would."""
    from multimodal_gpt import MultimodalGPTProcessor, add_multimodal_tokens

    tokenizer = byte_level_gpt2_tokenizer()
    ids = add_multimodal_tokens(tokenizer)
    config_kwargs = (
        dict(
            image_token_id=ids["image_token_id"],
            audio_token_id=ids["audio_token_id"],
            text_config=text_config(vocab_size=len(tokenizer), pad_token_id=ids["pad_token_id"]),
        )
        | config_kwargs
    )
    config = tiny_config(**config_kwargs)
    torch.manual_seed(seed)
    model = MultimodalGPTForConditionalGeneration(config).eval()
    return MultimodalGPTProcessor.from_config(config, tokenizer), model


def byte_level_gpt2_tokenizer():
    """A GPT-2 tokenizer with GPT-2's byte alphabet and no merges: like the real one, it has `<|endoftext|>` and no
    pad, `<image>` or `<audio>` token."""
    from transformers import GPT2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {"<|endoftext|>": 0}
    for symbol in bytes_to_unicode().values():
        vocab[symbol] = len(vocab)
    return GPT2Tokenizer(
        vocab=vocab, merges=[], unk_token="<|endoftext|>", bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )


def save_pretrained_parts(folder) -> dict[str, str]:
    """Separately "pretrained" tiny checkpoints in local folders, as users would get them from the Hub: a GPT-2 with
    its tokenizer, a CLIP dual encoder, a Whisper encoder-decoder and a wav2vec2 model."""
    from pathlib import Path

    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        GPT2LMHeadModel,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    folder = Path(folder)
    tokenizer = byte_level_gpt2_tokenizer()
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(text_config(vocab_size=len(tokenizer), pad_token_id=None))
    gpt2.save_pretrained(folder / "gpt2")
    tokenizer.save_pretrained(folder / "gpt2")
    clip_vision = vision_config("clip").to_dict()
    clip = CLIPModel(
        CLIPConfig(
            vision_config=clip_vision,
            text_config=dict(_TOWER_SIZES, vocab_size=VOCAB_SIZE, max_position_embeddings=16),
            projection_dim=16,
        )
    )
    clip.save_pretrained(folder / "clip")
    CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size=IMAGE_SIZE).save_pretrained(folder / "clip")
    WhisperForConditionalGeneration(audio_config("whisper")).save_pretrained(folder / "whisper")
    WhisperFeatureExtractor(feature_size=NUM_MEL_BINS, chunk_length=1).save_pretrained(folder / "whisper")
    Wav2Vec2Model(audio_config("wav2vec2")).save_pretrained(folder / "wav2vec2")
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(folder / "wav2vec2")
    return {name: str(folder / name) for name in ("gpt2", "clip", "whisper", "wav2vec2")}
