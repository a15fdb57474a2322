"""generate() with media: greedy, sampling and beam search; cache parity; batched left padding; towers run once."""

import pytest
import torch

from tests.tiny_models import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID, audio_input, image_input, open_gates, tiny_model

PAD = 0
GENERATION = dict(max_new_tokens=6, min_new_tokens=6, pad_token_id=PAD)


def prompt(model, modality: str, prefix=(3, 4, 5)) -> list[int]:
    if modality == "image":
        return [*prefix, *[IMAGE_TOKEN_ID] * model.config.num_image_tokens(), 6]
    return [*prefix, *[AUDIO_TOKEN_ID] * model.config.num_audio_tokens(1600), 7, 8]


def left_pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(map(len, rows))
    input_ids = torch.tensor([[PAD] * (longest - len(row)) + row for row in rows])
    attention_mask = torch.tensor([[0] * (longest - len(row)) + [1] * len(row) for row in rows])
    return input_ids, attention_mask


def inputs_for(model, modality: str, seed: int = 0) -> dict:
    input_ids, attention_mask = left_pad([prompt(model, modality)])
    media = {"pixel_values": image_input(1, seed)} if modality == "image" else audio_input(model, 1600, seed)
    return dict(input_ids=input_ids, attention_mask=attention_mask, **media)


def make_model(fusion: str):
    model = tiny_model(fusion=fusion, seed=1)
    open_gates(model)
    return model


@pytest.mark.parametrize("fusion", ["mlp", "resampler", "cross_attention"])
@pytest.mark.parametrize("modality", ["image", "audio"])
def test_cached_generation_equals_uncached(fusion, modality):
    model = make_model(fusion)
    inputs = inputs_for(model, modality)
    cached = model.generate(**inputs, **GENERATION, do_sample=False)
    uncached = model.generate(**inputs, **GENERATION, do_sample=False, use_cache=False)
    torch.testing.assert_close(cached, uncached, rtol=0, atol=0)


@pytest.mark.parametrize("fusion", ["mlp", "cross_attention"])
def test_sampling_with_cache_equals_sampling_without(fusion):
    model = make_model(fusion)
    inputs = inputs_for(model, "image")
    torch.manual_seed(0)
    cached = model.generate(**inputs, **GENERATION, do_sample=True, top_k=20)
    torch.manual_seed(0)
    uncached = model.generate(**inputs, **GENERATION, do_sample=True, top_k=20, use_cache=False)
    torch.testing.assert_close(cached, uncached, rtol=0, atol=0)


@pytest.mark.parametrize("fusion", ["mlp", "resampler", "cross_attention"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_a_left_padded_batch_equals_each_sample_alone(fusion, num_beams):
    """Mixed batch: an image prompt, an audio prompt and a text-only prompt, of different lengths."""
    model = make_model(fusion)
    rows = [prompt(model, "image"), prompt(model, "audio"), [9, 10]]
    input_ids, attention_mask = left_pad(rows)
    pixel_values, audio = image_input(1), audio_input(model, 1600)
    batch = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        pixel_values=pixel_values,
        **audio,
        **GENERATION,
        num_beams=num_beams,
    )
    alone = [
        model.generate(
            input_ids=torch.tensor([rows[0]]), pixel_values=pixel_values, **GENERATION, num_beams=num_beams
        ),
        model.generate(input_ids=torch.tensor([rows[1]]), **audio, **GENERATION, num_beams=num_beams),
        model.generate(input_ids=torch.tensor([rows[2]]), **GENERATION, num_beams=num_beams),
    ]
    for row, single in enumerate(alone):
        assert (
            batch[row, -GENERATION["max_new_tokens"] :].tolist() == single[0, -GENERATION["max_new_tokens"] :].tolist()
        )


@pytest.mark.parametrize("fusion", ["mlp", "cross_attention"])
def test_beam_search_with_several_media_per_sample(fusion):
    """Beam search repeats each sample; its media rows must be repeated with it, in placeholder order."""
    model = make_model(fusion)
    two_images = [3, *[IMAGE_TOKEN_ID] * model.config.num_image_tokens()] * 2 + [4]
    rows = [two_images, prompt(model, "image")]
    input_ids, attention_mask = left_pad(rows)
    pixel_values = image_input(3)
    settings = dict(**GENERATION, num_beams=2, num_return_sequences=2)
    batch = model.generate(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, **settings)
    first = model.generate(input_ids=torch.tensor([rows[0]]), pixel_values=pixel_values[:2], **settings)
    second = model.generate(input_ids=torch.tensor([rows[1]]), pixel_values=pixel_values[2:], **settings)
    new = GENERATION["max_new_tokens"]
    assert batch[:2, -new:].tolist() == first[:, -new:].tolist()
    assert batch[2:, -new:].tolist() == second[:, -new:].tolist()


@pytest.mark.parametrize("fusion", ["mlp", "cross_attention"])
@pytest.mark.parametrize("modality", ["image", "audio"])
def test_media_are_encoded_once_at_prefill(fusion, modality):
    model = make_model(fusion)
    tower = model.vision_tower if modality == "image" else model.audio_tower
    calls = []
    tower.register_forward_hook(lambda *args: calls.append(1))
    model.generate(**inputs_for(model, modality), **GENERATION)
    assert len(calls) == 1


@pytest.mark.parametrize("fusion", ["mlp", "cross_attention"])
def test_media_change_every_step_of_generation(fusion):
    """Different images give different scores at every decoding step: the media reach the cached steps too."""
    model = make_model(fusion)
    settings = dict(**GENERATION, output_scores=True, return_dict_in_generate=True)
    first, second = (model.generate(**inputs_for(model, "image", seed=seed), **settings) for seed in (0, 1))
    for step_first, step_second in zip(first.scores, second.scores):
        assert not torch.allclose(step_first, step_second)
