"""The media-feature cache (`multimodal_gpt.data.feature_cache`, `train.py --cache_media_features`): training from
cached features computes what training from the media computes, the cache is reused and keyed by what the features
depend on, and it is refused where it would change training."""

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import HfArgumentParser, TrainingArguments

from multimodal_gpt.data.collators import ASRCollator, CaptioningCollator, PretrainCollator, TranslationCollator
from multimodal_gpt.data.feature_cache import IMAGE_FEATURES, MEDIA_ERROR, cache_key, cache_media_features
from multimodal_gpt.training.arguments import DataArguments, ModelArguments, check_model_arguments
from multimodal_gpt.training.run import run
from tests.tiny_models import audio_config, open_gates, tiny_processor_and_model


def png(seed: int) -> dict:
    pixels = np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def clip(num_samples: int, seed: int) -> dict:
    array = (np.random.default_rng(seed).standard_normal(num_samples) * 0.1).astype(np.float32)
    return {"array": array, "sampling_rate": 16000}


CAPTIONS = datasets.Dataset.from_list(
    [{"image": png(index), "captions": [f"caption {index}", f"other {index}"]} for index in range(5)]
)
SPEECH = datasets.Dataset.from_list(
    [{"audio": clip(length, index), "text": f"words {index}"} for index, length in enumerate([1600, 1200, 2000])]
)


def frozen(fusion: str, **kwargs):
    processor, model = tiny_processor_and_model(fusion=fusion, **kwargs)
    model.freeze_towers()
    open_gates(model)
    return processor, model.train()


def loss_and_gradients(model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "fusion, task", [("mlp", "captioning"), ("cross_attention", "captioning"), ("resampler", "asr"), ("linear", "asr")]
)
def test_training_from_cached_features_equals_training_from_the_media(fusion, task, tmp_path):
    processor, model = frozen(fusion, vision_token_merge=2)
    dataset, collator_class = (CAPTIONS, CaptioningCollator) if task == "captioning" else (SPEECH, ASRCollator)
    collator = collator_class(processor, max_length=128)
    cached = cache_media_features(dataset, model, collator, cache_dir=tmp_path)
    assert model.training  # the towers encoded in evaluation mode, then training resumed
    raw_batch = collator([dataset[index] for index in range(len(dataset))])
    cached_batch = collator([cached[index] for index in range(len(cached))])
    assert "pixel_values" not in cached_batch and "input_values" not in cached_batch
    raw_loss, raw_gradients = loss_and_gradients(model, raw_batch)
    cached_loss, cached_gradients = loss_and_gradients(model, cached_batch)
    torch.testing.assert_close(cached_loss, raw_loss)
    assert cached_gradients.keys() == raw_gradients.keys()
    for name, gradient in raw_gradients.items():
        torch.testing.assert_close(cached_gradients[name], gradient, rtol=1e-4, atol=1e-6, msg=name)


def test_packed_batches_from_cached_features_too(tmp_path):
    processor, model = frozen("cross_attention")
    rows = [
        {"text": "a picture", "image": png(0), "audio": None},
        {"text": "a clip", "image": None, "audio": clip(1600, 1)},
        {"text": "text only", "image": None, "audio": None},
    ]
    dataset = datasets.Dataset.from_list(rows)
    collator = PretrainCollator(processor, max_length=200, packing=True)
    cached = cache_media_features(dataset, model, collator, cache_dir=tmp_path)
    raw_loss = model(**collator(list(dataset))).loss
    torch.testing.assert_close(model(**collator(list(cached))).loss, raw_loss)


def test_the_cache_is_reused_and_keyed_by_the_tower_weights(tmp_path, monkeypatch):
    processor, model = frozen("mlp")
    collator = CaptioningCollator(processor, max_length=128)
    cache_media_features(CAPTIONS, model, collator, cache_dir=tmp_path)
    calls = []
    encode = model.model.encode_images
    monkeypatch.setattr(model.model, "encode_images", lambda pixel_values: calls.append(1) or encode(pixel_values))
    again = cache_media_features(CAPTIONS, model, collator, cache_dir=tmp_path)
    assert not calls and len(again) == len(CAPTIONS)  # read back from the file
    key = cache_key(CAPTIONS, model, processor, ["vision"])
    with torch.no_grad():
        model.vision_tower.get_input_embeddings().weight.add_(0.01)
    assert cache_key(CAPTIONS, model, processor, ["vision"]) != key
    changed = cache_media_features(CAPTIONS, model, collator, cache_dir=tmp_path)
    assert calls  # other weights, other features
    assert not np.allclose(changed[0][IMAGE_FEATURES], again[0][IMAGE_FEATURES])
    assert len(list(Path(tmp_path, "multimodal_gpt_media_features").glob("*.arrow"))) == 2


def test_a_bad_medium_is_kept_as_a_reason_and_skipped_by_the_collator(tmp_path):
    rows = [
        {"image": png(0), "captions": ["fine"]},
        {"image": {"bytes": b"not an image", "path": None}, "captions": ["x"]},
    ]
    processor, model = frozen("mlp")
    collator = CaptioningCollator(processor, max_length=128)
    cached = cache_media_features(datasets.Dataset.from_list(rows), model, collator, cache_dir=tmp_path)
    assert cached[0][MEDIA_ERROR] is None and cached[1][MEDIA_ERROR]
    batch = collator(list(cached))
    assert batch["input_ids"].shape[0] == 1 and collator.stats.bad_rows == 1


class AugmentingCollator(CaptioningCollator):
    @property
    def changes_media_between_epochs(self) -> bool:
        return True


@pytest.mark.parametrize(
    "case, message",
    [
        ("trainable tower", "the vision tower trains"),
        ("random tower", "hidden_dropout=0.1"),
        ("stream", "stream"),
        ("no media", "has none"),
        ("augmentation", "augments media"),
    ],
)
def test_the_cache_is_refused_where_it_would_change_training(case, message, tmp_path):
    audio = audio_config("wav2vec2")
    if case == "random tower":
        audio.hidden_dropout = 0.1
    processor, model = frozen("mlp", audio_config=audio)
    dataset, collator = CAPTIONS, CaptioningCollator(processor, max_length=128)
    if case == "trainable tower":
        model.vision_tower.requires_grad_(True)
    elif case == "random tower":
        dataset, collator = SPEECH, ASRCollator(processor, max_length=128)
    elif case == "stream":
        dataset = CAPTIONS.to_iterable_dataset()
    elif case == "no media":
        dataset = datasets.Dataset.from_list([{"source": "ein Hund", "target": "a dog"}])
        collator = TranslationCollator(processor, max_length=128)
    elif case == "augmentation":
        collator = AugmentingCollator(processor, max_length=128)
    with pytest.raises(ValueError, match=message):
        cache_media_features(dataset, model, collator, cache_dir=tmp_path)


@pytest.mark.parametrize("flags", [[], ["--freeze_towers", "--lora_r", "4", "--lora_target_towers"]])
def test_the_flag_needs_frozen_towers_before_anything_runs(flags):
    parser = HfArgumentParser((ModelArguments, DataArguments))
    model_args, data_args = parser.parse_args_into_dataclasses(
        ["--task", "captioning", "--cache_media_features", *flags]
    )
    with pytest.raises(ValueError, match="--cache_media_features encodes each medium once with frozen towers"):
        check_model_arguments(model_args, data_args)


def test_train_with_cached_features_and_packing(tmp_path):
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    arguments = [
        "--task", "captioning", "--dataset_name", "synthetic", "--max_train_samples", "16", "--preset", "tiny",
        "--vocab_size", "300", "--freeze_towers", "--cache_media_features", "--packing",
        "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "run"), "--do_train",
        "--max_steps", "2", "--per_device_train_batch_size", "4", "--report_to", "none", "--use_cpu",
        "--save_strategy", "no", "--disable_tqdm", "true",
    ]  # fmt: skip
    results = run(*parser.parse_args_into_dataclasses(arguments))
    assert np.isfinite(results["train_loss"]) and results["collator_samples"] >= 8 and not results["collator_bad_rows"]
    assert list((tmp_path / "cache" / "multimodal_gpt_media_features").glob("*.arrow"))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model_type"] == "multimodal_gpt"
