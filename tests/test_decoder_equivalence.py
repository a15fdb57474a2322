"""One media decoder for training and serving: a corpus of edge and bad inputs gives identical tensors, or the
identical error, through the processor (serving) and through the training collators; the collators skip and count
what the processor refuses."""

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from multimodal_gpt.data.collators import ASRCollator, CaptioningCollator
from tests.tiny_models import tiny_processor_and_model

SR = 16000
RNG = np.random.default_rng(0)


def wave(seconds: float, rate: int = SR, channels: int = 1) -> np.ndarray:
    """A chirp, `(samples,)` or `(samples, channels)`, in [-0.5, 0.5]."""
    time = np.arange(int(seconds * rate)) / rate
    mono = 0.5 * np.sin(2 * np.pi * (200 + 800 * time) * time)
    return mono if channels == 1 else np.stack([mono * (index + 1) / channels for index in range(channels)], 1)


def audio_file(samples: np.ndarray, rate: int = SR, file_format: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=file_format, subtype=subtype)
    return buffer.getvalue()


def image_file(image: Image.Image, file_format: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, file_format, **options)
    return buffer.getvalue()


def pixels(mode: str = "RGB", size: tuple[int, int] = (12, 10)) -> Image.Image:
    rgba = Image.fromarray(RNG.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8), "RGBA")
    return rgba if mode == "RGBA" else rgba.convert(mode)


def half_transparent() -> Image.Image:
    image = pixels("RGBA")
    alpha = np.zeros((10, 12), dtype=np.uint8)
    alpha[:, 6:] = 255
    image.putalpha(Image.fromarray(alpha))
    return image


def palette_with_transparency() -> Image.Image:
    image = pixels("P")
    image.info["transparency"] = 0
    return image


def rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return image_file(pixels(), "JPEG", exif=exif)


def files(folder: Path) -> dict[str, Path]:
    """The corpus's files on disk (paths are one of the accepted forms)."""
    written = {
        "clip.wav": audio_file(wave(0.05, 8000), 8000),
        "stereo.wav": audio_file(wave(0.05, channels=2)),
        "gray.png": image_file(pixels("L")),
        "sixteen_bit.png": image_file(Image.fromarray((RNG.random((10, 12)) * 65535).astype(np.uint16))),
        "photo.jpg": image_file(pixels(), "JPEG"),
        "rotated.jpg": rotated_jpeg(),
        # a decompression bomb: 400 megapixels of one bit, 48 kB of PNG
        "bomb.png": image_file(Image.new("1", (20000, 20000))),
    }
    for name, content in written.items():
        (folder / name).write_bytes(content)
    return {name: folder / name for name in written}


Builder = Callable[[dict[str, Path]], Any]
# (name, medium, builder of the source from the corpus files, whether it is usable)
CORPUS: list[tuple[str, str, Builder, bool]] = [
    # --- usable images ---
    ("png path", "image", lambda f: str(f["gray.png"]), True),
    ("jpeg path object", "image", lambda f: f["photo.jpg"], True),
    ("jpeg bytes", "image", lambda f: f["photo.jpg"].read_bytes(), True),
    ("exif-rotated jpeg", "image", lambda f: f["rotated.jpg"], True),
    ("16-bit png file", "image", lambda f: f["sixteen_bit.png"], True),
    ("datasets Image(decode=False) path", "image", lambda f: {"path": str(f["photo.jpg"]), "bytes": None}, True),
    ("datasets Image(decode=False) bytes", "image",
     lambda f: {"path": "x.png", "bytes": f["gray.png"].read_bytes()}, True),
    ("PIL RGB", "image", lambda f: pixels(), True),
    ("PIL grayscale L", "image", lambda f: pixels("L"), True),
    ("PIL CMYK", "image", lambda f: pixels("CMYK"), True),
    ("PIL palette P", "image", lambda f: pixels("P"), True),
    ("PIL palette with transparency", "image", lambda f: palette_with_transparency(), True),
    ("PIL LA", "image", lambda f: pixels("LA"), True),
    ("PIL RGBA half transparent", "image", lambda f: half_transparent(), True),
    ("PIL 1-bit", "image", lambda f: pixels("1"), True),
    ("PIL I;16", "image", lambda f: Image.fromarray((RNG.random((10, 12)) * 65535).astype(np.uint16)), True),
    ("PIL I (32-bit)", "image", lambda f: Image.fromarray((RNG.random((10, 12)) * 65535).astype(np.int32)), True),
    ("PIL F in [0, 1]", "image", lambda f: Image.fromarray(RNG.random((10, 12)).astype(np.float32)), True),
    ("PIL F in [0, 255]", "image", lambda f: Image.fromarray((RNG.random((10, 12)) * 255).astype(np.float32)), True),
    ("uint8 HWC array", "image", lambda f: np.asarray(pixels()), True),
    ("uint8 HW array", "image", lambda f: np.asarray(pixels("L")), True),
    ("uint8 RGBA array", "image", lambda f: np.asarray(half_transparent()), True),
    ("float32 HWC array in [0, 1]", "image", lambda f: np.asarray(pixels(), np.float32) / 255, True),
    ("float64 CHW array in [0, 1]", "image",
     lambda f: np.asarray(pixels(), np.float64).transpose(2, 0, 1) / 255, True),
    ("uint16 HW array", "image", lambda f: (RNG.random((10, 12)) * 65535).astype(np.uint16), True),
    ("torch float CHW tensor", "image",
     lambda f: torch.from_numpy(np.asarray(pixels(), np.float32) / 255).permute(2, 0, 1), True),
    ("torch uint8 HWC tensor", "image", lambda f: torch.from_numpy(np.asarray(pixels()).copy()), True),
    ("torch bfloat16 CHW tensor", "image",
     lambda f: torch.rand(3, 10, 12, generator=torch.Generator().manual_seed(0)).bfloat16(), True),
    # --- bad images ---
    ("0x0 PIL image", "image", lambda f: Image.new("RGB", (0, 0)), False),
    ("0x5 array", "image", lambda f: np.zeros((0, 5, 3), np.uint8), False),
    ("decompression bomb", "image", lambda f: f["bomb.png"], False),
    ("truncated jpeg bytes", "image", lambda f: f["photo.jpg"].read_bytes()[:300], False),
    ("not an image", "image", lambda f: b"plain text, not a PNG", False),
    ("empty bytes", "image", lambda f: b"", False),
    ("missing image file", "image", lambda f: f["photo.jpg"].with_name("missing.jpg"), False),
    ("NaN image array", "image", lambda f: np.full((10, 12, 3), np.nan, np.float32), False),
    ("float array out of range", "image", lambda f: np.full((10, 12, 3), 1000.0, np.float32), False),
    ("two-channel array", "image", lambda f: np.zeros((10, 12, 2), np.uint8), False),
    ("image dict without path or bytes", "image", lambda f: {"url": "x"}, False),
    ("an int", "image", lambda f: 5, False),
    # --- usable audio ---
    ("16-bit WAV path at 8 kHz", "audio", lambda f: str(f["clip.wav"]), True),
    ("stereo WAV path", "audio", lambda f: f["stereo.wav"], True),
    ("8-bit WAV bytes", "audio", lambda f: audio_file(wave(0.05), subtype="PCM_U8"), True),
    ("24-bit WAV bytes", "audio", lambda f: audio_file(wave(0.05), subtype="PCM_24"), True),
    ("float WAV bytes", "audio", lambda f: audio_file(wave(0.05), subtype="FLOAT"), True),
    ("FLAC bytes at 22.05 kHz", "audio", lambda f: audio_file(wave(0.05, 22050), 22050, "FLAC"), True),
    ("OGG Vorbis bytes", "audio", lambda f: audio_file(wave(0.2), file_format="OGG", subtype="VORBIS"), True),
    ("datasets Audio(decode=False) bytes", "audio",
     lambda f: {"path": "clip.wav", "bytes": f["clip.wav"].read_bytes()}, True),
    ("float32 array dict", "audio", lambda f: {"array": wave(0.05).astype(np.float32), "sampling_rate": SR}, True),
    ("int16 array dict", "audio",
     lambda f: {"array": (wave(0.05, 8000) * 32767).astype(np.int16), "sampling_rate": 8000}, True),
    ("stereo (channels, samples) dict", "audio",
     lambda f: {"array": wave(0.05, channels=2).T, "sampling_rate": SR}, True),
    ("torch tensor dict", "audio",
     lambda f: {"array": torch.from_numpy(wave(0.05)).float(), "sampling_rate": SR}, True),
    ("torch bfloat16 tensor dict", "audio",
     lambda f: {"array": torch.from_numpy(wave(0.05)).bfloat16(), "sampling_rate": SR}, True),
    ("silent clip", "audio", lambda f: {"array": np.zeros(800, np.float32), "sampling_rate": SR}, True),
    ("very short clip (one frame)", "audio", lambda f: {"array": wave(0.003), "sampling_rate": SR}, True),
    # --- bad audio ---
    ("NaN samples", "audio", lambda f: {"array": np.full(800, np.nan, np.float32), "sampling_rate": SR}, False),
    ("inf samples", "audio",
     lambda f: {"array": np.r_[wave(0.05), np.inf].astype(np.float32), "sampling_rate": SR}, False),
    ("truncated WAV bytes", "audio", lambda f: f["clip.wav"].read_bytes()[:400], False),
    ("WAV with zero samples", "audio", lambda f: audio_file(np.zeros(0, np.float32)), False),
    ("garbage bytes", "audio", lambda f: RNG.integers(0, 256, 2000, dtype=np.uint8).tobytes(), False),
    ("missing audio file", "audio", lambda f: f["clip.wav"].with_name("missing.wav"), False),
    ("too short for one frame", "audio", lambda f: {"array": wave(0.001), "sampling_rate": SR}, False),
    ("bare array without a rate", "audio", lambda f: wave(0.05).astype(np.float32), False),
    ("3-D array", "audio", lambda f: {"array": np.zeros((2, 2, 100), np.float32), "sampling_rate": SR}, False),
    ("audio dict without array, path or bytes", "audio", lambda f: {"sampling_rate": SR}, False),
]  # fmt: skip


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory) -> dict[str, Path]:
    return files(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def processor():
    return tiny_processor_and_model(vision="vit", audio="wav2vec2")[0]


def media_of(batch: Any, processor) -> dict[str, np.ndarray]:
    """The media tensors of a batch, and how many placeholder tokens it holds."""
    media = {key: np.asarray(value) for key, value in batch.items() if key not in ("input_ids", "attention_mask")}
    media.pop("labels", None)
    ids = np.asarray(batch["input_ids"])
    media["image_tokens"] = np.asarray((ids == processor.image_token_id).sum())
    media["audio_tokens"] = np.asarray((ids == processor.audio_token_id).sum())
    return media


def outcome(call: Callable[[], Any], processor) -> dict[str, np.ndarray] | tuple[type, str]:
    try:
        return media_of(call(), processor)
    except (ValueError, FileNotFoundError, TypeError) as error:
        return type(error), str(error)


def serving(processor, medium: str, source: Any):
    if medium == "image":
        return lambda: processor(text="<image>", images=[source])
    return lambda: processor(text="<audio>", audio=[source])


def training(processor, medium: str, source: Any, skip_bad_rows: bool = False):
    if medium == "image":
        collator, row = (
            CaptioningCollator(processor, skip_bad_rows=skip_bad_rows),
            {"image": source, "captions": ["a"]},
        )
    else:
        collator, row = ASRCollator(processor, skip_bad_rows=skip_bad_rows), {"audio": source, "text": "one"}
    return collator, row


@pytest.mark.parametrize(("name", "medium", "build", "usable"), CORPUS, ids=[case[0] for case in CORPUS])
def test_processor_and_collator_decode_alike(name, medium, build, usable, corpus_files, processor):
    source = build(corpus_files)
    served = outcome(serving(processor, medium, source), processor)
    collator, row = training(processor, medium, source)
    trained = outcome(lambda: collator([row]), processor)
    if not usable:
        assert isinstance(served, tuple), f"{name} was accepted"
        assert served == trained  # the identical error, type and message
        return
    assert isinstance(served, dict), f"{name} was refused: {served}"
    assert isinstance(trained, dict), f"{name} was refused in training: {trained}"
    assert served.keys() == trained.keys()
    for key, value in served.items():
        np.testing.assert_array_equal(trained[key], value, err_msg=f"{name}: {key}")


@pytest.mark.parametrize(
    ("name", "medium", "build"), [case[:3] for case in CORPUS if not case[3]], ids=[c[0] for c in CORPUS if not c[3]]
)
def test_training_skips_and_counts_what_serving_refuses(name, medium, build, corpus_files, processor):
    good = {"image": np.asarray(pixels()), "audio": {"array": wave(0.05), "sampling_rate": SR}}[medium]
    collator, bad_row = training(processor, medium, build(corpus_files), skip_bad_rows=True)
    _, good_row = training(processor, medium, good)
    batch = collator([bad_row, good_row])
    assert batch["input_ids"].shape[0] == 1
    assert collator.stats.bad_rows == 1


def test_the_corpus_is_large_and_covers_both_outcomes():
    assert len(CORPUS) >= 40
    assert sum(usable for *_, usable in CORPUS) >= 20 and sum(not usable for *_, usable in CORPUS) >= 20


def test_whisper_windows_and_bombs_are_refused_alike(corpus_files):
    processor = tiny_processor_and_model(vision="vit", audio="whisper")[0]
    cases = {
        "longer than the audio tower's 1 s window": ("audio", {"array": wave(1.5), "sampling_rate": SR}),
        "decompression bomb": ("image", corpus_files["bomb.png"]),
    }
    for message, (medium, source) in cases.items():
        served = outcome(serving(processor, medium, source), processor)
        collator, row = training(processor, medium, source)
        assert served == outcome(lambda: collator([row]), processor)  # noqa: B023 (called at once)
        assert message in served[1]
