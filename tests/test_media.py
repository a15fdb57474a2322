"""Audio and image decoding without FFmpeg / torchcodec, and `datasets` media columns handed to it."""

import io
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from multimodal_gpt.data.sources import undecoded_media_columns
from multimodal_gpt.media_multimodal_gpt import load_audio, load_image, read_audio

FSDD_CLIP = "0_george_10.wav"  # 5,958 samples at 8 kHz


@pytest.fixture(scope="module")
def fsdd_clip(data_dir: Path) -> Path:
    return data_dir / "fsdd" / "train" / FSDD_CLIP


@pytest.fixture(scope="module")
def flickr_image(data_dir: Path) -> Path:
    return data_dir / "flickr8k" / "images" / "1000268201_693b08cb0e.jpg"


def _wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# --- audio -------------------------------------------------------------------------------------------------------


def test_read_fsdd_clip_at_its_own_rate(fsdd_clip: Path) -> None:
    audio, rate = read_audio(fsdd_clip)
    assert rate == 8000
    assert audio.shape == (5958,) and audio.dtype == np.float32
    reference, _ = soundfile.read(fsdd_clip, dtype="float32")
    np.testing.assert_array_equal(audio, reference)
    np.testing.assert_array_equal(load_audio(str(fsdd_clip)), reference)


def test_resample_8k_to_16k(fsdd_clip: Path) -> None:
    audio = load_audio(fsdd_clip, sampling_rate=16000)
    assert audio.shape == (2 * 5958,) and audio.dtype == np.float32
    assert np.abs(audio).max() > 0.01  # a spoken digit, not silence
    with pytest.raises(ValueError, match=r"8000 Hz.*16000 Hz"):
        load_audio(fsdd_clip, sampling_rate=16000, resample=False)
    assert load_audio(fsdd_clip, sampling_rate=8000, resample=False).shape == (5958,)


def test_read_speech_flac(data_dir: Path) -> None:
    audio, rate = read_audio(data_dir / "read_speech" / "wavs" / "LJ001-0001.flac")
    assert rate == 16000 and 2.6 * 16000 <= len(audio) <= 12.4 * 16000


def test_audio_sources_agree(fsdd_clip: Path) -> None:
    reference = load_audio(fsdd_clip, 16000)
    raw = fsdd_clip.read_bytes()
    samples, _ = soundfile.read(fsdd_clip, dtype="int16")
    sources = [
        raw,
        {"path": str(fsdd_clip), "bytes": None},  # datasets' Audio(decode=False)
        {"path": "elsewhere/clip.wav", "bytes": raw},  # bytes win over a path that is only a name
        {"array": samples.astype(np.float32) / 32768, "sampling_rate": 8000},  # datasets' decoded Audio
    ]
    for source in sources:
        np.testing.assert_allclose(load_audio(source, 16000), reference, atol=1e-6)
    np.testing.assert_allclose(load_audio(samples, 16000, orig_sampling_rate=8000), reference, atol=1e-6)


def test_arrays_need_a_rate_and_are_mixed_down() -> None:
    stereo = np.stack([np.full(100, 0.5), np.full(100, -0.1)]).astype(np.float32)  # (channels, samples)
    with pytest.raises(ValueError, match="orig_sampling_rate"):
        load_audio(stereo)
    for layout in (stereo, stereo.T):
        np.testing.assert_allclose(load_audio(layout, orig_sampling_rate=8000), np.full(100, 0.2), atol=1e-7)


def test_stereo_file_is_mixed_down(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([np.full(400, 0.5), np.zeros(400)], axis=1), 16000)
    np.testing.assert_allclose(load_audio(path), np.full(400, 0.25), atol=1e-4)


def test_broken_audio_files_name_the_file(tmp_path: Path, fsdd_clip: Path) -> None:
    raw = fsdd_clip.read_bytes()
    broken = {
        "noise.wav": np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes(),
        "truncated.wav": raw[: len(raw) // 2],  # libsndfile alone would decode the first half silently
        "truncated.flac": (fsdd_clip.parents[2] / "read_speech" / "wavs" / "LJ001-0001.flac").read_bytes()[:5000],
        "empty_file.wav": b"",
        "no_samples.wav": _wav_bytes(np.zeros(0, dtype=np.float32), 8000),
    }
    for name, content in broken.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=name):
            load_audio(tmp_path / name, 16000)
    with pytest.raises(ValueError, match="empty"):
        load_audio({"array": np.zeros(0, dtype=np.float32), "sampling_rate": 8000})
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav")


# --- images ------------------------------------------------------------------------------------------------------


def test_load_flickr_image(flickr_image: Path) -> None:
    image = load_image(flickr_image)
    assert image.mode == "RGB" and image.size == (192, 256)
    for source in (str(flickr_image), flickr_image.read_bytes(), {"path": str(flickr_image), "bytes": None}):
        assert np.array_equal(np.asarray(load_image(source)), np.asarray(image))


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "CMYK", "1"])
def test_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / ("image.png" if mode != "CMYK" else "image.jpg")
    Image.new(mode, (5, 3)).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (5, 3)


def test_transparent_pixels_become_white_and_grays_stay_gray() -> None:
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 0))
    assert np.asarray(load_image(rgba)).tolist() == [[[255, 0, 0], [255, 255, 255]]]
    gray = load_image(np.array([[0, 128], [200, 255]], dtype=np.uint8))
    assert np.asarray(gray)[1, 0].tolist() == [200, 200, 200]
    sixteen_bit = load_image(Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)))
    assert np.asarray(sixteen_bit)[0].tolist() == [[0, 0, 0], [255, 255, 255]]


def test_image_arrays() -> None:
    chw = np.zeros((3, 4, 6), dtype=np.float32)
    chw[0] = 1.0
    image = load_image(chw)
    assert image.size == (6, 4) and image.getpixel((0, 0)) == (255, 0, 0)
    assert load_image(np.zeros((4, 6, 4), dtype=np.uint8)).size == (6, 4)
    with pytest.raises(ValueError, match="pass uint8 or 16-bit pixels, or floats"):
        load_image(np.full((2, 2), 300, dtype=np.int32))


def test_float_and_sixteen_bit_images_keep_their_values() -> None:
    """Pillow's own conversion clips 16-bit and float pixels to [0, 255]: near-white or black images."""
    reference = np.array([[0, 64, 128, 255]], dtype=np.uint8)
    sixteen_bit = reference.astype(np.uint16) * 257
    sources = [
        Image.fromarray(reference.astype(np.float32) / 255),  # mode F in [0, 1]
        Image.fromarray(reference.astype(np.float32)),  # mode F in [0, 255]
        Image.fromarray(sixteen_bit),  # mode I;16
        Image.fromarray(sixteen_bit.astype(np.int32)),  # mode I
        sixteen_bit,  # a uint16 array
        reference.astype(np.float64) / 255,
        reference.astype(np.float32) + 0.2,  # floats in [0, 255] are rounded, not truncated
    ]
    for source in sources:
        assert np.asarray(load_image(source))[..., 0].tolist() == reference.tolist(), source


def test_tensors_are_read_like_arrays() -> None:
    chw = torch.rand(3, 4, 6, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(np.asarray(load_image(chw)), np.asarray(load_image(chw.numpy())))
    assert load_image(chw.bfloat16()).size == (6, 4)
    pcm = torch.tensor([0, 16384, -32768], dtype=torch.int16)
    np.testing.assert_array_equal(load_audio(pcm, orig_sampling_rate=8000), [0.0, 0.5, -1.0])
    np.testing.assert_array_equal(
        load_audio({"array": pcm.float().bfloat16(), "sampling_rate": 8000}), [0, 16384, -32768]
    )


def test_empty_nan_and_oversized_images_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for empty in (Image.new("RGB", (0, 0)), np.zeros((0, 4), np.uint8)):
        with pytest.raises(ValueError, match="empty"):
            load_image(empty)
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_image(np.full((2, 2), np.nan, np.float32))
    Image.new("L", (40, 40)).save(tmp_path / "large.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # Pillow refuses over twice the limit: 1,600 > 1,000
    with pytest.raises(ValueError, match=r"large.png as a possible decompression bomb.*MAX_IMAGE_PIXELS"):
        load_image(tmp_path / "large.png")


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.new("RGB", (8, 4)).save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").size == (4, 8)


def test_broken_images_name_the_file(tmp_path: Path, flickr_image: Path) -> None:
    raw = flickr_image.read_bytes()
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(png, "PNG")
    broken = {
        "truncated.jpg": raw[: len(raw) // 2],
        "truncated.png": png.getvalue()[: len(png.getvalue()) // 2],
        "not_an_image.jpg": b"plain text, not a JPEG",
        "empty.png": b"",
    }
    for name, content in broken.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=name):
            load_image(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        load_image(tmp_path / "missing.jpg")


# --- datasets columns without torchcodec -------------------------------------------------------------------------


def test_undecoded_media_columns(data_dir: Path, flickr_image: Path) -> None:
    clips = sorted((data_dir / "fsdd" / "train").glob("1_theo_1*.wav"))[:3]
    table = datasets.Dataset.from_dict(
        {"audio": [str(path) for path in clips], "image": [str(flickr_image)] * 3, "text": ["one"] * 3}
    )
    decoding = table.cast_column("audio", datasets.Audio(sampling_rate=16000)).cast_column("image", datasets.Image())
    ours = undecoded_media_columns(decoding)
    assert ours.features["audio"] == datasets.Audio(sampling_rate=16000, decode=False)
    assert ours.features["image"] == datasets.Image(decode=False)
    assert ours.features["text"] == datasets.Value("string")
    for row, path in zip(ours, clips):
        assert row["audio"] == {"path": str(path), "bytes": None}
        assert load_audio(row["audio"], 16000).shape == (2 * soundfile.info(path).frames,)
        assert load_image(row["image"]).size == (192, 256)
    nested = datasets.Dataset.from_dict({"clips": [[str(clips[0])]]}).cast_column(
        "clips", datasets.List(datasets.Audio())
    )
    splits = undecoded_media_columns(datasets.DatasetDict({"train": nested}))
    assert splits["train"].features["clips"] == datasets.List(datasets.Audio(decode=False))
    assert read_audio(splits["train"][0]["clips"][0])[1] == 8000


def test_a_decoding_error_is_the_same_text_every_time():
    """The decoder's message must not carry an object's address (soundfile names the BytesIO it read): the
    processor and the collator, or two calls, give the same text for the same bad bytes."""
    messages = set()
    for _ in range(3):
        with pytest.raises(ValueError, match="Could not decode audio") as error:
            read_audio(b"this is not audio at all" * 4)
        messages.add(str(error.value))
    (message,) = messages
    assert "object at 0x" not in message
