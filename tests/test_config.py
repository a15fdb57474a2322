"""MultimodalGPTConfig: validation with messages that say what to change, and the token counts it derives."""

import math

import pytest
import torch
from transformers import ConvNextConfig, ConvNextV2Config, ResNetConfig, SwinConfig

from multimodal_gpt import MultimodalGPTConfig, MultimodalGPTForConditionalGeneration
from multimodal_gpt.training.presets import available_presets, preset_config
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


def test_a_hierarchical_vision_tower_is_refused_with_what_is_supported():
    tower = SwinConfig(depths=[1, 1], embed_dim=8)
    with pytest.raises(ValueError, match="Cannot use 'swin' as the vision tower: the towers supported are plain"):
        MultimodalGPTConfig(text_config=text_config(), vision_config=tower, image_token_id=97)


CONVOLUTIONAL_TOWERS = {
    "resnet basic": ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24], depths=[1, 1, 1], layer_type="basic"),
    "resnet bottleneck, first stage downsampling": ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], downsample_in_first_stage=True
    ),
    "convnext": ConvNextConfig(patch_size=4, num_stages=3, hidden_sizes=[8, 16, 24], depths=[1, 1, 1]),
    "convnextv2": ConvNextV2Config(patch_size=2, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1]),
}


@pytest.mark.parametrize("name", CONVOLUTIONAL_TOWERS)
def test_a_convolutional_tower_gives_the_tokens_the_config_counts_at_any_image_size(name):
    """The config (and so the processor) counts one token per position of the tower's last feature map: checked
    against the tower itself, at sizes its strides do not divide."""
    config = MultimodalGPTConfig(
        text_config=text_config(), vision_config=CONVOLUTIONAL_TOWERS[name], image_token_id=97
    )
    model = MultimodalGPTForConditionalGeneration(config).eval()
    for height, width in [(224, 224), (37, 53), (64, 48), (19, 33)]:
        features = model.model.encode_images(torch.randn(1, 3, height, width))
        assert features.shape[1] == config.num_image_tokens(height, width), (height, width)
        assert features.shape[2] == config.vision_config.hidden_sizes[-1]


def test_a_convolutional_tower_config_round_trips_with_its_image_size():
    config = MultimodalGPTConfig(
        text_config=text_config(), vision_config=CONVOLUTIONAL_TOWERS["resnet basic"], image_token_id=97
    )
    assert config.vision_config.image_size == 224  # ResNet's config has no image size: ImageNet's
    assert config.num_image_tokens() == 14 * 14  # 224 / 16
    resized = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], image_size=96)
    config = MultimodalGPTConfig(text_config=text_config(), vision_config=resized, image_token_id=97)
    reloaded = MultimodalGPTConfig.from_dict(config.to_dict())
    assert reloaded.vision_config.image_size == 96 and reloaded.num_image_tokens() == 12 * 12  # 96 / 8
    assert "patch_size" not in reloaded.media_token_spec()["image"]


def test_a_convolutional_tower_refuses_what_its_feature_maps_cannot_give():
    tower = CONVOLUTIONAL_TOWERS["resnet basic"]
    with pytest.raises(ValueError, match="only its last feature map"):
        MultimodalGPTConfig(text_config=text_config(), vision_config=tower, image_token_id=97, vision_feature_layer=-2)
    with pytest.raises(ValueError, match="convolutional towers, wav2vec2 and HuBERT mix neighbouring positions"):
        MultimodalGPTConfig(text_config=text_config(), vision_config=tower, image_token_id=97, media_loss_weight=1.0)
    convnext = CONVOLUTIONAL_TOWERS["convnext"]
    model = MultimodalGPTForConditionalGeneration(
        MultimodalGPTConfig(text_config=text_config(), vision_config=convnext, image_token_id=97)
    )
    with pytest.raises(ValueError, match="too small for the 'convnext' tower: its convolutions leave no feature"):
        model.model.encode_images(torch.randn(1, 3, 224, 3))  # 3 px: less than one 4 px patch


@pytest.mark.parametrize("name", available_presets())
def test_every_shipped_preset_builds_a_model_that_gives_the_tokens_it_counts(name):
    token_ids = dict(bos_token_id=0, eos_token_id=0, pad_token_id=1, image_token_id=2, audio_token_id=3)
    config = preset_config(name, vocab_size=100, token_ids=token_ids)
    model = MultimodalGPTForConditionalGeneration(config).eval()
    size = config.vision_config.image_size
    with torch.no_grad():
        features = model.model.encode_images(torch.zeros(1, 3, size, size))
    assert features.shape[1] == config.num_image_tokens()
