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

from multimodal_gpt import MultimodalGPTForConditionalGeneration, MultimodalGPTProcessor, add_multimodal_tokens
from multimodal_gpt.generation_multimodal_gpt import DEFAULT_MAX_NEW_TOKENS
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


def test_a_text_folder_without_tokenizer_is_an_error_never_a_shrunken_vocabulary(parts, tmp_path):
    """AutoTokenizer gives a 1-token tokenizer for a folder without tokenizer files: resizing to it would cut
    GPT-2's embedding matrix down to a few rows."""
    bare = tmp_path / "gpt2_without_tokenizer"
    GPT2LMHeadModel.from_pretrained(parts["gpt2"]).save_pretrained(bare)
    with pytest.raises(ValueError, match="has 1 tokens but the embedding matrix .* has 257 rows"):
        MultimodalGPTForConditionalGeneration.from_pretrained_parts(bare, vision_model=parts["clip"])
    with pytest.raises(ValueError, match="has 1 tokens"):
        MultimodalGPTProcessor.from_pretrained_parts(bare, vision_model=parts["clip"])
    tokenizer = AutoTokenizer.from_pretrained(parts["gpt2"])  # an explicit tokenizer is fine
    model = MultimodalGPTForConditionalGeneration.from_pretrained_parts(
        bare, vision_model=parts["clip"], tokenizer=tokenizer
    )
    assert model.config.text_config.vocab_size == 257 + 3


def test_a_tokenizer_smaller_than_the_embedding_matrix_is_an_error(parts):
    small = AutoTokenizer.from_pretrained(parts["gpt2"])
    small = type(small)(vocab=dict(list(small.get_vocab().items())[:100]), merges=[], unk_token="<|endoftext|>")
    with pytest.raises(ValueError, match=r"has \d+ tokens but the embedding matrix .* has 257 rows"):
        MultimodalGPTForConditionalGeneration.from_pretrained_parts(parts["gpt2"], tokenizer=small)


def test_built_models_carry_decoding_defaults_and_left_padding(parts):
    """A bare generate() and the pipelines use the model's own decoding defaults (not transformers' 20 tokens), and
    a batched generate(**processor(..., padding=True)) equals one-by-one generation."""
    model = MultimodalGPTForConditionalGeneration.from_pretrained_parts(parts["gpt2"], vision_model=parts["clip"])
    processor = MultimodalGPTProcessor.from_pretrained_parts(parts["gpt2"], vision_model=parts["clip"])
    assert model.generation_config.max_new_tokens == DEFAULT_MAX_NEW_TOKENS
    assert processor.tokenizer.padding_side == "left"
    prompts = ["a photo of", "a much longer photo caption of"]
    settings = dict(max_new_tokens=4, min_new_tokens=4, do_sample=False)
    batch = processor(text=prompts, padding=True, return_tensors="pt")
    batched = model.generate(**batch, **settings)[:, -4:]
    for row, prompt in enumerate(prompts):
        alone = model.generate(**processor(text=prompt, return_tensors="pt"), **settings)[:, -4:]
        assert batched[row].tolist() == alone[0].tolist()


def test_a_training_run_saves_its_decoding_settings(parts, tmp_path):
    from transformers import GenerationConfig

    from multimodal_gpt.training.arguments import DataArguments
    from multimodal_gpt.training.run import set_generation_config

    model = MultimodalGPTForConditionalGeneration.from_pretrained_parts(parts["gpt2"])
    set_generation_config(model, DataArguments(task="captioning", max_new_tokens=7, num_beams=3))
    model.save_pretrained(tmp_path)
    saved = GenerationConfig.from_pretrained(tmp_path)
    assert (saved.max_new_tokens, saved.num_beams) == (7, 3)


def test_a_file_of_decoding_settings_keeps_the_models_special_tokens(parts, tmp_path):
    from transformers import GenerationConfig

    from multimodal_gpt.training.arguments import DataArguments
    from multimodal_gpt.training.run import set_generation_config

    model = MultimodalGPTForConditionalGeneration.from_pretrained_parts(parts["gpt2"])
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = 5, 6
    GenerationConfig(num_beams=4, length_penalty=0.0).save_pretrained(tmp_path)  # no token ids in the file
    config = set_generation_config(
        model, DataArguments(task="captioning"), generation_config=str(tmp_path / "generation_config.json")
    )
    assert (config.num_beams, config.length_penalty) == (4, 0.0)
    assert (config.eos_token_id, config.pad_token_id) == (5, 6)  # else generation would never stop at the end
    GenerationConfig(eos_token_id=7).save_pretrained(tmp_path)  # a token id the file sets is the file's
    given = set_generation_config(model, DataArguments(task="captioning"), generation_config=str(tmp_path))
    assert given.eos_token_id == 7


def test_a_file_of_one_decoding_setting_keeps_the_checkpoints_beam_width_and_output_length(parts, tmp_path):
    """`{"length_penalty": 0.0}` alone, as a user writes it: the checkpoint's 3 beams and 7 new tokens stay (they
    used to become greedy decoding of 48 tokens, which a length penalty does not even apply to)."""
    from multimodal_gpt.training.arguments import DataArguments
    from multimodal_gpt.training.run import set_generation_config

    model = MultimodalGPTForConditionalGeneration.from_pretrained_parts(parts["gpt2"])
    model.generation_config.num_beams, model.generation_config.max_new_tokens = 3, 7
    (tmp_path / "generation_config.json").write_text('{"length_penalty": 0.0}')
    config = set_generation_config(model, DataArguments(task="captioning"), generation_config=str(tmp_path))
    assert (config.num_beams, config.max_new_tokens, config.length_penalty) == (3, 7, 0.0)
    assert model.generation_config is config
