"""The built-in demo data: small captioning, ASR and translation tasks generated from a seed, with no files.

The README's main job trains a tiny multimodal GPT-2 on a fresh offline machine in minutes, so its data must be made
on the spot, be learnable by a tiny model in a minute or two of CPU training, and still depend on the input, so that
a model which ignores its image, audio or source sentence scores clearly worse than one which uses it.

- **captioning**: RGB images (32x32 by default) of one or two shapes (circle, square, triangle) in five colours on a
  dark, noisy background. One shape sits on the left, right, top, bottom or in the middle; two shapes stand one above
  the other or side by side. Two references per image: "a red circle above a blue square" and "a blue square below a
  red circle"; "a green triangle on the left" and "there is a green triangle on the left". 24 words in all.
- **asr**: 16 kHz clips of 1-3 digits ("zero" ... "nine") spoken by a synthetic voice: each digit is an onset
  consonant (band noise, a burst or a nasal hum), a glide between two vowels (harmonics of the voice's pitch shaped by
  vowel formants) and a coda, about 0.2 s long. Each clip draws its own pitch (100-240 Hz), vocal-tract length
  (formants x0.9-1.12), tempo, loudness, pauses and background noise (20-35 dB SNR), so no two clips are alike.
  The voice is [`multimodal_gpt.synthetic_speech.speak_digits`], re-exported here with [`DIGIT_PHONES`].
- **translation**: English sentences from a small grammar ("the red cat sees a small dog today") into a toy
  language, `"xx"`, with its own lexicon (a bijection: every English word has one toy word, none shared) and word
  order: the adverb first, then the subject and the object with each noun phrase reversed (noun, adjective,
  determiner), then the verb: "hodi miku roki lo hundo piti na vidas".
- **pretraining**: a mix of text-only sentences (English and toy language), image-caption pairs and audio-transcript
  pairs from the same generators.

Columns: `image` is a `datasets.Image()` feature (stored as PNG bytes, read back as a PIL RGB image); `audio` is a
plain `{"array": float32 samples, "sampling_rate": int}` struct, formatted as numpy so that a row gives a float32
array (no torchcodec or FFmpeg involved); in the pretraining mix, `image` and `audio` are `None` where absent.

```py
>>> from multimodal_gpt.data.synthetic import make_captioning_dataset, make_demo_splits
>>> make_captioning_dataset(2, seed=0)[1]["captions"]
['a red triangle at the top', 'there is a red triangle at the top']
>>> splits = make_demo_splits(seed=0)  # DEMO_SIZES; disjoint train / validation / test splits per task
>>> splits["asr"]["train"][0]["audio"]["array"].dtype
dtype('float32')
```

[`describe`] explains why each task defeats a model that ignores its input.
"""

import hashlib
from collections.abc import Callable, Hashable, Mapping
from functools import partial
from typing import Any, NamedTuple, TypeVar

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetDict, Features, Image, List, Value
from PIL import Image as PILImage

from .synthetic_speech import DIGIT_PHONES, speak_digits

__all__ = [
    "CAPTION_COLORS",
    "CAPTION_SHAPES",
    "DEMO_SIZES",
    "DIGIT_PHONES",
    "TOY_LANG",
    "TOY_LEXICON",
    "describe",
    "make_asr_dataset",
    "make_captioning_dataset",
    "make_demo_splits",
    "make_pretraining_dataset",
    "make_translation_dataset",
    "speak_digits",
    "translate_to_toy",
]

DEMO_SIZES: dict[str, dict[str, int]] = {
    "captioning": {"train": 3000, "validation": 200, "test": 200},
    "asr": {"train": 2000, "validation": 200, "test": 200},
    "translation": {"train": 5000, "validation": 200, "test": 200},
    "pretraining": {"train": 4000, "validation": 200},
}

# A stream of random numbers per task, so that resizing one task's splits leaves the others' data unchanged.
_TASK_STREAMS = {"captioning": 0, "asr": 1, "translation": 2, "pretraining": 3}

_DEFAULT_MODALITY_MIX = (0.4, 0.3, 0.3)  # text-only, image-caption and audio-transcript rows of the pretraining mix

_AUDIO_FEATURE = {"array": List(Value("float32")), "sampling_rate": Value("int32")}

_Example = TypeVar("_Example")


# ---------------------------------------------------------------------------------------------------------------
# Captioning
# ---------------------------------------------------------------------------------------------------------------

CAPTION_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 230),
    "yellow": (230, 210, 40),
    "white": (235, 235, 235),
}
CAPTION_SHAPES = ("circle", "square", "triangle")

# Where a lone shape sits, as the caption says it, and its centre as fractions of the image's width and height.
_LONE_SHAPE_PLACES = {
    "on the left": (0.25, 0.5),
    "on the right": (0.75, 0.5),
    "at the top": (0.5, 0.25),
    "at the bottom": (0.5, 0.75),
    "in the middle": (0.5, 0.5),
}
_LONE_SHAPE_PROBABILITY = 0.4
_PLACE_JITTER = 0.05
_RADIUS_RANGE = (0.13, 0.18)  # of the image side: 4-6 pixels at 32x32, shapes a tiny vision tower can tell apart


class _Shape(NamedTuple):
    color: str
    shape: str
    center_x: float  # fractions of the image side, y pointing down
    center_y: float
    radius: float


def _draw_color_and_shape(rng: np.random.Generator) -> tuple[str, str]:
    return str(rng.choice(list(CAPTION_COLORS))), str(rng.choice(CAPTION_SHAPES))


def _lone_shape_scene(rng: np.random.Generator) -> tuple[list[_Shape], list[str]]:
    color, shape = _draw_color_and_shape(rng)
    place = str(rng.choice(list(_LONE_SHAPE_PLACES)))
    center_x, center_y = np.asarray(_LONE_SHAPE_PLACES[place]) + rng.uniform(-_PLACE_JITTER, _PLACE_JITTER, 2)
    shapes = [_Shape(color, shape, center_x, center_y, rng.uniform(*_RADIUS_RANGE))]
    return shapes, [f"a {color} {shape} {place}", f"there is a {color} {shape} {place}"]


def _two_shape_scene(rng: np.random.Generator) -> tuple[list[_Shape], list[str]]:
    first = _draw_color_and_shape(rng)
    second = _draw_color_and_shape(rng)
    while second == first:  # "a red circle above a red circle" would not say which is which
        second = _draw_color_and_shape(rng)
    # The shapes share a column (or a row) up to a small jitter, so only one relation describes them.
    shared = rng.uniform(0.3, 0.7)
    first_offset, second_offset = rng.uniform(0.22, 0.30), rng.uniform(0.70, 0.78)
    first_across, second_across = shared + rng.uniform(-0.04, 0.04, 2)
    radii = rng.uniform(*_RADIUS_RANGE, 2)
    a, b = f"a {first[0]} {first[1]}", f"a {second[0]} {second[1]}"
    if rng.random() < 0.5:
        centers = [(first_across, first_offset), (second_across, second_offset)]
        captions = [f"{a} above {b}", f"{b} below {a}"]
    else:
        centers = [(first_offset, first_across), (second_offset, second_across)]
        captions = [f"{a} to the left of {b}", f"{b} to the right of {a}"]
    shapes = [_Shape(*kind, *center, radius) for kind, center, radius in zip((first, second), centers, radii)]
    return shapes, captions


def _shape_mask(shape: str, offset_x: np.ndarray, offset_y: np.ndarray, radius: float) -> np.ndarray:
    """The pixels inside a shape, from the pixel centres' offsets to its centre (fractions of the image side)."""
    if shape == "circle":
        return offset_x**2 + offset_y**2 <= radius**2
    if shape == "square":  # a side of 1.7 radii gives about a circle's area
        return np.maximum(np.abs(offset_x), np.abs(offset_y)) <= 0.85 * radius
    # An upward equilateral triangle with its apex 1.15 radii above the centre and its base 0.575 radii below.
    apex = 1.15 * radius
    return (offset_y <= apex / 2) & (np.abs(offset_x) <= (offset_y + apex) / np.sqrt(3))


def _render_scene(shapes: list[_Shape], image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Paints the shapes on a dark, tinted, noisy background; returns uint8 pixels `(image_size, image_size, 3)`."""
    pixel_centers = (np.arange(image_size) + 0.5) / image_size
    pixel_y, pixel_x = np.meshgrid(pixel_centers, pixel_centers, indexing="ij")
    pixels = np.empty((image_size, image_size, 3), dtype=np.float32)
    pixels[:] = rng.integers(0, 50, size=3)
    for item in shapes:
        mask = _shape_mask(item.shape, pixel_x - item.center_x, pixel_y - item.center_y, item.radius)
        pixels[mask] = np.asarray(CAPTION_COLORS[item.color]) + rng.integers(-15, 16, size=3)
    pixels += rng.normal(0.0, 4.0, size=pixels.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _captioning_example(rng: np.random.Generator, image_size: int) -> tuple[bytes, tuple[np.ndarray, list[str]]]:
    scene = _lone_shape_scene if rng.random() < _LONE_SHAPE_PROBABILITY else _two_shape_scene
    shapes, captions = scene(rng)
    pixels = _render_scene(shapes, image_size, rng)
    return _digest(pixels), (pixels, captions)


def _captioning_dataset(examples: list[tuple[np.ndarray, list[str]]]) -> Dataset:
    features = Features({"image": Image(), "captions": List(Value("string"))})
    columns = {
        "image": [PILImage.fromarray(pixels) for pixels, _ in examples],
        "captions": [captions for _, captions in examples],
    }
    return Dataset.from_dict(columns, features=features)


def make_captioning_dataset(num_samples: int, *, image_size: int = 32, seed: int = 0) -> Dataset:
    """Images of one or two coloured shapes and two reference captions each.

    Args:
        num_samples (`int`):
            The number of images; no two are identical.
        image_size (`int`, *optional*, defaults to 32):
            The side of the square RGB images in pixels (at least 16; shapes are 13-18 % of the side in radius).
        seed (`int`, *optional*, defaults to 0):
            The seed of the `numpy` generator: the same seed gives the same data set.

    Returns:
        `datasets.Dataset`: columns `image` (a `datasets.Image()` feature: PNG bytes, read back as a PIL RGB image)
        and `captions` (`list[str]`, two references; the first is the canonical caption, e.g. "a red circle above a
        blue square", the second a paraphrase, "a blue square below a red circle").
    """
    _check_count(num_samples)
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels for the shapes to be told apart, got {image_size}.")
    rng = np.random.default_rng(seed)
    examples = _draw_unique(partial(_captioning_example, rng, image_size), num_samples, set(), "captioning images")
    return _captioning_dataset(examples)


# ---------------------------------------------------------------------------------------------------------------
# ASR
# ---------------------------------------------------------------------------------------------------------------

_MAX_DIGITS = 3  # per clip; 1 to 3 equally often


def _asr_example(rng: np.random.Generator, sampling_rate: int) -> tuple[bytes, tuple[np.ndarray, str]]:
    words = [str(word) for word in rng.choice(list(DIGIT_PHONES), size=rng.integers(1, _MAX_DIGITS + 1))]
    audio = speak_digits(words, sampling_rate=sampling_rate, seed=rng)
    return _digest(audio), (audio, " ".join(words))


def _audio_column(clips: list[np.ndarray | None], sampling_rate: int) -> pa.StructArray:
    """An Arrow struct column `{"array", "sampling_rate"}` built in one go (`from_dict` on arrays is 30x slower)."""
    lengths = [0 if clip is None else len(clip) for clip in clips]
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    samples = np.concatenate([clip for clip in clips if clip is not None] or [np.zeros(0, np.float32)])
    arrays = pa.ListArray.from_arrays(offsets, pa.array(samples, type=pa.float32()))
    rates = pa.array(np.full(len(clips), sampling_rate, dtype=np.int32))
    missing = pa.array([clip is None for clip in clips])
    return pa.StructArray.from_arrays([arrays, rates], names=["array", "sampling_rate"], mask=missing)


def _with_numpy_audio(dataset: Dataset) -> Dataset:
    """Rows give the audio samples as a float32 array rather than a list of Python floats."""
    return dataset.with_format("numpy", columns=["audio"], output_all_columns=True)


def _asr_dataset(examples: list[tuple[np.ndarray, str]], sampling_rate: int) -> Dataset:
    features = Features({"audio": _AUDIO_FEATURE, "text": Value("string")})
    columns = {
        "audio": _audio_column([audio for audio, _ in examples], sampling_rate),
        "text": [text for _, text in examples],
    }
    return _with_numpy_audio(Dataset.from_dict(columns, features=features))


def make_asr_dataset(num_samples: int, *, sampling_rate: int = 16000, seed: int = 0) -> Dataset:
    """Clips of 1-3 spoken digits ("zero" ... "nine") and their transcripts.

    Args:
        num_samples (`int`):
            The number of clips; no two are identical.
        sampling_rate (`int`, *optional*, defaults to 16000):
            Samples per second (at least 8,000).
        seed (`int`, *optional*, defaults to 0):
            The seed of the `numpy` generator: the same seed gives the same data set.

    Returns:
        `datasets.Dataset`: columns `audio` (`{"array": float32 np.ndarray, "sampling_rate": int}`, 0.5 s to under
        2 s, 0.9 s on average; the data set is formatted as numpy for this column) and `text` ("three seven one").
    """
    _check_count(num_samples)
    rng = np.random.default_rng(seed)
    examples = _draw_unique(partial(_asr_example, rng, sampling_rate), num_samples, set(), "ASR clips")
    return _asr_dataset(examples, sampling_rate)


# ---------------------------------------------------------------------------------------------------------------
# Translation
# ---------------------------------------------------------------------------------------------------------------

TOY_LANG = "xx"

_DETERMINERS = ("the", "a")
_ADJECTIVES = ("red", "green", "big", "small", "happy", "old", "young", "tall")
_NOUNS = ("cat", "dog", "bird", "fish", "man", "woman", "child", "horse")
_VERBS = ("sees", "likes", "chases", "finds", "helps", "follows")
_ADVERBS = ("today", "again", "now", "often")

# English word -> toy word: one toy word per English word, no toy word spelled like an English one.
TOY_LEXICON: dict[str, str] = {
    **dict(zip(_DETERMINERS, ("lo", "na"))),
    **dict(zip(_ADJECTIVES, ("roki", "vesa", "gorum", "piti", "jalo", "vetu", "neva", "halu"))),
    **dict(zip(_NOUNS, ("miku", "hundo", "pipa", "sako", "tavo", "kema", "lilu", "ronu"))),
    **dict(zip(_VERBS, ("vidas", "amas", "kuras", "trovas", "jutas", "sekas"))),
    **dict(zip(_ADVERBS, ("hodi", "rebo", "nuna", "ofta"))),
}


def _noun_phrase(rng: np.random.Generator) -> list[str]:
    adjective = [str(rng.choice(_ADJECTIVES))] if rng.random() < 0.5 else []
    return [str(rng.choice(_DETERMINERS)), *adjective, str(rng.choice(_NOUNS))]


def _english_sentence(rng: np.random.Generator) -> str:
    """Subject, verb, object and, half of the time, an adverb: "the red cat sees a dog today"."""
    adverb = [str(rng.choice(_ADVERBS))] if rng.random() < 0.5 else []
    return " ".join([*_noun_phrase(rng), str(rng.choice(_VERBS)), *_noun_phrase(rng), *adverb])


def translate_to_toy(sentence: str) -> str:
    """Translates a sentence of the demo grammar into the toy language `"xx"`.

    Every word goes through [`TOY_LEXICON`]; the adverb moves to the front, each noun phrase is reversed (noun,
    adjective, determiner) and the verb moves to the end: "the red cat sees a dog today" -> "hodi miku roki lo hundo
    na vidas".

    Args:
        sentence (`str`):
            Lower-case words of the grammar separated by spaces: noun phrase, verb, noun phrase, optional adverb.

    Returns:
        `str`: the toy-language sentence.
    """
    words = sentence.split()
    unknown = [word for word in words if word not in TOY_LEXICON]
    verbs = [index for index, word in enumerate(words) if word in _VERBS]
    if unknown or len(verbs) != 1:
        raise ValueError(
            f"{sentence!r} is not a sentence of the demo grammar (unknown words: {unknown}, verbs: {len(verbs)}); "
            f"use the words of TOY_LEXICON with exactly one verb of {_VERBS}."
        )
    verb = verbs[0]
    adverb = words[-1:] if words[-1] in _ADVERBS else []
    subject, object_ = words[:verb], words[verb + 1 : len(words) - len(adverb)]
    toy_order = adverb + subject[::-1] + object_[::-1] + [words[verb]]
    return " ".join(TOY_LEXICON[word] for word in toy_order)


def _translation_example(rng: np.random.Generator) -> tuple[tuple[str, str], tuple[str, str]]:
    source = _english_sentence(rng)
    return ("text", source), (source, translate_to_toy(source))


def _translation_dataset(examples: list[tuple[str, str]]) -> Dataset:
    return Dataset.from_dict(
        {
            "source": [source for source, _ in examples],
            "target": [target for _, target in examples],
            "source_lang": ["en"] * len(examples),
            "target_lang": [TOY_LANG] * len(examples),
        }
    )


def make_translation_dataset(num_samples: int, *, seed: int = 0) -> Dataset:
    """English sentences of a small grammar and their translations into the toy language `"xx"`.

    Args:
        num_samples (`int`):
            The number of sentence pairs; no source sentence repeats (the grammar has 622,080 sentences).
        seed (`int`, *optional*, defaults to 0):
            The seed of the `numpy` generator: the same seed gives the same data set.

    Returns:
        `datasets.Dataset`: columns `source` ("the red cat sees a dog today"), `target` ("hodi miku roki lo hundo na
        vidas"), `source_lang` ("en") and `target_lang` ("xx").
    """
    _check_count(num_samples)
    rng = np.random.default_rng(seed)
    return _translation_dataset(_draw_unique(partial(_translation_example, rng), num_samples, set(), "sentences"))


# ---------------------------------------------------------------------------------------------------------------
# Pretraining mix
# ---------------------------------------------------------------------------------------------------------------


def _pretraining_examples(
    num_samples: int,
    rng: np.random.Generator,
    taken: set[Hashable],
    *,
    image_size: int,
    sampling_rate: int,
    modality_mix: tuple[float, float, float],
) -> list[dict[str, Any]]:
    """Rows `{"text", "image", "audio"}`; `taken` holds the keys of examples already used elsewhere (other splits)."""
    if len(modality_mix) != 3 or min(modality_mix) < 0 or sum(modality_mix) <= 0:
        raise ValueError(f"modality_mix must be 3 non-negative weights (text, image, audio), got {modality_mix}.")
    counts = np.floor(np.asarray(modality_mix) / sum(modality_mix) * num_samples).astype(int)
    counts[0] += num_samples - counts.sum()

    def sentence() -> tuple[tuple[str, str], str]:
        # Keyed by the English sentence, so a toy sentence never repeats a translation example's target either.
        source = _english_sentence(rng)
        return ("text", source), source if rng.random() < 0.5 else translate_to_toy(source)

    texts = _draw_unique(sentence, counts[0], taken, "sentences")
    images = _draw_unique(partial(_captioning_example, rng, image_size), counts[1], taken, "captioning images")
    clips = _draw_unique(partial(_asr_example, rng, sampling_rate), counts[2], taken, "ASR clips")
    rows = (
        [{"text": text, "image": None, "audio": None} for text in texts]
        + [{"text": captions[0], "image": pixels, "audio": None} for pixels, captions in images]
        + [{"text": transcript, "image": None, "audio": audio} for audio, transcript in clips]
    )
    return [rows[index] for index in rng.permutation(len(rows))]


def _pretraining_dataset(rows: list[dict[str, Any]], sampling_rate: int) -> Dataset:
    features = Features({"text": Value("string"), "image": Image(), "audio": _AUDIO_FEATURE})
    columns = {
        "text": [row["text"] for row in rows],
        "image": [None if row["image"] is None else PILImage.fromarray(row["image"]) for row in rows],
        "audio": _audio_column([row["audio"] for row in rows], sampling_rate),
    }
    return _with_numpy_audio(Dataset.from_dict(columns, features=features))


def make_pretraining_dataset(
    num_samples: int,
    *,
    image_size: int = 32,
    sampling_rate: int = 16000,
    modality_mix: tuple[float, float, float] = _DEFAULT_MODALITY_MIX,
    seed: int = 0,
) -> Dataset:
    """A shuffled mix of text-only sentences, image-caption pairs and audio-transcript pairs.

    Args:
        num_samples (`int`):
            The number of rows.
        image_size (`int`, *optional*, defaults to 32):
            The side of the images in pixels.
        sampling_rate (`int`, *optional*, defaults to 16000):
            The audio's samples per second.
        modality_mix (`tuple[float, float, float]`, *optional*, defaults to `(0.4, 0.3, 0.3)`):
            Relative weights of text-only, image and audio rows.
        seed (`int`, *optional*, defaults to 0):
            The seed of the `numpy` generator.

    Returns:
        `datasets.Dataset`: columns `text` (an English or toy-language sentence, a canonical caption or a
        transcript), `image` (as in [`make_captioning_dataset`], `None` where absent) and `audio` (as in
        [`make_asr_dataset`], `None` where absent).
    """
    _check_count(num_samples)
    rng = np.random.default_rng(seed)
    rows = _pretraining_examples(
        num_samples, rng, set(), image_size=image_size, sampling_rate=sampling_rate, modality_mix=modality_mix
    )
    return _pretraining_dataset(rows, sampling_rate)


# ---------------------------------------------------------------------------------------------------------------
# Splits and description
# ---------------------------------------------------------------------------------------------------------------


def _digest(array: np.ndarray) -> bytes:
    return hashlib.blake2b(array.tobytes(), digest_size=16).digest()


def _check_count(num_samples: int) -> None:
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 0:
        raise ValueError(f"num_samples must be a non-negative int, got {num_samples!r}.")


def _draw_unique(
    draw: Callable[[], tuple[Hashable, _Example]], num_samples: int, taken: set[Hashable], what: str
) -> list[_Example]:
    """Draws examples until `num_samples` have keys not in `taken` (which it extends): no input appears twice."""
    examples = []
    attempts_left = 20 * num_samples + 100
    while len(examples) < num_samples and attempts_left:
        key, example = draw()
        attempts_left -= 1
        if key not in taken:
            taken.add(key)
            examples.append(example)
    if len(examples) < num_samples:
        raise ValueError(f"Could draw only {len(examples)} distinct {what} of the {num_samples} requested.")
    return examples


def _dataset_dict(
    examples: list[_Example], split_sizes: Mapping[str, int], build: Callable[[list[_Example]], Dataset]
) -> DatasetDict:
    """Cuts the examples into consecutive splits of the given sizes, in order."""
    ends = np.cumsum(list(split_sizes.values()), dtype=int)
    return DatasetDict(
        {name: build(examples[end - size : end]) for (name, size), end in zip(split_sizes.items(), ends)}
    )


def make_demo_splits(
    seed: int = 0,
    sizes: Mapping[str, Mapping[str, int]] | None = None,
    *,
    image_size: int = 32,
    sampling_rate: int = 16000,
) -> dict[str, DatasetDict]:
    """The demo's data: disjoint splits of every task, and a pretraining mix that shares no input with them.

    Args:
        seed (`int`, *optional*, defaults to 0):
            Seeds one random stream per task, so changing one task's sizes leaves the other tasks' data as it was.
        sizes (`Mapping[str, Mapping[str, int]]`, *optional*):
            Split sizes per task, e.g. `{"asr": {"train": 500, "test": 50}}`; the tasks are "captioning", "asr",
            "translation" and "pretraining". Defaults to [`DEMO_SIZES`]; tasks left out are not generated.
        image_size (`int`, *optional*, defaults to 32):
            The side of the images in pixels.
        sampling_rate (`int`, *optional*, defaults to 16000):
            The audio's samples per second.

    Returns:
        `dict[str, datasets.DatasetDict]`: per task, its splits. No image, clip or source sentence appears twice
        anywhere; the pretraining text never repeats a translation source or target sentence.
    """
    sizes = DEMO_SIZES if sizes is None else sizes
    unknown = set(sizes) - set(_TASK_STREAMS)
    if unknown:
        raise ValueError(f"Unknown tasks {sorted(unknown)} in sizes; the tasks are {list(_TASK_STREAMS)}.")
    for split_sizes in sizes.values():
        for size in split_sizes.values():
            _check_count(size)
    streams = {task: np.random.default_rng([seed, stream]) for task, stream in _TASK_STREAMS.items()}
    taken: set[Hashable] = set()  # shared by all tasks: the pretraining mix must not repeat a finetuning input
    splits = {}
    finetuning_tasks = {
        "captioning": (
            partial(_captioning_example, streams["captioning"], image_size),
            "captioning images",
            _captioning_dataset,
        ),
        "asr": (
            partial(_asr_example, streams["asr"], sampling_rate),
            "ASR clips",
            partial(_asr_dataset, sampling_rate=sampling_rate),
        ),
        "translation": (partial(_translation_example, streams["translation"]), "sentences", _translation_dataset),
    }
    for task, (draw, what, build) in finetuning_tasks.items():
        if task in sizes:
            examples = _draw_unique(draw, sum(sizes[task].values()), taken, what)
            splits[task] = _dataset_dict(examples, sizes[task], build)
    if "pretraining" in sizes:
        rows = _pretraining_examples(
            sum(sizes["pretraining"].values()),
            streams["pretraining"],
            taken,
            image_size=image_size,
            sampling_rate=sampling_rate,
            modality_mix=_DEFAULT_MODALITY_MIX,
        )
        build = partial(_pretraining_dataset, sampling_rate=sampling_rate)
        splits["pretraining"] = _dataset_dict(rows, sizes["pretraining"], build)
    return splits


def _count_sentences() -> int:
    noun_phrases = len(_DETERMINERS) * (len(_ADJECTIVES) + 1) * len(_NOUNS)
    return noun_phrases**2 * len(_VERBS) * (len(_ADVERBS) + 1)


def describe() -> str:
    """Explains the demo tasks and why a model that ignores its input scores poorly on each.

    The chance figures are computed from the generators' tables; the constant-output scores were measured on the
    test splits of `make_demo_splits(seed=0)` with `multimodal_gpt.training.metrics`, the constant being the training
    output that scores best on the validation split.

    Returns:
        `str`: a few paragraphs of plain text, one per task.
    """
    num_colors_shapes = len(CAPTION_COLORS) * len(CAPTION_SHAPES)
    lone_captions = num_colors_shapes * len(_LONE_SHAPE_PLACES)
    pair_captions = num_colors_shapes * (num_colors_shapes - 1) * 2
    best_caption = max(_LONE_SHAPE_PROBABILITY / lone_captions, (1 - _LONE_SHAPE_PROBABILITY) / pair_captions)
    paragraphs = [
        f"captioning: {lone_captions} lone-shape and {pair_captions} two-shape canonical captions. A model blind to "
        f"the image can at best repeat the most likely caption: an exact match {best_caption:.1%} of the time. The "
        'template words ("a", "to the left of") still earn a constant caption about 22 BLEU-4 and 1.4 CIDEr-D, so the '
        "gap to a model that reads colours, shapes and places (100 BLEU-4 when always right) is what to look at.",
        f"asr: 1-{_MAX_DIGITS} of {len(DIGIT_PHONES)} spoken digits per clip. Deaf to the audio, the best guess is "
        f"one digit: an exact match {1 / _MAX_DIGITS / len(DIGIT_PHONES):.1%} of the time, about 0.92 WER. The digits "
        "differ in onset noise bands, vowel formants and codas over about 0.2 s (10 frames of 20 ms), so a tiny "
        "convolutional encoder tells them apart; pitch, vocal tract, tempo, pauses and noise vary per clip.",
        f'translation: {_count_sentences():,} English sentences into the toy language "{TOY_LANG}" (a lexicon of '
        f"{len(TOY_LEXICON)} words, the adverb first, noun phrases reversed, the verb last). A constant output scores "
        "about 2 BLEU; copying the source scores 0 (no word is shared) and translating word for word without "
        "reordering about 1, so both the lexicon and the word order must be learned from the source.",
        "pretraining: text-only English and toy sentences, image-caption pairs and audio-transcript pairs from the "
        "same generators, sharing no image, clip or sentence with the finetuning splits.",
    ]
    return "\n\n".join(paragraphs)
