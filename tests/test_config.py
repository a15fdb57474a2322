"""MultimodalGPTConfig: validation with messages that say what to change, and the token counts it derives."""

import math

import pytest

from multimodal_gpt import MultimodalGPTConfig
from tests.tiny_models import audio_config, text_config, tiny_config, vision_config


def test_string_fusion_applies_to_every_tower():
    config = tiny_config(fusion="resampler")
    assert config.fusion == {"vision": "resampler", "audio": "resampler"}


def test_fusion_per_modality_and_round_trip():
    config = tiny_config(fusion={"vision": "linear", "audio": "cross_attention"})
    reloaded = MultimodalGPTConfig.from_dict(config.to_dict())
    assert reloaded.fusion == {"vision": "linear", "audio": "cross_attention"}
    assert reloaded.vision_config.model_type == "clip_vision_model"
    assert reloaded.audio_config.model_type == "wav2vec2"
    assert reloaded.cross_attention_layers == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(fusion="concat"), "Unknown fusion 'concat'"),
        (dict(fusion={"vision": "mlp", "audio": "mlp", "video": "mlp"}), "modalities are"),
        (dict(fusion={"vision": "mlp"}), "fusion has no entry for 'audio'"),
        (dict(audio=None, fusion={"vision": "mlp", "audio": "mlp"}), "has no audio_config"),
        (dict(image_token_id=None), "needs `image_token_id`"),
        (dict(image_token_id=500), "outside the text vocabulary"),
        (dict(image_token_id=98, audio_token_id=98), "must differ"),
        (dict(audio_frame_reduction=0), "audio_frame_reduction must be >= 1"),
        (dict(fusion="resampler", resampler_num_heads=5), "must divide GPT-2's hidden size"),
        (dict(fusion="cross_attention", cross_attention_num_heads=3), "must divide GPT-2's hidden size"),
    ],
)
def test_invalid_combinations_fail_in_the_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**kwargs)


def test_text_config_must_be_gpt2():
    with pytest.raises(ValueError, match="must be a GPT-2 config"):
        MultimodalGPTConfig(text_config={"model_type": "llama"})


def test_image_token_counts():
    assert tiny_config(fusion="mlp").num_image_tokens() == 16  # (8 / 2) ** 2 patches
    assert tiny_config(fusion="resampler").num_image_tokens() == 4
    assert tiny_config(fusion="cross_attention").num_image_tokens() == 1


def test_audio_token_counts_follow_the_clip_length():
    config = tiny_config(fusion="mlp")
    # wav2vec2 tower: two convolutions, kernel 8 stride 4, then frame reduction 2
    frames = ((1600 - 8) // 4 + 1 - 8) // 4 + 1
    assert config.audio_encoder_output_length(1600) == frames == 98
    assert config.num_audio_tokens(1600) == math.ceil(98 / 2)
    assert config.num_audio_tokens(3200) > config.num_audio_tokens(1600)
    whisper = MultimodalGPTConfig(
        text_config=text_config(), audio_config=audio_config("whisper"), audio_token_id=98, audio_frame_reduction=4
    )
    assert whisper.audio_encoder_output_length(21) == 11  # conv stride 2: (21 - 1) // 2 + 1
    assert whisper.num_audio_tokens(21) == 3


def test_no_tower_means_no_media():
    config = MultimodalGPTConfig(text_config=text_config())
    assert config.fusion == {}
    with pytest.raises(ValueError, match="no vision tower"):
        config.num_image_tokens()
    with pytest.raises(ValueError, match="no audio tower"):
        config.audio_encoder_output_length(100)


def test_any_vision_config_type_is_accepted():
    for kind in ("clip", "siglip", "vit"):
        config = MultimodalGPTConfig(text_config=text_config(), vision_config=vision_config(kind), image_token_id=97)
        assert config.vision_config.model_type == {"clip": "clip_vision_model", "siglip": "siglip_vision_model"}.get(
            kind, kind
        )


@pytest.mark.parametrize("kind", ["resnet", "convnext", "swin"])
def test_a_convolutional_or_hierarchical_vision_tower_is_refused_with_what_is_supported(kind):
    from transformers import CONFIG_MAPPING

    tower = CONFIG_MAPPING[kind](depths=[1, 1], **({"embed_dim": 8} if kind == "swin" else {"hidden_sizes": [8, 16]}))
    with pytest.raises(ValueError, match=f"Cannot use '{kind}' as the vision tower: the towers supported are plain"):
        MultimodalGPTConfig(text_config=text_config(), vision_config=tower, image_token_id=97)
