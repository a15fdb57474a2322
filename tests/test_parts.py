"""from_pretrained_parts: one model from separately pretrained local checkpoints, weights carried over exactly."""

import pytest
import torch
from transformers import (
    AutoTokenizer,
    CLIPVisionModel,
    GPT2LMHeadModel,
    Wav2Vec2Model,
    WhisperForConditionalGeneration,
)

from multimodal_gpt import MultimodalGPTForConditionalGeneration, add_multimodal_tokens
from tests.tiny_models import save_pretrained_parts


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, str]:
    return save_pretrained_parts(tmp_path_factory.mktemp("parts"))


def assert_same_weights(module: torch.nn.Module, reference: torch.nn.Module) -> None:
    expected = reference.state_dict()
    actual = module.state_dict()
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize(("audio", "fusion"), [("whisper", "mlp"), ("wav2vec2", "cross_attention")])
def test_weights_tokens_and_tie_carry_over(parts, audio, fusion):
    model = MultimodalGPTForConditionalGeneration.from_pretrained_parts(
        parts["gpt2"], vision_model=parts["clip"], audio_model=parts[audio], fusion=fusion
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(parts["gpt2"])
    original_vocab = len(tokenizer)
    ids = add_multimodal_tokens(tokenizer)
    assert model.config.image_token_id == ids["image_token_id"] == original_vocab + 1
    assert model.config.audio_token_id == ids["audio_token_id"]
    assert model.config.text_config.vocab_size == len(tokenizer) == original_vocab + 3
    assert model.lm_head.weight is model.model.language_model.wte.weight

    assert_same_weights(model.vision_tower, CLIPVisionModel.from_pretrained(parts["clip"]))
    if audio == "whisper":
        reference_audio = WhisperForConditionalGeneration.from_pretrained(parts["whisper"]).get_encoder()
    else:
        reference_audio = Wav2Vec2Model.from_pretrained(parts["wav2vec2"])
    assert_same_weights(model.audio_tower, reference_audio)

    gpt2 = GPT2LMHeadModel.from_pretrained(parts["gpt2"]).eval()
    for name, value in gpt2.transformer.state_dict().items():
        actual = model.model.language_model.state_dict()[name]
        if name == "wte.weight":
            actual = actual[:original_vocab]  # the new rows are the added special tokens
        torch.testing.assert_close(actual, value, rtol=0, atol=0, msg=name)
    text = torch.tensor([tokenizer("a photo of a cat").input_ids])
    with torch.no_grad():
        logits = model(input_ids=text).logits
        torch.testing.assert_close(logits[..., :original_vocab], gpt2(input_ids=text).logits, rtol=1e-6, atol=1e-6)


def test_saved_and_reloaded_model_from_parts(parts, tmp_path):
    model = MultimodalGPTForConditionalGeneration.from_pretrained_parts(parts["gpt2"], vision_model=parts["clip"])
    model.save_pretrained(tmp_path)
    reloaded = MultimodalGPTForConditionalGeneration.from_pretrained(tmp_path)
    assert reloaded.config.audio_config is None and reloaded.audio_tower is None
    assert_same_weights(reloaded, model)


def test_parts_must_start_from_gpt2(parts):
    with pytest.raises(ValueError, match="must be a GPT-2 checkpoint, got 'whisper'"):
        MultimodalGPTForConditionalGeneration.from_pretrained_parts(parts["whisper"])
