"""The data side of media pretraining and of the recipes: media labels and media-only rows in the collator, the
training-only augmentation (deterministic per seed, epoch and row; no flip where a text names a side), and the
weighted pretraining mix of the built-in corpora."""

import numpy as np
import pytest
import torch
from PIL import Image

from multimodal_gpt.configuration_multimodal_gpt import AUDIO_TOKEN, IMAGE_TOKEN
from multimodal_gpt.data.augment import Augmentation
from multimodal_gpt.data.collators import CaptioningCollator, PretrainCollator
from multimodal_gpt.data.corpora import default_data_dir
from multimodal_gpt.data.mix import media_rows, parse_mix_weights, text_rows, weighted_mix
from multimodal_gpt.data.sources import builtin_splits
from tests.tiny_models import tiny_processor_and_model

IGNORE = -100


@pytest.fixture(scope="module")
def tiny():
    processor, model = tiny_processor_and_model(vision="vit", audio="whisper", media_loss_weight=1.0)
    return processor, model


def image(color=(200, 30, 30), size=(12, 10)) -> Image.Image:
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[:, : size[0] // 2] = color  # left half coloured: a flip is visible
    return Image.fromarray(pixels)


def clip(seconds: float = 0.5, rate: int = 16000) -> dict:
    time = np.arange(int(seconds * rate)) / rate
    return {"array": (0.3 * np.sin(2 * np.pi * 440 * time)).astype(np.float32), "sampling_rate": rate}


def token_id(processor, token: str) -> int:
    return processor.tokenizer.convert_tokens_to_ids(token)


def test_media_tokens_after_the_first_of_each_span_are_labelled_as_targets(tiny):
    processor, model = tiny
    collator = PretrainCollator(processor=processor, media_targets=("vision", "audio"))
    batch = collator(
        [{"text": "a cat", "image": image(), "audio": None}, {"text": "seven", "image": None, "audio": clip()}]
    )
    for row, token in ((0, IMAGE_TOKEN), (1, AUDIO_TOKEN)):
        placeholder = token_id(processor, token)
        positions = (batch["input_ids"][row] == placeholder).nonzero().flatten()
        labels = batch["labels"][row]
        assert labels[positions[0]] == IGNORE
        assert (labels[positions[1:]] == placeholder).all()
    model.train()(**batch).loss.backward()  # the model takes these labels as media targets


def test_without_media_targets_media_stay_unlabelled_and_media_only_rows_are_skipped(tiny):
    processor, _ = tiny
    collator = PretrainCollator(processor=processor)
    rows = [{"text": "a cat", "image": image(), "audio": None}, {"text": None, "image": image(), "audio": None}]
    batch = collator(rows)
    assert batch["input_ids"].shape[0] == 1 and collator.stats.bad_rows == 1
    assert not (batch["labels"] == token_id(processor, IMAGE_TOKEN)).any()


def test_a_media_only_row_has_media_targets_and_no_text(tiny):
    processor, model = tiny
    collator = PretrainCollator(processor=processor, media_targets=("vision",))
    batch = collator([{"text": "", "image": image(), "audio": None}])
    labels = batch["labels"][0]
    assert set(labels.tolist()) == {IGNORE, token_id(processor, IMAGE_TOKEN)}  # no eos: nothing to say
    assert batch["input_ids"].shape[1] == 1 + model.config.num_image_tokens()
    assert torch.isfinite(model.train()(**batch).loss)


# ----- augmentation ----------------------------------------------------------------------------------------------


def augmented_pixels(processor, rows, epoch: int, seed: int = 0, for_generation: bool = False) -> torch.Tensor:
    augmentation = Augmentation(seed=seed, crop_scale=0.5, horizontal_flip=True)
    collator = CaptioningCollator(
        processor=processor, augmentation=augmentation, epoch=epoch, for_generation=for_generation
    )
    return collator(rows)["pixel_values"]


def test_image_augmentation_is_deterministic_per_seed_epoch_and_row(tiny):
    processor, _ = tiny
    rows = [{"image": image(), "captions": ["a red square"]}, {"image": image(), "captions": ["a red patch"]}]
    first = augmented_pixels(processor, rows, epoch=0)
    torch.testing.assert_close(augmented_pixels(processor, rows, epoch=0), first, rtol=0, atol=0)
    assert not torch.equal(augmented_pixels(processor, rows, epoch=1), first)
    assert not torch.equal(augmented_pixels(processor, rows, epoch=0, seed=1), first)
    assert not torch.equal(first[0], first[1])  # rows differ, though their images are the same
    plain = CaptioningCollator(processor=processor, for_generation=True)(rows)["pixel_values"]
    torch.testing.assert_close(augmented_pixels(processor, rows, epoch=0, for_generation=True), plain)


def test_an_image_whose_texts_name_a_side_is_never_flipped():
    flipping = Augmentation(horizontal_flip=True)
    picture = image()
    for texts in (("a dog on the left",), ("a dog", "Ein Hund rechts"), ("un chien à gauche",)):
        for epoch in range(8):
            generator = flipping.generator((), texts, epoch)
            assert flipping.image(picture, generator, texts).tobytes() == picture.tobytes()
    flipped = [
        flipping.image(picture, flipping.generator((), ("a dog",), epoch), ("a dog",)).tobytes() != picture.tobytes()
        for epoch in range(8)
    ]
    assert any(flipped) and not all(flipped)


def test_spec_augment_masks_only_valid_frames_in_training_batches(tiny):
    processor, _ = tiny
    augmentation = Augmentation(time_masks=2, time_mask_fraction=0.3, frequency_masks=2, frequency_mask_bins=3)
    rows = [{"audio": clip(0.5), "text": "seven"}]
    plain = PretrainCollator(processor=processor)(rows)
    masked = PretrainCollator(processor=processor, augmentation=augmentation)(rows)
    valid = int(plain["input_features_mask"].sum())
    changed = (masked["input_features"] != plain["input_features"])[0]
    assert changed.any()
    assert not changed[:, valid:].any()  # padding stays padding


def test_speed_and_noise_change_the_waveform_reproducibly():
    augmentation = Augmentation(speed_perturbation=0.1, noise_snr_db=10.0)
    samples = clip(0.5)["array"]
    first = augmentation.waveform(samples, np.random.default_rng(0))
    assert first.dtype == np.float32 and 0.9 * len(samples) <= len(first) <= 1.12 * len(samples)
    np.testing.assert_array_equal(augmentation.waveform(samples, np.random.default_rng(0)), first)
    assert not np.array_equal(augmentation.waveform(samples, np.random.default_rng(1)), first)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(speed_perturbation=1.5), "speed_perturbation"), (dict(crop_scale=0.0), "crop_scale")],
)
def test_bad_augmentation_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Augmentation(**kwargs)


# ----- the weighted pretraining mix ------------------------------------------------------------------------------


def test_weights_give_each_kind_its_share_of_the_rows():
    parts = {
        "text": lambda: text_rows(f"sentence {index}" for index in range(90)),
        "audio": lambda: media_rows("audio", ((f"clip{index}.wav", None) for index in range(10))),
    }
    mixed = weighted_mix(parts, {"text": 1.0, "audio": 1.0})
    audio = [row["audio"] for row in mixed if row["audio"] is not None]
    assert len(mixed) == 100 and len(audio) == 50
    assert sorted(set(audio)) == sorted(f"clip{index}.wav" for index in range(10))  # each clip 5 times
    assert all(audio.count(name) == 5 for name in set(audio))
    assert [row["text"] for row in weighted_mix(parts, {"text": 1.0, "audio": 1.0})] == mixed["text"]  # seeded


@pytest.mark.parametrize(
    ("spec", "message"),
    [("text=1,sound=2", "kind among"), ("text", "kind=weight"), ("text=x", "a number"), ("text=0", "above 0")],
)
def test_bad_mix_weights_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_mix_weights(spec)


@pytest.mark.skipif(not default_data_dir().is_dir(), reason="the real data (../shared/data) is not here")
def test_the_built_in_mix_has_text_pairs_and_media_only_rows():
    rows = builtin_splits(None, "pretrain", pretrain_mix={"text_pair": 1.0, "image": 1.0, "audio": 1.0})[
        "validation"
    ]()
    kinds = {
        "text_pair": [row for row in rows if row["image"] is None and row["audio"] is None],
        "image": [row for row in rows if row["image"] is not None],
        "audio": [row for row in rows if row["audio"] is not None],
    }
    assert all(len(found) > len(rows) / 4 for found in kinds.values())
    # English then German, in the translation task's prompt, as finetuning shows a pair
    assert all(row["text"].startswith("Translate English to German: ") for row in kinds["text_pair"])
    assert all("\nGerman: " in row["text"] for row in kinds["text_pair"])
    assert all(row["text"] is None for row in kinds["image"] + kinds["audio"])
    with pytest.raises(ValueError, match="built-in pretraining mix"):
        builtin_splits("multi30k", "pretrain", pretrain_mix={"text": 1.0})
