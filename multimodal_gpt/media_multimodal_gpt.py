"""The one media decoder: audio and images, for training (the collators) and serving (the processor) alike.

This is a "Hub file": `save_pretrained` ships it next to the processor, so that a checkpoint loaded with
`trust_remote_code=True` decodes exactly as the training run did. It imports only numpy, torch and the standard
library at top level; soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF...), soxr (resampling) and
Pillow are optional, and a function that needs a missing one says which to install. It needs neither FFmpeg,
torchcodec nor torchvision.

`datasets` decodes `Audio` columns through torchcodec and FFmpeg, and fails with an `ImportError` where they are
missing. The project therefore keeps media columns as file paths (or as the undecoded `{"path", "bytes"}` dicts of
`Audio(decode=False)` / `Image(decode=False)`) and decodes them here:

- [`load_audio`]: float32 mono at the model's sampling rate, from a path, file bytes, an array or tensor (integer
  PCM scaled to [-1, 1)), or a `datasets` Audio value; truncated WAV files, empty clips and NaN/inf samples are
  errors;
- [`load_image`]: a fully loaded RGB `PIL.Image.Image`, from a path, file bytes, a Pillow image, an array or tensor
  (uint8, 16-bit, or floats in [0, 1]), or a `datasets` Image value; transparent pixels become white, 16-bit images
  keep their top byte, the EXIF orientation of files is applied; empty, corrupt and truncated images and
  decompression bombs (Pillow's `MAX_IMAGE_PIXELS` limit) are errors.

A `datasets` data set with decoding `Audio` / `Image` columns (from the Hub, or an `audiofolder`) is handed over to
these decoders by `multimodal_gpt.data.undecoded_media_columns`:

```py
>>> ds = undecoded_media_columns(load_dataset("some/speech", split="train"))
>>> ds[0]["audio"]
{'bytes': b'RIFF...', 'path': 'clip.wav'}
>>> load_audio(ds[0]["audio"], sampling_rate=16000)
array([...], dtype=float32)
```

Every failure caused by the medium itself is a `ValueError` (a `FileNotFoundError` for a missing file) that names
the file where there is one, so that the collators can skip and count a bad row, and the processor can refuse it
with a clear message.
"""

import io
import os
import re
import struct
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np
import torch

try:
    import soundfile
except ImportError:  # optional: only needed to decode audio files or bytes
    soundfile = None
try:
    import soxr
except ImportError:  # optional: only needed when a clip's sampling rate differs from the requested one
    soxr = None
try:
    from PIL import Image, ImageOps, UnidentifiedImageError
except ImportError:  # optional: only needed for images
    Image = ImageOps = UnidentifiedImageError = None

AudioSource = str | os.PathLike | bytes | bytearray | np.ndarray | torch.Tensor | Mapping[str, Any]
# a path, file bytes, a `PIL.Image.Image`, an array or tensor, or a `datasets` Image value
ImageSource = Any

# File name extensions the decoders read: used to tell audio from image files in users' metadata.
_COMMON_AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".caf"}
AUDIO_EXTENSIONS = frozenset(
    _COMMON_AUDIO_EXTENSIONS
    | ({f".{name.lower()}" for name in soundfile.available_formats()} if soundfile is not None else set())
)
IMAGE_EXTENSIONS = frozenset(
    Image.registered_extensions()
    if Image is not None
    else {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}
)

# A RIFF `data` chunk of this size was written by a streaming writer that never went back to fill it in.
_RIFF_OPEN_SIZES = (0, 0xFFFFFFFF)
# An object's repr in a decoder's error ("<_io.BytesIO object at 0x7f...>"): its address differs from call to call.
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _require(module: Any, package: str, purpose: str) -> None:
    if module is None:
        raise ImportError(f"{purpose} needs the {package} package: pip install {package}")


def _source_name(source: Any) -> str:
    """A short description of a media source for error messages: its path where it has one."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, Mapping) and source.get("path"):
        return str(source["path"])
    if Image is not None and isinstance(source, Image.Image) and getattr(source, "filename", ""):
        return str(source.filename)
    return f"<{type(source).__name__}>"


def _as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's values as a numpy array (half precision widened: numpy has no bfloat16)."""
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()
    return tensor.numpy()


# ---------------------------------------------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------------------------------------------


def _wav_missing_bytes(stream: BinaryIO) -> int:
    """How many bytes the `data` chunk of a RIFF/WAVE stream declares beyond the end of the stream.

    libsndfile silently decodes a truncated WAV file up to where the file ends, so truncation is found by comparing
    the header with the file size. Returns 0 for a complete file and for any other format.
    """
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    header = stream.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return 0
    position = 12
    while position + 8 <= size:
        stream.seek(position)
        chunk_id, chunk_size = struct.unpack("<4sI", stream.read(8))
        if chunk_id == b"data":
            return 0 if chunk_size in _RIFF_OPEN_SIZES else max(0, position + 8 + chunk_size - size)
        position += 8 + chunk_size + (chunk_size & 1)  # RIFF chunks are padded to an even size
    return 0


def _decode_audio_file(file: str | os.PathLike | bytes | bytearray, name: str) -> tuple[np.ndarray, int]:
    """Decodes a whole audio file (a path or its bytes) to `(samples, channels)` float32 and its sampling rate."""
    is_path = isinstance(file, (str, os.PathLike))
    if is_path and not os.path.isfile(file):
        raise FileNotFoundError(f"Audio file not found: {name}")
    _require(soundfile, "soundfile", "Decoding audio files")
    try:
        with open(file, "rb") if is_path else io.BytesIO(file) as stream:
            missing = _wav_missing_bytes(stream)
            stream.seek(0)
            audio, rate = soundfile.read(stream, dtype="float32", always_2d=True)
    except MemoryError:
        raise
    except Exception as error:  # libsndfile reports corrupt files as RuntimeError, TypeError, EOFError...
        raise ValueError(
            f"Could not decode audio {name}: {_OBJECT_REPR.sub('the stream', str(error)).rstrip('.')}. The file is "
            "corrupt, truncated or not in a format libsndfile reads (WAV, FLAC, OGG, Opus, MP3, AIFF...)."
        ) from error
    if missing:
        raise ValueError(
            f"Audio {name} is truncated: its WAV header announces {missing} more bytes of samples than the "
            "file holds. Re-export or re-download it."
        )
    return audio, rate


def _audio_from_array(array: np.ndarray, sampling_rate: int | None, name: str) -> tuple[np.ndarray, int]:
    """Turns a 1-D or 2-D sample array into float32 `(samples, channels)`; integer PCM is scaled to [-1, 1)."""
    if sampling_rate is None:
        raise ValueError(
            f"The sampling rate of audio {name} is unknown: pass its rate (the processor's `sampling_rate=`, "
            "load_audio's `orig_sampling_rate=`) or a dict {'array': ..., 'sampling_rate': ...}."
        )
    if array.ndim not in (1, 2):
        raise ValueError(
            f"Audio {name} must have 1 (samples) or 2 (channels and samples) dimensions, got {array.shape}."
        )
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        half_range = (int(info.max) - int(info.min) + 1) / 2  # 32768 for int16
        array = (array.astype(np.float64) - (int(info.max) + int(info.min) + 1) / 2) / half_range
    elif not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"Audio {name} must hold float or integer PCM samples, got dtype {array.dtype}.")
    if array.ndim == 1:
        audio = array[:, None]
    else:  # the shorter axis holds the channels: (channels, samples) as torchcodec, (samples, channels) as soundfile
        audio = array.T if array.shape[0] < array.shape[1] else array
    return audio.astype(np.float32, copy=False), int(sampling_rate)


def _read_audio_mapping(source: Mapping[str, Any], orig_sampling_rate: int | None) -> tuple[np.ndarray, int]:
    """Reads a `datasets` Audio value: decoded `{"array", "sampling_rate"}` or undecoded `{"path", "bytes"}`."""
    name = _source_name(source)
    if source.get("array") is not None:
        rate = source.get("sampling_rate") or orig_sampling_rate
        array = source["array"]
        return _audio_from_array(
            _as_numpy(array) if isinstance(array, torch.Tensor) else np.asarray(array), rate, name
        )
    if source.get("bytes") is not None:
        return _decode_audio_file(source["bytes"], name)
    if source.get("path") is not None:
        return _decode_audio_file(source["path"], name)
    raise ValueError(
        f"An audio dict needs 'array' and 'sampling_rate', or 'path' or 'bytes'; got keys {list(source)}."
    )


def read_audio(source: AudioSource, *, orig_sampling_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decodes audio at its own sampling rate and mixes it down to mono.

    Args:
        source (`str`, `os.PathLike`, `bytes`, `np.ndarray`, `torch.Tensor` or `dict`):
            A file path; the bytes of a file; a sample array or tensor (1-D, or 2-D where the shorter axis holds the
            channels; integer PCM is scaled to [-1, 1)); or a `datasets` Audio value: `{"array", "sampling_rate"}`
            or the `{"path", "bytes"}` of `Audio(decode=False)` (the bytes win where both are given).
        orig_sampling_rate (`int`, *optional*):
            The sampling rate of an array `source` (or of a dict without `sampling_rate`). Files carry their own.

    Returns:
        `tuple[np.ndarray, int]`: the float32 samples of shape `(num_samples,)` and their sampling rate in Hz.

    Raises:
        `FileNotFoundError`: the path does not exist.
        `ValueError`: the file is corrupt or truncated, the clip is empty or not finite, or an array's rate is unknown.
        `TypeError`: `source` is of none of the accepted types.
    """
    name = _source_name(source)
    if isinstance(source, Mapping):
        audio, rate = _read_audio_mapping(source, orig_sampling_rate)
    elif isinstance(source, (np.ndarray, torch.Tensor)):
        array = _as_numpy(source) if isinstance(source, torch.Tensor) else source
        audio, rate = _audio_from_array(array, orig_sampling_rate, name)
    elif isinstance(source, (str, os.PathLike, bytes, bytearray)):
        audio, rate = _decode_audio_file(source, name)
    else:
        raise TypeError(
            f"Cannot read audio from a {type(source).__name__}: pass a path, bytes, an array or tensor, or a dict."
        )
    if audio.size == 0:
        raise ValueError(f"Audio {name} is empty (zero samples): drop it from the data set.")
    mono = audio.mean(axis=1, dtype=np.float32) if audio.shape[1] > 1 else audio[:, 0]
    if not np.isfinite(mono).all():
        raise ValueError(f"Audio {name} holds NaN or infinite samples.")
    return np.ascontiguousarray(mono), rate


def load_audio(
    source: AudioSource,
    sampling_rate: int | None = None,
    *,
    resample: bool = True,
    orig_sampling_rate: int | None = None,
) -> np.ndarray:
    """Decodes audio to a float32 mono array at the requested sampling rate.

    Args:
        source (`str`, `os.PathLike`, `bytes`, `np.ndarray`, `torch.Tensor` or `dict`):
            What [`read_audio`] accepts: a path, file bytes, a sample array or tensor, or a `datasets` Audio value.
        sampling_rate (`int`, *optional*):
            The rate the model expects (16,000 for Whisper and wav2vec2). `None` keeps the source's own rate; use
            [`read_audio`] to learn it.
        resample (`bool`, *optional*, defaults to `True`):
            Resample with soxr (high quality) when the rates differ. With `False` a different rate is an error, for
            pipelines that must see the data untouched.
        orig_sampling_rate (`int`, *optional*):
            The sampling rate of an array `source`.

    Returns:
        `np.ndarray`: float32 samples of shape `(num_samples,)`; resampling gives `round(n * sampling_rate / rate)`.

    Raises:
        `ValueError`: see [`read_audio`]; or the rates differ and `resample=False` (the message names both).
    """
    if sampling_rate is not None and (not isinstance(sampling_rate, int) or sampling_rate <= 0):
        raise ValueError(f"sampling_rate must be a positive int (Hz), got {sampling_rate!r}.")
    audio, rate = read_audio(source, orig_sampling_rate=orig_sampling_rate)
    if sampling_rate is None or rate == sampling_rate:
        return audio
    if not resample:
        raise ValueError(
            f"Audio {_source_name(source)} is sampled at {rate} Hz but {sampling_rate} Hz was requested: "
            "pass resample=True or resample the data beforehand."
        )
    _require(soxr, "soxr", f"Resampling {rate} Hz audio to {sampling_rate} Hz")
    return soxr.resample(audio, rate, sampling_rate, quality="HQ").astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------------


def _decode_image_file(file: str | os.PathLike | bytes | bytearray, name: str) -> "Image.Image":
    """Opens an image file (a path or its bytes) and loads its pixels, so truncation surfaces here."""
    is_path = isinstance(file, (str, os.PathLike))
    if is_path and not os.path.isfile(file):
        raise FileNotFoundError(f"Image file not found: {name}")
    try:
        with Image.open(file if is_path else io.BytesIO(file)) as image:
            image.load()  # Image.open only reads the header; a truncated file fails on the pixels
            if image.getexif().get(Image.ExifTags.Base.Orientation) is not None:
                return ImageOps.exif_transpose(image)  # as `datasets` does: photos stand the way they were shot
            return image.copy()
    except Image.DecompressionBombError as error:
        raise ValueError(
            f"Refusing image {name} as a possible decompression bomb: {error} Pillow refuses images of more than "
            "2 x PIL.Image.MAX_IMAGE_PIXELS pixels; raise PIL.Image.MAX_IMAGE_PIXELS if the image is genuine."
        ) from error
    except UnidentifiedImageError as error:  # its message holds only the repr of a stream
        raise ValueError(
            f"Could not decode image {name}: it is empty, corrupt or not in an image format Pillow reads."
        ) from error
    except MemoryError:
        raise
    except Exception as error:  # Pillow reports corrupt files as OSError, SyntaxError, struct.error, IndexError...
        raise ValueError(
            f"Could not decode image {name}: {str(error).rstrip('.')}. The file is corrupt, truncated or not an "
            "image format Pillow reads."
        ) from error


def _uint8_pixels(array: np.ndarray, name: str) -> np.ndarray:
    """8-bit pixels from bools, floats in [0, 1] (or [0, 255]), 16-bit integers (their top byte) or 8-bit ones."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)  # 16-bit pixels: keep the top byte, as for 16-bit image files
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"Image {name} holds NaN or infinite pixels.")
        scale = 255.0 if array.max() <= 1.0 else 1.0
        array = np.rint(array * scale)
    elif not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"Image {name} must hold integer or float pixels, got dtype {array.dtype}.")
    if array.min() < 0 or array.max() > 255:
        raise ValueError(
            f"Image {name} has values in [{array.min()}, {array.max()}]: pass uint8 or 16-bit pixels, or floats in "
            "[0, 1]."
        )
    return array.astype(np.uint8)


def _image_from_array(array: np.ndarray, name: str) -> "Image.Image":
    """An image from `(H, W)`, `(H, W, C)` or `(C, H, W)` pixels, C in 1, 3, 4 (see [`_uint8_pixels`])."""
    if array.ndim == 3 and array.shape[-1] not in (1, 3, 4) and array.shape[0] in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(
            f"Image {name} must have shape (H, W), (H, W, C) or (C, H, W) with C in 1, 3, 4; got {array.shape}."
        )
    if array.size == 0:
        raise ValueError(f"Image {name} is empty ({array.shape[1]}x{array.shape[0]} pixels).")
    return Image.fromarray(np.ascontiguousarray(_uint8_pixels(array, name)))


def _to_rgb(image: "Image.Image", name: str) -> "Image.Image":
    """Converts any Pillow mode to RGB; transparent pixels become white, as transformers' `convert_to_rgb` does."""
    if image.width == 0 or image.height == 0:
        raise ValueError(f"Image {name} is empty ({image.width}x{image.height} pixels).")
    if image.mode == "RGB":
        return image
    if image.mode == "F" or image.mode == "I" or image.mode.startswith("I;16"):
        # Pillow's own conversion clips these to [0, 255]: 16-bit images come out near-white, [0, 1] floats black
        pixels = np.asarray(image)
        if image.mode != "F":  # 16/32-bit integers: keep the top byte of 16 bits
            pixels = (np.clip(pixels.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
        image = _image_from_array(pixels, name)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(source: ImageSource) -> "Image.Image":
    """Decodes an image to a fully loaded RGB `PIL.Image.Image`.

    Args:
        source (`str`, `os.PathLike`, `bytes`, `PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or `dict`):
            A file path; the bytes of a file; a Pillow image; pixels of shape `(H, W)`, `(H, W, C)` or `(C, H, W)`
            as an array or tensor (uint8; uint16, of which the top byte is kept; or floats in [0, 1], also [0, 255]);
            or the `{"path", "bytes"}` of a `datasets` `Image(decode=False)` value.

    Returns:
        `PIL.Image.Image`: an RGB image. Grayscale, palette, CMYK, float and 16-bit images are converted; transparent
        pixels become white; the EXIF orientation of a file is applied.

    Raises:
        `FileNotFoundError`: the path does not exist.
        `ValueError`: the image is empty, corrupt or truncated (Pillow's `ImageFile.LOAD_TRUNCATED_IMAGES` must stay
        `False`, its default, for truncation to be noticed), larger than Pillow's decompression-bomb limit, or an
        array has an unsupported shape, type or range.
        `TypeError`: `source` is of none of the accepted types.
    """
    _require(Image, "pillow", "Decoding images")
    name = _source_name(source)
    if isinstance(source, Image.Image):
        try:
            source.load()
        except (OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"Could not decode image {name}: {error}. The file is corrupt or truncated.") from error
        image = source
    elif isinstance(source, Mapping):
        file = source.get("bytes") if source.get("bytes") is not None else source.get("path")
        if file is None:
            raise ValueError(f"An image dict needs 'path' or 'bytes'; got keys {list(source)}.")
        image = _decode_image_file(file, name)
    elif isinstance(source, (np.ndarray, torch.Tensor)):
        image = _image_from_array(_as_numpy(source) if isinstance(source, torch.Tensor) else source, name)
    elif isinstance(source, (str, os.PathLike, bytes, bytearray)):
        image = _decode_image_file(source, name)
    else:
        raise TypeError(
            f"Cannot read an image from a {type(source).__name__}: pass a path, bytes, a PIL image, an array or "
            "tensor, or a dict."
        )
    return _to_rgb(image, name)


__all__ = ["AUDIO_EXTENSIONS", "IMAGE_EXTENSIONS", "load_audio", "load_image", "read_audio"]
