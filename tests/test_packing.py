"""Padding-free packing (`TaskCollator(packing=True)`): samples packed whole into rows, positions restarting at 0,
each token attending only to its own sample's text and media. The packed batch's loss and gradients must be the
unpacked batch's, for every fusion and both attention implementations."""

import numpy as np
import pytest
import torch
from PIL import Image

from multimodal_gpt.data.collators import ASRCollator, PretrainCollator, TranslationCollator, pack_rows
from tests.tiny_models import FUSIONS, open_gates, tiny_processor_and_model


def picture(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8))


def clip(num_samples: int, seed: int) -> dict:
    array = (np.random.default_rng(seed).standard_normal(num_samples) * 0.1).astype(np.float32)
    return {"array": array, "sampling_rate": 16000}


# Mixed lengths and media: image rows, clips of two lengths, text-only rows of very different lengths.
ROWS = [
    {"text": "a picture of a cat", "image": picture(0), "audio": None},
    {"text": "hello there", "image": None, "audio": clip(1600, 1)},
    {"text": "just some text that is much longer than the others are", "image": None, "audio": None},
    {"text": "dog", "image": picture(2), "audio": None},
    {"text": "speech", "image": None, "audio": clip(2400, 3)},
    {"text": "x", "image": None, "audio": None},
]


def loss_and_gradients(model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("fusion", FUSIONS)
def test_the_packed_batch_has_the_unpacked_loss_and_gradients(fusion, attention):
    processor, model = tiny_processor_and_model(fusion=fusion)
    if attention == "eager":
        state = model.state_dict()
        model = type(model)._from_config(model.config, attn_implementation="eager")
        model.load_state_dict(state)
    open_gates(model)  # so that a token that saw another sample's media would change the loss
    model.train()
    plain = PretrainCollator(processor, max_length=128)(ROWS)
    packed = PretrainCollator(processor, max_length=128, packing=True)(ROWS)
    assert "attention_mask" not in packed and packed["input_ids"].shape[0] < plain["input_ids"].shape[0]
    assert packed["input_ids"].numel() < plain["input_ids"].numel()
    plain_loss, plain_gradients = loss_and_gradients(model, plain)
    packed_loss, packed_gradients = loss_and_gradients(model, packed)
    torch.testing.assert_close(packed_loss, plain_loss, rtol=1e-5, atol=1e-6)
    assert packed_gradients.keys() == plain_gradients.keys()
    for name, gradient in plain_gradients.items():
        torch.testing.assert_close(packed_gradients[name], gradient, rtol=1e-4, atol=1e-6, msg=name)


def test_packed_rows_hold_whole_samples_with_their_own_positions_and_their_media():
    processor, _ = tiny_processor_and_model(fusion="mlp")
    captions = ["one", "a much longer caption for image two", "three"]
    rows = [{"text": caption, "image": picture(index), "audio": None} for index, caption in enumerate(captions)]
    plain = PretrainCollator(processor, max_length=60)(rows)
    packed = PretrainCollator(processor, max_length=60, packing=True)(rows)
    lengths = plain["attention_mask"].sum(-1).tolist()
    plan = pack_rows(lengths, 60)
    assert plan == [[0, 2], [1]]  # the third sample joins the first row: its image must come second
    for row, samples in enumerate(plan):
        start = 0
        for index in samples:
            span = slice(start, start + lengths[index])
            torch.testing.assert_close(packed["input_ids"][row, span], plain["input_ids"][index, : lengths[index]])
            torch.testing.assert_close(packed["position_ids"][row, span], torch.arange(lengths[index]))
            assert packed["labels"][row, start] == -100  # never predicted from the sample before
            torch.testing.assert_close(packed["labels"][row, span][1:], plain["labels"][index, 1 : lengths[index]])
            start += lengths[index]
        assert (packed["labels"][row, start:] == -100).all()
    torch.testing.assert_close(packed["pixel_values"], plain["pixel_values"][[0, 2, 1]])


def test_pack_rows_takes_the_fewest_rows_and_balances_them():
    assert pack_rows([5, 4, 3, 2, 1], capacity=6) == [[0], [1, 4], [2, 3]]  # first fit: rows of 6, 6 and 3
    assert pack_rows([6, 6], capacity=6) == [[0], [1]]
    assert pack_rows([], capacity=6) == []
    # first fit in order would make rows of 256 and 101 tokens (both padded to 256): balanced, 193 and 164
    lengths = [64, 60, 58, 44, 30, 55, 46]
    assert pack_rows(lengths, capacity=256) == [[0, 3, 4, 5], [1, 2, 6]]
    # where balancing leaves a sample no room, first fit decreasing's rows stay (never one more row)
    assert pack_rows([5, 5, 4, 3, 3], capacity=10) == [[0, 1], [2, 3, 4]]


def test_a_batch_that_packing_would_not_shorten_stays_padded():
    processor, _ = tiny_processor_and_model(fusion="mlp")
    rows = [{"source": "ein Hund " * 2, "target": "a dog " * 2} for _ in range(2)]  # 68 tokens each: a row each
    batch = TranslationCollator(processor, max_length=100, packing=True)(rows)
    plain = TranslationCollator(processor, max_length=100)(rows)
    assert "attention_mask" in batch and torch.equal(batch["input_ids"], plain["input_ids"])


def test_packing_reorders_media_with_their_samples():
    """First fit moves a short later sample into an earlier row: its clip must move with it."""
    processor, model = tiny_processor_and_model(vision=None, fusion="linear")
    model.train()
    rows = [
        {"audio": clip(1600, 0), "text": "first"},  # 57 tokens
        {"audio": clip(2400, 1), "text": "second clip here"},  # 93 tokens: a row of its own
        {"audio": clip(800, 2), "text": "3"},  # 28 tokens: joins the first row, before the second clip
    ]
    plain = ASRCollator(processor, max_length=120)(rows)
    packed = ASRCollator(processor, max_length=120, packing=True)(rows)
    assert pack_rows(plain["attention_mask"].sum(-1).tolist(), 120) == [[0, 2], [1]]
    torch.testing.assert_close(model(**packed).loss, model(**plain).loss, rtol=1e-5, atol=1e-6)


def test_translation_rows_pack_without_media():
    processor, model = tiny_processor_and_model(fusion="mlp")
    model.train()
    rows = [{"source": "ein Hund" * (index + 1), "target": "a dog " * (3 - index)} for index in range(4)]
    plain = TranslationCollator(processor, max_length=256)(rows)
    packed = TranslationCollator(processor, max_length=256, packing=True)(rows)
    assert packed["input_ids"].shape[0] == 1
    torch.testing.assert_close(model(**packed).loss, model(**plain).loss, rtol=1e-5, atol=1e-6)


def test_without_bos_a_samples_first_token_is_not_predicted_from_the_sample_before():
    """Text-only rows without a bos token: each sample's first token has a label, which the unpacked batch never
    uses (there is no position before it); packed, the previous sample's last token must not learn to predict it."""
    processor, model = tiny_processor_and_model(fusion="mlp")
    model.train()
    rows = [{"text": text, "image": None, "audio": None} for text in ("first text", "second one", "3rd")]
    plain = PretrainCollator(processor, max_length=64, add_bos_token=False)(rows)
    packed = PretrainCollator(processor, max_length=64, add_bos_token=False, packing=True)(rows)
    assert packed["input_ids"].shape[0] == 1
    torch.testing.assert_close(model(**packed).loss, model(**plain).loss, rtol=1e-5, atol=1e-6)


def test_packing_needs_a_max_length_and_training_batches():
    processor, _ = tiny_processor_and_model(fusion="mlp")
    processor.tokenizer.model_max_length = int(1e30)
    with pytest.raises(ValueError, match="set max_length"):
        PretrainCollator(processor, packing=True)
    with pytest.raises(ValueError, match="generation batches are prompts"):
        PretrainCollator(processor, max_length=64, packing=True, for_generation=True)
