"""Collators: exact label masks, mixed batches through the model, truncation that never cuts media, generation
batches, bad rows, the Trainer's dropped columns, and a handful of real rows."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    GPT2Config,
    Trainer,
    TrainerControl,
    TrainerState,
    TrainingArguments,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

from multimodal_gpt import MultimodalGPTConfig, MultimodalGPTForConditionalGeneration, add_multimodal_tokens
from multimodal_gpt.data.collators import (
    ASRCollator,
    CaptioningCollator,
    EpochCallback,
    MMTCollator,
    PretrainCollator,
    TaskCollator,
    TranslationCollator,
)
from multimodal_gpt.data.corpora import keep_multi30k_rows, load_flickr8k, load_fsdd, load_multi30k, load_read_speech
from multimodal_gpt.data.tasks import get_task
from multimodal_gpt.processing_multimodal_gpt import MultimodalGPTProcessor
from tests.tiny_models import byte_level_gpt2_tokenizer, text_config, tiny_config

IGNORE = -100
BYTE_SYMBOLS = bytes_to_unicode()
CLIP_SAMPLES = 800  # at 8 kHz: 0.1 s, 1600 samples at the feature extractor's 16 kHz
CAPTIONS = ["a red ball", "A ball on grass .", "red ball", "the ball is red", "a ball"]


def make_processor(config: MultimodalGPTConfig, tokenizer, image_size: int) -> MultimodalGPTProcessor:
    return MultimodalGPTProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        ),
        feature_extractor=Wav2Vec2FeatureExtractor(return_attention_mask=True),
        tokenizer=tokenizer,
        media_token_spec=config.media_token_spec(),
    )


@pytest.fixture(scope="module")
def tiny():
    """The tiny model (8 px images: 16 tokens; 0.1 s clips: 49 tokens; n_positions 256) and its processor."""
    tokenizer = byte_level_gpt2_tokenizer()
    ids = add_multimodal_tokens(tokenizer)
    config = tiny_config(
        image_token_id=ids["image_token_id"],
        audio_token_id=ids["audio_token_id"],
        text_config=text_config(vocab_size=len(tokenizer)),
    )
    torch.manual_seed(0)
    model = MultimodalGPTForConditionalGeneration(config)
    return SimpleNamespace(
        tokenizer=tokenizer,
        config=config,
        model=model,
        processor=make_processor(config, tokenizer, image_size=8),
        image_tokens=config.num_image_tokens(),
        audio_tokens=config.num_audio_tokens(2 * CLIP_SAMPLES),
    )


def byte_ids(tokenizer, text: str) -> list[int]:
    """Token ids of `text` under the merge-free byte-level tokenizer: one token per UTF-8 byte."""
    return [tokenizer.convert_tokens_to_ids(BYTE_SYMBOLS[byte]) for byte in text.encode("utf-8")]


def picture(seed: int = 0, size: int = 12) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


def clip(num_samples: int = CLIP_SAMPLES, sampling_rate: int = 8000, seed: int = 0) -> dict:
    array = np.random.default_rng(seed).standard_normal(num_samples).astype(np.float32) * 0.1
    return {"array": array, "sampling_rate": sampling_rate}


def pretrain_row(kind: str, text: str, seed: int = 0) -> dict:
    return {
        "text": text,
        "image": picture(seed) if kind == "image" else None,
        "audio": clip(seed=seed) if kind == "audio" else None,
    }


def prompt_length(tiny, kind: str) -> int:
    """bos + media tokens of a pretraining row."""
    return 1 + {"image": tiny.image_tokens, "audio": tiny.audio_tokens, "text": 0}[kind]


# ----- training batches -----------------------------------------------------------------------------------------


def test_labels_ignore_exactly_the_bos_media_and_padding_of_a_mixed_batch(tiny):
    rows = [pretrain_row("image", "a cat"), pretrain_row("audio", "seven"), pretrain_row("text", "hello world")]
    batch = PretrainCollator(tiny.processor)(rows)

    eos, pad = tiny.tokenizer.eos_token_id, tiny.tokenizer.pad_token_id
    prompts = [
        [eos] + [tiny.config.image_token_id] * tiny.image_tokens,
        [eos] + [tiny.config.audio_token_id] * tiny.audio_tokens,
        [eos],
    ]
    targets = [byte_ids(tiny.tokenizer, " " + row["text"]) + [eos] for row in rows]
    longest = max(len(prompt) + len(target) for prompt, target in zip(prompts, targets))
    for index, (prompt, target) in enumerate(zip(prompts, targets)):
        padding = longest - len(prompt) - len(target)
        assert batch["input_ids"][index].tolist() == prompt + target + [pad] * padding
        assert batch["labels"][index].tolist() == [IGNORE] * len(prompt) + target + [IGNORE] * padding
        assert batch["attention_mask"][index].tolist() == [1] * (len(prompt) + len(target)) + [0] * padding
    assert batch["pixel_values"].shape == (1, 3, 8, 8)
    assert batch["input_values"].shape == (1, 2 * CLIP_SAMPLES)
    assert batch["input_values_mask"].sum() == 2 * CLIP_SAMPLES


def test_translation_labels_start_right_after_the_prompt(tiny):
    row = {"source": "a cat", "target": "eine Katze", "source_lang": "en", "target_lang": "de"}
    batch = TranslationCollator(tiny.processor)([row])
    prompt = [tiny.tokenizer.eos_token_id] + byte_ids(tiny.tokenizer, "Translate English to German: a cat\nGerman:")
    target = byte_ids(tiny.tokenizer, " eine Katze") + [tiny.tokenizer.eos_token_id]
    assert batch["input_ids"][0].tolist() == prompt + target
    assert batch["labels"][0].tolist() == [IGNORE] * len(prompt) + target
    assert set(batch) == {"input_ids", "attention_mask", "labels"}


def test_the_model_trains_on_a_collated_mixed_batch(tiny):
    rows = [pretrain_row(kind, f"row {index}", seed=index) for index, kind in enumerate(["image", "audio", "text"])]
    batch = PretrainCollator(tiny.processor)(rows)
    model = tiny.model.train()
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    for tower in (model.vision_tower, model.audio_tower):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters())
    model.zero_grad()


def test_trainer_needs_remove_unused_columns_false(tiny, tmp_path):
    """The Trainer strips every column forward() does not name before collating; the collator says how to fix it."""
    rows = [pretrain_row(kind, "a b", seed=index) for index, kind in enumerate(["image", "audio", "text", "text"])]
    model = MultimodalGPTForConditionalGeneration(tiny.config)
    common = dict(per_device_train_batch_size=4, max_steps=1, report_to=[], use_cpu=True, save_strategy="no")

    def train(**overrides) -> float:
        arguments = TrainingArguments(output_dir=str(tmp_path), disable_tqdm=True, **common, **overrides)
        collator = PretrainCollator(tiny.processor)
        return Trainer(model=model, args=arguments, train_dataset=rows, data_collator=collator).train().training_loss

    with pytest.raises(ValueError, match=r"needs the columns \['text'\].*remove_unused_columns=False"):
        train()
    assert np.isfinite(train(remove_unused_columns=False))


def test_a_missing_media_column_names_remove_unused_columns(tiny):
    with pytest.raises(ValueError, match="remove_unused_columns=False"):
        CaptioningCollator(tiny.processor)([{"captions": CAPTIONS}])


def test_the_epoch_picks_the_caption(tiny):
    row = {"image": picture(), "captions": CAPTIONS}
    collator = CaptioningCollator(tiny.processor)
    callback = EpochCallback(collator)
    learned = []
    for epoch in range(5):
        callback.on_epoch_begin(None, TrainerState(epoch=float(epoch)), TrainerControl())
        labels = collator([row])["labels"][0]
        learned.append(tiny.tokenizer.decode(labels[labels != IGNORE], skip_special_tokens=True).strip())
    assert sorted(learned) == sorted(CAPTIONS)
    callback.on_epoch_begin(None, TrainerState(epoch=1.5), TrainerControl())  # resumed mid-epoch
    assert collator.epoch == 1


# ----- truncation -----------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    samples=st.lists(
        st.tuples(st.sampled_from(["image", "audio", "text"]), st.integers(1, 60)), min_size=1, max_size=5
    ),
    max_length=st.integers(2, 110),
)
@example(samples=[("image", 60), ("audio", 5), ("text", 3)], max_length=40)  # truncated, dropped, kept
def test_truncation_never_cuts_media_and_counts_what_it_drops(tiny, samples, max_length):
    rows = [pretrain_row(kind, "x" * length, seed=index) for index, (kind, length) in enumerate(samples)]
    collator = PretrainCollator(tiny.processor, max_length=max_length)
    fits = [prompt_length(tiny, kind) + 1 <= max_length for kind, _ in samples]
    if not any(fits):
        with pytest.raises(ValueError, match="max_length"):
            collator(rows)
        assert collator.stats.dropped_too_long == len(samples)
        return
    batch = collator(rows)

    kept = [sample for sample, fit in zip(samples, fits) if fit]
    target_lengths = [length + 2 for _, length in samples]  # leading space + "x" * length + eos
    assert collator.stats.dropped_too_long == fits.count(False)
    assert collator.stats.truncated == sum(
        fit and prompt_length(tiny, kind) + target > max_length
        for (kind, _), target, fit in zip(samples, target_lengths, fits)
    )
    assert batch["input_ids"].shape[0] == len(kept) and batch["input_ids"].shape[1] <= max_length
    for row, (kind, length) in enumerate(kept):
        input_ids, labels = batch["input_ids"][row], batch["labels"][row]
        assert (input_ids == tiny.config.image_token_id).sum() == (tiny.image_tokens if kind == "image" else 0)
        assert (input_ids == tiny.config.audio_token_id).sum() == (tiny.audio_tokens if kind == "audio" else 0)
        assert (labels != IGNORE).sum() == min(length + 2, max_length - prompt_length(tiny, kind))
    kinds = [kind for kind, _ in kept]
    assert len(batch.get("pixel_values", [])) == kinds.count("image")
    assert len(batch.get("input_values", [])) == kinds.count("audio")


def test_a_dropped_sample_takes_its_media_with_it(tiny):
    long_clip = {"array": np.zeros(3200, dtype=np.float32), "sampling_rate": 16000}  # 99 tokens: does not fit
    rows = [
        {"text": "long", "audio": long_clip},
        pretrain_row("audio", "short", seed=1),
        pretrain_row("image", "picture", seed=2),
    ]
    collator = PretrainCollator(tiny.processor, max_length=80)
    batch = collator(rows)
    assert collator.stats.dropped_too_long == 1
    assert batch["input_ids"].shape[0] == 2
    assert batch["input_values"].shape == (1, 2 * CLIP_SAMPLES)  # trimmed to the longest kept clip
    assert batch["input_values_mask"].all()
    assert torch.isfinite(tiny.model.train()(**batch).loss)


# ----- generation batches ---------------------------------------------------------------------------------------


def test_generation_batches_are_left_padded_prompts_that_generate_continues(tiny):
    rows = [pretrain_row("image", "a cat"), pretrain_row("audio", "seven", seed=1), pretrain_row("text", "hi")]
    batch = PretrainCollator(tiny.processor, for_generation=True)(rows)
    references = batch.pop("references")
    assert references == [["a cat"], ["seven"], ["hi"]]
    assert batch.pop("row_indices") == [0, 1, 2] and batch.pop("skipped_rows") == {}
    assert "labels" not in batch

    training = PretrainCollator(tiny.processor)(rows)
    width = batch["input_ids"].shape[1]
    for row, kind in enumerate(["image", "audio", "text"]):
        length = prompt_length(tiny, kind)
        assert batch["attention_mask"][row].tolist() == [0] * (width - length) + [1] * length
        # the prompt the model continues is the one it was trained on
        assert batch["input_ids"][row, width - length :].tolist() == training["input_ids"][row, :length].tolist()

    model = tiny.model.eval()
    generated = model.generate(**batch, max_new_tokens=3, min_new_tokens=3, pad_token_id=tiny.tokenizer.pad_token_id)
    assert generated.shape == (3, width + 3)
    assert torch.equal(generated[:, :width], batch["input_ids"])
    predictions = PretrainCollator(tiny.processor).decode_predictions(generated, batch["input_ids"])
    assert len(predictions) == 3 and all(isinstance(text, str) for text in predictions)


def test_generation_keeps_all_captions_as_references(tiny):
    batch = CaptioningCollator(tiny.processor, for_generation=True)([{"image": picture(), "captions": CAPTIONS}])
    assert batch["references"] == [CAPTIONS]
    assert batch["input_ids"].shape == (1, 1 + tiny.image_tokens)


# ----- bad rows -------------------------------------------------------------------------------------------------


def wav_bytes(num_samples: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(num_samples, dtype=np.float32), 16000, format="WAV")
    return buffer.getvalue()


BAD_ASR_ROWS = {
    "corrupt file": {"audio": b"RIFF not really a wav file", "text": "one"},
    "empty transcript": {"audio": clip(), "text": "  "},
    "zero-length clip": {"audio": {"array": np.zeros(0, dtype=np.float32), "sampling_rate": 16000}, "text": "two"},
    "zero-length wav": {"audio": wav_bytes(0), "text": "two"},
    "too short for a frame": {"audio": {"array": np.ones(10, dtype=np.float32), "sampling_rate": 16000}, "text": "a"},
    "missing file": {"audio": "/nonexistent/clip.wav", "text": "three"},
}


def test_bad_rows_are_skipped_and_counted(tiny):
    collator = ASRCollator(tiny.processor)
    batch = collator([{"audio": clip(), "text": "good"}, *BAD_ASR_ROWS.values()])
    assert batch["input_ids"].shape[0] == 1
    assert collator.stats.bad_rows == len(BAD_ASR_ROWS)
    assert collator.stats.rows == len(BAD_ASR_ROWS) + 1 and collator.stats.samples == 1
    with pytest.raises(ValueError, match="unusable"):
        collator(list(BAD_ASR_ROWS.values()))


def test_a_generation_batch_says_which_row_each_sample_is_and_why_others_were_skipped(tiny):
    rows = [BAD_ASR_ROWS["corrupt file"], {"audio": clip(), "text": "good"}, BAD_ASR_ROWS["empty transcript"]]
    batch = ASRCollator(tiny.processor, for_generation=True)(rows)
    assert batch["row_indices"] == [1] and batch["references"] == [["good"]] and batch["input_ids"].shape[0] == 1
    assert sorted(batch["skipped_rows"]) == [0, 2] and "empty" in batch["skipped_rows"][2]
    everything_bad = ASRCollator(tiny.processor, for_generation=True)(list(BAD_ASR_ROWS.values()))
    assert everything_bad["row_indices"] == [] and len(everything_bad["skipped_rows"]) == len(BAD_ASR_ROWS)
    assert "input_ids" not in everything_bad
    too_long = ASRCollator(tiny.processor, for_generation=True, max_length=2)([{"audio": clip(), "text": "good"}])
    assert too_long["row_indices"] == [] and "more than max_length=2" in too_long["skipped_rows"][0]


@pytest.mark.parametrize("name", sorted(BAD_ASR_ROWS))
def test_bad_rows_raise_when_not_skipped(tiny, name):
    with pytest.raises((ValueError, FileNotFoundError)):
        ASRCollator(tiny.processor, skip_bad_rows=False)([BAD_ASR_ROWS[name]])


def test_a_corrupt_image_is_a_bad_row(tiny):
    collator = CaptioningCollator(tiny.processor)
    batch = collator(
        [{"image": b"\xff\xd8 truncated jpeg", "captions": CAPTIONS}, {"image": picture(), "captions": CAPTIONS}]
    )
    assert collator.stats.bad_rows == 1 and batch["pixel_values"].shape[0] == 1


def test_a_processor_without_the_needed_tower_is_an_error_not_a_skip(tiny):
    processor = MultimodalGPTProcessor(tokenizer=tiny.tokenizer, media_token_spec={"image": None, "audio": None})
    with pytest.raises(ValueError, match="no feature_extractor"):
        ASRCollator(processor)([{"audio": clip(), "text": "one"}])


# ----- real data ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def realistic(tiny):
    """A processor with realistic media token counts (CLIP 224 px / patch 32: 49 tokens; wav2vec2's 320x
    downsampling and 4x frame reduction: 12.5 tokens a second), for real clips too long for the tiny model."""
    config = MultimodalGPTConfig(
        text_config=GPT2Config(vocab_size=len(tiny.tokenizer)),
        vision_config=CLIPVisionConfig(image_size=224, patch_size=32),
        audio_config=Wav2Vec2Config(),
        image_token_id=tiny.config.image_token_id,
        audio_token_id=tiny.config.audio_token_id,
    )
    return SimpleNamespace(config=config, processor=make_processor(config, tiny.tokenizer, image_size=224))


def labelled_text(tokenizer, input_ids: torch.Tensor, labels: torch.Tensor) -> str:
    return tokenizer.decode(input_ids[labels != IGNORE])


def test_real_fsdd_and_read_speech_asr(data_dir, realistic, tiny):
    fsdd = load_fsdd(data_dir)
    rows = [fsdd[index] for index in range(0, len(fsdd), 450)]  # 6 rows, digits 0-8
    rows += [load_read_speech(data_dir)[0]]
    batch = ASRCollator(realistic.processor)(rows)
    eos = tiny.tokenizer.eos_token
    for index, row in enumerate(rows):
        info = soundfile.info(row["audio"])
        num_samples = int(batch["input_values_mask"][index].sum())
        assert num_samples == round(info.frames * 16000 / info.samplerate)  # FSDD's 8 kHz resampled to 16 kHz
        audio_tokens = (batch["input_ids"][index] == realistic.config.audio_token_id).sum()
        assert audio_tokens == realistic.config.num_audio_tokens(num_samples)
        assert (
            labelled_text(tiny.tokenizer, batch["input_ids"][index], batch["labels"][index]) == f" {row['text']}{eos}"
        )


def test_real_multi30k_translation_through_the_tiny_model(data_dir, tiny):
    rows = load_multi30k(data_dir, split="val").select(range(4)).to_list()
    batch = TranslationCollator(tiny.processor, max_length=256)(rows)
    for index, row in enumerate(rows):
        labelled = labelled_text(tiny.tokenizer, batch["input_ids"][index], batch["labels"][index])
        assert labelled == f" {row['target'].strip()}{tiny.tokenizer.eos_token}"
    assert torch.isfinite(tiny.model.train()(**batch).loss)


def test_real_flickr8k_captioning_and_mmt_through_the_tiny_model(data_dir, tiny):
    rows = keep_multi30k_rows(load_flickr8k(data_dir, split="val")).select(range(3)).to_list()
    mmt_task = get_task("mmt", source_column="m30_en", target_column="m30_de")
    collators: list[TaskCollator] = [
        CaptioningCollator(tiny.processor, max_length=256),
        MMTCollator(tiny.processor, task=mmt_task, max_length=256),
    ]
    model = tiny.model.train()
    for collator in collators:
        batch = collator(rows)
        assert batch["pixel_values"].shape == (3, 3, 8, 8)
        assert ((batch["input_ids"] == tiny.config.image_token_id).sum(-1) == tiny.image_tokens).all()
        assert torch.isfinite(model(**batch).loss)
    references = CaptioningCollator(tiny.processor, for_generation=True)(rows)["references"]
    assert [len(captions) for captions in references] == [5, 5, 5]
    mmt_references = MMTCollator(tiny.processor, task=mmt_task, for_generation=True)(rows)["references"]
    assert mmt_references == [[row["m30_de"].strip()] for row in rows]


def test_a_clip_longer_than_a_whisper_window_is_a_bad_row():
    """The tiny Whisper-style tower takes a 1 s window: a 1.5 s clip is skipped and counted, the batch goes on."""
    from tests.tiny_models import tiny_processor_and_model

    processor, model = tiny_processor_and_model(vision=None, audio="whisper")
    collator = TaskCollator(processor=processor, task=get_task("asr"))
    rows = [
        {"audio": {"array": np.zeros(24000, np.float32), "sampling_rate": 16000}, "text": "too long"},
        {"audio": {"array": np.ones(8000, np.float32) * 0.1, "sampling_rate": 16000}, "text": "fits"},
    ]
    batch = collator(rows)
    assert collator.stats.bad_rows == 1 and batch["input_ids"].shape[0] == 1
    model(**batch)
