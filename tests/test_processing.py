"""MultimodalGPTProcessor: placeholder expansion that agrees with the model for every tower x fusion, audio rates
and decoding, images of any mode, bad input, saving and loading (also as remote code)."""

import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.numpy import load_file
from transformers import AutoProcessor

from multimodal_gpt import MultimodalGPTForConditionalGeneration, MultimodalGPTProcessor
from tests.tiny_models import FUSIONS, save_pretrained_parts, tiny_processor_and_model

SR = 16000


def clip(seconds: float, rate: int = SR, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * rate)).astype(np.float32) * 0.1


def image(mode: str = "RGB", size=(12, 10)) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 4), dtype=np.uint8)
    return Image.fromarray(pixels, "RGBA").convert(mode)


def media_feature_counts(model, inputs) -> tuple[int, int]:
    """How many media tokens the model produces for these inputs (0 where a modality is absent)."""
    images = audio = 0
    if "pixel_values" in inputs:
        features = model.get_image_features(inputs["pixel_values"]).pooler_output
        images = (
            features.shape[0] if model.config.fusion["vision"] == "cross_attention" else features.shape[:2].numel()
        )
    audio_keys = {k: v for k, v in inputs.items() if k.startswith(("input_values", "input_features"))}
    if audio_keys:
        mask = model.get_audio_features(**audio_keys).pooler_output_mask
        audio = mask.shape[0] if model.config.fusion["audio"] == "cross_attention" else int(mask.sum())
    return images, audio


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize(
    ("vision", "audio"),
    [("clip", "wav2vec2"), ("siglip", "hubert"), ("vit", "whisper"), ("resnet", "wav2vec2"), ("convnext", "whisper")],
)
def test_processor_and_model_agree_for_every_tower_and_fusion(vision, audio, fusion):
    processor, model = tiny_processor_and_model(vision=vision, audio=audio, fusion=fusion)
    texts = ["two images <image> and <image>, a clip <audio>", "a longer clip <audio> only", "just text"]
    clips = [clip(0.03), clip(0.08, seed=1)] if audio != "whisper" else [clip(0.2), clip(0.7, seed=1)]
    inputs = processor(
        text=texts, images=[image(), image()], audio=clips, sampling_rate=SR, return_tensors="pt", padding=True
    )
    image_placeholders = int((inputs["input_ids"] == processor.image_token_id).sum())
    audio_placeholders = int((inputs["input_ids"] == processor.audio_token_id).sum())
    assert (image_placeholders, audio_placeholders) == media_feature_counts(model, inputs)
    with torch.no_grad():
        outputs = model(**inputs)
    assert outputs.logits.shape[:2] == inputs["input_ids"].shape
    if fusion in ("linear", "mlp"):
        rows = (inputs["input_ids"] == processor.audio_token_id).sum(-1).tolist()
        assert rows[0] < rows[1]  # the longer clip gives more tokens


def test_whisper_clips_are_padded_to_its_window_but_tokens_follow_the_length():
    processor, model = tiny_processor_and_model(vision=None, audio="whisper", fusion="mlp")
    inputs = processor(text=["<audio>", "<audio>"], audio=[clip(0.2), clip(0.5)], sampling_rate=SR, padding=True)
    features = torch.tensor(np.asarray(inputs["input_features"]))
    assert features.shape[-1] == 100  # the tiny Whisper's fixed window: 1 s of 10 ms frames
    assert inputs["input_features_mask"].sum(-1).tolist() == [20, 50]
    # conv stride 2 then frame reduction 2: 20 frames -> 10 -> 5 tokens; 50 -> 25 -> 13
    assert [ids.count(processor.audio_token_id) for ids in inputs["input_ids"]] == [5, 13]


def test_waveform_towers_pad_only_to_the_longest_clip():
    processor, _ = tiny_processor_and_model(vision=None, audio="wav2vec2")
    inputs = processor(text=["<audio>", "<audio>"], audio=[clip(0.02), clip(0.05)], sampling_rate=SR)
    assert np.asarray(inputs["input_values"]).shape == (2, 800)


class TestAudioInputs:
    def test_resampling_and_its_refusal(self):
        processor, _ = tiny_processor_and_model(vision=None, audio="wav2vec2")
        inputs = processor(text="<audio>", audio=clip(0.02, rate=8000), sampling_rate=8000, return_tensors="pt")
        assert inputs["input_values"].shape[-1] == 320  # 160 samples at 8 kHz -> 320 at 16 kHz
        with pytest.raises(ValueError, match="sampled at 8000 Hz but 16000 Hz was requested"):
            processor(text="<audio>", audio=clip(0.02, rate=8000), sampling_rate=8000, resample=False)

    def test_a_missing_rate_is_an_error(self):
        processor, _ = tiny_processor_and_model(vision=None, audio="wav2vec2")
        with pytest.raises(ValueError, match="sampling_rate"):
            processor(text="<audio>", audio=clip(0.02))

    def test_files_bytes_and_datasets_dicts(self, tmp_path):
        processor, _ = tiny_processor_and_model(vision=None, audio="wav2vec2")
        wav = tmp_path / "clip.wav"
        soundfile.write(wav, clip(0.02, rate=8000), 8000)
        buffer = io.BytesIO()
        soundfile.write(buffer, clip(0.02, rate=8000), 8000, format="FLAC")
        sources = [
            str(wav),
            wav.read_bytes(),
            {"path": None, "bytes": buffer.getvalue()},  # a datasets Audio(decode=False) value
            {"array": clip(0.02, rate=8000), "sampling_rate": 8000},  # a decoded datasets Audio value
        ]
        for source in sources:
            inputs = processor(text="<audio>", audio=source, return_tensors="pt")
            assert inputs["input_values"].shape[-1] == 320

    def test_bad_clips(self, tmp_path):
        processor, _ = tiny_processor_and_model(vision=None, audio="wav2vec2")
        with pytest.raises(ValueError, match="empty"):
            processor(text="<audio>", audio=np.zeros(0, dtype=np.float32), sampling_rate=SR)
        with pytest.raises(ValueError, match="too short"):
            processor(text="<audio>", audio=clip(0.001), sampling_rate=SR)
        corrupt = tmp_path / "corrupt.wav"
        corrupt.write_bytes(b"RIFF not really a wave file")
        with pytest.raises(ValueError, match="corrupt.wav"):
            processor(text="<audio>", audio=str(corrupt))

    def test_whisper_refuses_clips_longer_than_its_window(self):
        processor, _ = tiny_processor_and_model(vision=None, audio="whisper")
        with pytest.raises(ValueError, match="longer than the audio tower's 1 s window"):
            processor(text="<audio>", audio=clip(1.5), sampling_rate=SR)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_any_image_mode_becomes_rgb(mode):
    processor, model = tiny_processor_and_model(vision="clip", audio=None)
    picture = image("L").convert("I;16") if mode == "I;16" else image(mode)
    inputs = processor(text="<image>", images=picture, return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 3, 8, 8)
    model(**inputs)


def test_images_as_paths_bytes_tensors_and_floats_give_the_same_pixels(tmp_path):
    processor, _ = tiny_processor_and_model(vision="clip", audio=None)
    picture = image()
    picture.save(tmp_path / "picture.png")
    rgb = np.asarray(picture)
    sources = [
        tmp_path / "picture.png",
        str(tmp_path / "picture.png"),
        (tmp_path / "picture.png").read_bytes(),
        {"path": None, "bytes": (tmp_path / "picture.png").read_bytes()},
        rgb,
        rgb.astype(np.float32) / 255,  # rescaled once, not twice
        torch.from_numpy(rgb.copy()).permute(2, 0, 1),
    ]
    expected = processor(text="<image>", images=picture)["pixel_values"]
    for source in sources:
        np.testing.assert_array_equal(processor(text="<image>", images=source)["pixel_values"], expected)


def test_rgba_images_get_the_white_background_of_training():
    processor, _ = tiny_processor_and_model(vision="clip", audio=None)
    transparent = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    white = Image.new("RGB", (8, 8), (255, 255, 255))
    np.testing.assert_array_equal(
        processor(text="<image>", images=transparent)["pixel_values"],
        processor(text="<image>", images=white)["pixel_values"],
    )


def test_audio_the_decoder_refuses_is_refused_at_inference(tmp_path):
    processor, _ = tiny_processor_and_model(vision=None, audio="wav2vec2")
    samples = (clip(0.1) * 32767).astype(np.int16)
    inputs = processor(text="<audio>", audio=samples, sampling_rate=SR)
    np.testing.assert_allclose(
        inputs["input_values"], processor(text="<audio>", audio=samples / 32768, sampling_rate=SR)["input_values"]
    )
    with pytest.raises(ValueError, match="NaN or infinite"):
        processor(text="<audio>", audio=np.full(800, np.nan, np.float32), sampling_rate=SR)
    buffer = io.BytesIO()
    soundfile.write(buffer, clip(0.1), SR, format="WAV")
    (tmp_path / "cut.wav").write_bytes(buffer.getvalue()[:1000])
    with pytest.raises(ValueError, match="cut.wav is truncated"):
        processor(text="<audio>", audio=tmp_path / "cut.wav")


class TestPlaceholderChecks:
    def test_count_mismatch_names_both_counts(self):
        processor, _ = tiny_processor_and_model()
        with pytest.raises(ValueError, match="2 <image> placeholders but 1 images"):
            processor(text="<image> <image>", images=[image()])
        with pytest.raises(ValueError, match="Text 1 has 1 <image> placeholders but 0 images"):
            processor(text=["<image>", "<image>"], images=[[image()], []])

    def test_nested_media_lists_follow_the_texts(self):
        processor, _ = tiny_processor_and_model()
        flat = processor(text=["<image>", "<image><image>"], images=[image(), image("L"), image("RGBA")])
        nested = processor(text=["<image>", "<image><image>"], images=[[image()], [image("L"), image("RGBA")]])
        np.testing.assert_array_equal(np.asarray(flat["pixel_values"]), np.asarray(nested["pixel_values"]))

    def test_media_for_a_missing_tower(self):
        processor, _ = tiny_processor_and_model(vision=None, audio="wav2vec2")
        with pytest.raises(ValueError, match="no image processor"):
            processor(text="<image>", images=[image()])

    def test_truncation_through_a_media_span_is_an_error(self):
        processor, _ = tiny_processor_and_model()
        with pytest.raises(ValueError, match="truncation cut through a media span"):
            processor(text="hello <image>", images=[image()], truncation=True, max_length=10)


TEXT_PIECES = st.text(alphabet=st.characters(blacklist_characters="<>", blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.tuples(TEXT_PIECES, st.sampled_from(["", "<image>", "<audio>"])), max_size=4),
        min_size=1,
        max_size=3,
    ),
    fusion=st.sampled_from(FUSIONS),
)
def test_random_text_with_random_placeholders(rows, fusion):
    processor, model = PROCESSORS[fusion]
    texts = ["".join(piece + placeholder for piece, placeholder in row) for row in rows]
    num_images = sum(text.count("<image>") for text in texts)
    num_clips = sum(text.count("<audio>") for text in texts)
    inputs = processor(
        text=texts,
        images=[image()] * num_images or None,
        audio=[clip(0.02 + 0.01 * index) for index in range(num_clips)] or None,
        sampling_rate=SR,
    )
    image_tokens = model.config.num_image_tokens()
    for text, ids in zip(texts, inputs["input_ids"]):
        assert ids.count(processor.image_token_id) == text.count("<image>") * image_tokens
        decoded = processor.tokenizer.decode(
            [i for i in ids if i not in (processor.image_token_id, processor.audio_token_id)]
        )
        assert decoded == text.replace("<image>", "").replace("<audio>", "")
    expected_audio = sum(model.config.num_audio_tokens(int(0.02 * SR + 0.01 * SR * i)) for i in range(num_clips))
    assert sum(ids.count(processor.audio_token_id) for ids in inputs["input_ids"]) == expected_audio


PROCESSORS = {fusion: tiny_processor_and_model(fusion=fusion) for fusion in FUSIONS}


def test_save_and_load_with_and_without_a_tower(tmp_path):
    for vision, audio in [("clip", "whisper"), ("clip", None), (None, "wav2vec2"), ("resnet", None)]:
        processor, _ = tiny_processor_and_model(vision=vision, audio=audio)
        folder = tmp_path / f"{vision}-{audio}"
        processor.save_pretrained(folder)
        reloaded = AutoProcessor.from_pretrained(folder)
        assert type(reloaded) is MultimodalGPTProcessor
        assert reloaded.media_token_spec == processor.media_token_spec
        assert (reloaded.image_processor is None) == (vision is None)
        assert (reloaded.feature_extractor is None) == (audio is None)
        assert reloaded.image_token_id == processor.image_token_id
        config = json.loads((folder / "processor_config.json").read_text())
        assert config["auto_map"]["AutoProcessor"] == "processing_multimodal_gpt.MultimodalGPTProcessor"


def test_processor_and_model_from_the_same_parts_agree(tmp_path):
    parts = save_pretrained_parts(tmp_path)
    for audio, fusion in (("whisper", "mlp"), ("wav2vec2", "resampler")):
        model = MultimodalGPTForConditionalGeneration.from_pretrained_parts(
            parts["gpt2"], parts["clip"], parts[audio], fusion=fusion
        ).eval()
        processor = MultimodalGPTProcessor.from_pretrained_parts(
            parts["gpt2"], parts["clip"], parts[audio], fusion=fusion
        )
        assert processor.media_token_spec == model.config.media_token_spec()
        assert (processor.image_token_id, processor.audio_token_id) == (
            model.config.image_token_id,
            model.config.audio_token_id,
        )
        inputs = processor(
            text=["a <image> and <audio>"], images=image(), audio=clip(0.05), sampling_rate=SR, return_tensors="pt"
        )
        with torch.no_grad():
            model(**inputs)


REMOTE_PROCESSOR = textwrap.dedent(
    """
    import sys
    # Neither the package nor the optional decoders: the folder's own code must run, and arrays need no soundfile
    sys.modules["multimodal_gpt"] = sys.modules["soundfile"] = sys.modules["soxr"] = None
    import numpy as np
    from safetensors.numpy import save_file
    from transformers import AutoProcessor
    processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
    assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
    rgba = np.arange(8 * 8 * 4, dtype=np.uint8).reshape(8, 8, 4)
    pcm = (np.sin(np.arange(800) / 5) * 20000).astype(np.int16)
    inputs = processor(text=["x <image> <audio>"], images=[rgba], audio=[pcm], sampling_rate=16000)
    print(inputs["input_ids"][0])
    save_file({"pixel_values": inputs["pixel_values"], "input_values": inputs["input_values"]}, sys.argv[2])
    try:
        processor(text="<audio>", audio=b"RIFF....WAVE")
    except ImportError as error:
        print(error)
    """
)


def test_processor_loads_as_remote_code_in_a_fresh_interpreter(tmp_path):
    """The folder ships the one media decoder; it decodes as in training without the package, soundfile or soxr."""
    processor, _ = tiny_processor_and_model(vision="clip", audio="wav2vec2")
    processor.save_pretrained(tmp_path / "checkpoint")
    assert (tmp_path / "checkpoint" / "media_multimodal_gpt.py").is_file()
    script = tmp_path / "remote.py"
    script.write_text(REMOTE_PROCESSOR)
    arguments = [str(tmp_path / "checkpoint"), str(tmp_path / "media.safetensors")]
    completed = subprocess.run([sys.executable, str(script), *arguments], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rgba = np.arange(8 * 8 * 4, dtype=np.uint8).reshape(8, 8, 4)
    pcm = (np.sin(np.arange(800) / 5) * 20000).astype(np.int16)
    expected = processor(text=["x <image> <audio>"], images=[rgba], audio=[pcm], sampling_rate=16000)
    input_ids, import_error = completed.stdout.strip().splitlines()
    assert input_ids == str(expected["input_ids"][0])
    assert import_error == "Decoding audio files needs the soundfile package: pip install soundfile"
    remote = load_file(tmp_path / "media.safetensors")
    np.testing.assert_array_equal(remote["pixel_values"], expected["pixel_values"])
    np.testing.assert_array_equal(remote["input_values"], expected["input_values"])


def test_an_empty_text_is_a_clear_error():
    processor, _ = tiny_processor_and_model(fusion="mlp")
    with pytest.raises(ValueError, match="Text 0 \\(''\\) gives no tokens"):
        processor(text="", return_tensors="pt")
