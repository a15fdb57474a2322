"""The peer benchmark (`multimodal-gpt benchmark peers`, multimodal_gpt/benchmarks/): end to end at tiny shapes, our
rows' batches straight from the package's collators, the peers fed the same data, LLaVA's GPT-2 head tied, the
tokenizer's size, and the CPU peak-memory probe."""

import json
import time

import pytest
import torch

from multimodal_gpt.benchmarks import SYSTEM_NAMES, TINY_SHAPES, benchmark_tokenizer, build_systems, peers
from multimodal_gpt.benchmarks.measure import _rss_peak, _sampled_rss_peak
from multimodal_gpt.benchmarks.peer_systems import labelled_tokens
from multimodal_gpt.data.collators import COLLATORS, IGNORE_INDEX

MEBIBYTE = 2**20


@pytest.fixture(scope="module")
def systems():
    return {system.name: system for system in build_systems(SYSTEM_NAMES, shapes=TINY_SHAPES)}


def test_every_system_end_to_end_writes_json_markdown_and_chart(tmp_path):
    results = peers.main(["--tiny", "--rounds", "2", "--output_dir", str(tmp_path)])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["settings"]["rounds"] == 2 and saved["settings"]["precision"] == "fp32"
    rows = {row["name"]: row for row in saved["systems"]}
    assert list(rows) == list(SYSTEM_NAMES)
    for row in rows.values():
        for key in ("train_step_s", "generation_s", "train_samples_per_s", "generation_tokens_per_s"):
            spread = row[key]
            assert spread["min"] <= spread["median"] <= spread["max"] and spread["min"] > 0
        assert len(row["train_step_s"]["runs"]) == len(row["generation_s"]["runs"]) == 2
        assert row["peak_memory_mib"] == pytest.approx(row["resident_mib"] + row["step_peak_mib"])
        assert row["resident_mib"] > 0 and row["step_peak_mib"] >= 0
        assert row["vs_gpt2"]["baseline"] == "gpt2"
    assert rows["ours_captioning_mlp"]["vs_peer"]["baseline"] == "vision_encoder_decoder"
    assert rows["llava"]["vs_peer"]["baseline"] == "vision_encoder_decoder"
    assert rows["ours_asr_linear"]["vs_peer"]["baseline"] == "speech_encoder_decoder"
    assert rows["vision_encoder_decoder"]["vs_peer"]["train"] == pytest.approx(1.0)
    assert rows["gpt2"]["vs_peer"] is None and rows["gpt2"]["vs_gpt2"]["generation"] == pytest.approx(1.0)
    ours = rows["ours_asr_mlp"]
    expected = ours["train_samples_per_s"]["median"] / rows["speech_encoder_decoder"]["train_samples_per_s"]["median"]
    assert ours["vs_peer"]["train"] == pytest.approx(expected)
    frozen, trained = rows["ours_captioning_resampler_frozen"], rows["ours_captioning_resampler"]
    assert frozen["trainable_parameters"] < trained["trainable_parameters"]
    # wav2vec2's front end frozen on both sides: each compared with the other, not with the trained peer
    for trained in ("speech_encoder_decoder", "ours_asr_resampler"):
        frozen = rows[f"{trained}_feature_encoder_frozen"]
        assert frozen["vs_peer"]["baseline"] == "speech_encoder_decoder_feature_encoder_frozen"
        assert frozen["trainable_parameters"] < rows[trained]["trainable_parameters"]

    lines = (tmp_path / "results.md").read_text().splitlines()
    table = [line for line in lines if line.startswith("| ") and not line.startswith("| ---")]
    assert len(table) == 1 + len(SYSTEM_NAMES)  # the header, then one row per system
    assert [line.split(" | ")[0][2:] for line in table[1:]] == [row["label"] for row in rows.values()]
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_subset_without_the_peers_has_no_ratios(tmp_path):
    results = peers.main(
        [
            "--tiny",
            "--rounds",
            "1",
            "--systems",
            "ours_asr_linear",
            "--precision",
            "bf16",
            "--output_dir",
            str(tmp_path),
        ]
    )
    (row,) = results["systems"]
    assert row["vs_peer"] is None and row["vs_gpt2"] is None
    assert "| ours, ASR, linear |" in (tmp_path / "results.md").read_text()


def test_bad_arguments_say_what_to_use(tmp_path):
    with pytest.raises(ValueError, match="choose among vision_encoder_decoder"):
        peers.main(["--tiny", "--systems", "ved", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="--precision must be one of"):
        peers.main(["--tiny", "--precision", "fp16", "--output_dir", str(tmp_path)])


@pytest.mark.parametrize(
    "name", ["ours_captioning_linear", "ours_captioning_resampler", "ours_captioning_cross_attention", "ours_asr_mlp"]
)
def test_our_batches_are_the_collators_batches(systems, name):
    system = systems[name]
    task = "captioning" if "captioning" in name else "asr"
    config = system.model.config
    assert system.processor.media_token_spec == config.media_token_spec()
    expected = COLLATORS[task](system.processor)(system.rows)
    assert system.train_batch.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(system.train_batch[key], value), key
    generation = dict(COLLATORS[task](system.processor, for_generation=True)(system.rows))
    for key in ("references", "row_indices", "skipped_rows"):  # bookkeeping, not generate() inputs
        generation.pop(key)
    assert system.generation_inputs.keys() == generation.keys()
    assert all(torch.equal(system.generation_inputs[key], value) for key, value in generation.items())

    # [bos] + placeholders (as many as the config says) + caption + eos; labels only on the caption and eos
    input_ids, labels = system.train_batch["input_ids"], system.train_batch["labels"]
    if task == "captioning":
        placeholder, count = config.image_token_id, config.num_image_tokens()
    else:
        placeholder = config.audio_token_id
        count = config.num_audio_tokens(round(TINY_SHAPES.clip_seconds * TINY_SHAPES.sampling_rate))
    media = input_ids == placeholder
    assert media.sum(-1).tolist() == [count] * TINY_SHAPES.batch_size
    assert (labels[media] == IGNORE_INDEX).all() and (labels[:, 0] == IGNORE_INDEX).all()
    assert ((labels != IGNORE_INDEX).sum(-1) == TINY_SHAPES.text_tokens).all()
    assert (labels[:, -1] == system.processor.tokenizer.eos_token_id).all()


def test_the_peers_learn_the_same_tokens_from_the_same_media(systems):
    ours_vision, ours_audio = systems["ours_captioning_linear"], systems["ours_asr_linear"]
    captions = labelled_tokens(ours_vision.train_batch["labels"])
    assert captions.shape == (TINY_SHAPES.batch_size, TINY_SHAPES.text_tokens)
    vision_encoder_decoder = systems["vision_encoder_decoder"].train_batch
    assert torch.equal(vision_encoder_decoder["labels"], captions)
    assert torch.equal(vision_encoder_decoder["pixel_values"], ours_vision.train_batch["pixel_values"])
    speech_encoder_decoder = systems["speech_encoder_decoder"].train_batch
    assert torch.equal(speech_encoder_decoder["labels"], captions)
    assert torch.equal(speech_encoder_decoder["input_values"], ours_audio.train_batch["input_values"])
    for key, value in ours_vision.train_batch.items():  # LLaVA takes the linear fusion's batch: one token per patch
        assert torch.equal(systems["llava"].train_batch[key], value)
    assert torch.equal(labelled_tokens(systems["gpt2"].train_batch["labels"]), captions)
    assert systems["gpt2"].decoder_positions == TINY_SHAPES.text_tokens + 1  # bos + caption + eos


@pytest.mark.parametrize("fusion", ["resampler", "cross_attention"])
def test_cached_rows_train_on_the_frozen_towers_features_of_the_same_images(systems, fusion):
    cached, raw = systems[f"ours_captioning_{fusion}_cached"], systems[f"ours_captioning_{fusion}"]
    assert "pixel_values" not in cached.train_batch and "pixel_values" not in cached.generation_inputs
    assert not any(parameter.requires_grad for parameter in cached.model.vision_tower.parameters())
    with torch.no_grad():
        features = cached.model.model.encode_images(raw.train_batch["pixel_values"])
    assert torch.equal(cached.train_batch["image_features"], features)
    assert torch.equal(cached.train_batch["input_ids"], raw.train_batch["input_ids"])


def test_llava_has_gpt2s_tied_head(systems):
    llava = systems["llava"].model
    assert llava.lm_head.weight is llava.model.language_model.wte.weight
    parameters = {id(parameter): parameter for parameter in llava.parameters()}.values()
    ours_mlp = systems["ours_captioning_mlp"].model  # the same towers, a 2-layer MLP projector too
    assert sum(parameter.numel() for parameter in parameters) == ours_mlp.num_parameters()


def test_tokenizer_has_gpt2s_size_and_ids():
    tokenizer = benchmark_tokenizer()
    assert len(tokenizer) == 50_260  # 50,257 + <|pad|>, <image>, <audio>, as GPT-2's tokenizer gets
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") == 50_256 == tokenizer.eos_token_id
    assert tokenizer.decode(tokenizer(" any text, 123!")["input_ids"]) == " any text, 123!"
    with pytest.raises(ValueError, match="leaves no merges"):
        benchmark_tokenizer(257)


@pytest.mark.parametrize("probe", [_rss_peak, _sampled_rss_peak])
def test_cpu_peak_memory_counts_the_block_only(probe):
    earlier = torch.ones(96 * MEBIBYTE // 4)  # a peak before the block must not count
    del earlier
    with probe() as peak:
        held = torch.ones(48 * MEBIBYTE // 4)
        temporary = torch.ones(32 * MEBIBYTE // 4)
        time.sleep(0.02)  # long enough for the sampling probe to see it
        del held, temporary  # freed before the block ends: only the peak counts
    assert 70 * MEBIBYTE <= peak["bytes"] <= 90 * MEBIBYTE
