"""The generated demo data: deterministic, well formed, disjoint across splits, and saying what its inputs show."""

import collections

import numpy as np
import pytest

from multimodal_gpt.data.synthetic import (
    CAPTION_COLORS,
    DIGIT_PHONES,
    TOY_LANG,
    TOY_LEXICON,
    describe,
    make_asr_dataset,
    make_captioning_dataset,
    make_demo_splits,
    make_pretraining_dataset,
    make_translation_dataset,
    speak_digits,
    translate_to_toy,
)

SMALL_SIZES = {
    "captioning": {"train": 40, "validation": 10, "test": 10},
    "asr": {"train": 20, "validation": 5, "test": 5},
    "translation": {"train": 60, "validation": 10, "test": 10},
    "pretraining": {"train": 40, "validation": 10},
}


@pytest.fixture(scope="module")
def demo_splits():
    return make_demo_splits(seed=0, sizes=SMALL_SIZES)


def _image_bytes(dataset) -> list[bytes]:
    return [np.asarray(image).tobytes() for image in dataset["image"] if image is not None]


def _audio_bytes(dataset) -> list[bytes]:
    return [audio["array"].tobytes() for audio in dataset["audio"] if audio is not None]


def _inputs(dataset) -> list[bytes]:
    """Every input of a data set, as bytes: images, clips and source sentences."""
    columns = dataset.column_names
    images = _image_bytes(dataset) if "image" in columns else []
    clips = _audio_bytes(dataset) if "audio" in columns else []
    sources = [source.encode() for source in dataset["source"]] if "source" in columns else []
    return images + clips + sources


# ------------------------------------------------------------------------------------------------------------------
# Determinism and format
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, fingerprint",
    [
        (make_captioning_dataset, lambda ds: (_image_bytes(ds), list(ds["captions"]))),
        (make_asr_dataset, lambda ds: (_audio_bytes(ds), list(ds["text"]))),
        (make_translation_dataset, lambda ds: (list(ds["source"]), list(ds["target"]))),
        (make_pretraining_dataset, lambda ds: (_image_bytes(ds), _audio_bytes(ds), list(ds["text"]))),
    ],
)
def test_same_seed_same_data_other_seed_other_data(make, fingerprint):
    first, again, other = make(12, seed=3), make(12, seed=3), make(12, seed=4)
    assert fingerprint(first) == fingerprint(again)
    assert fingerprint(first) != fingerprint(other)


def test_captioning_images_and_captions_are_well_formed():
    dataset = make_captioning_dataset(8, image_size=48, seed=0)
    assert dataset.column_names == ["image", "captions"]
    for row in dataset:
        assert row["image"].mode == "RGB" and row["image"].size == (48, 48)
        assert len(row["captions"]) == 2 and all(
            caption.startswith(("a ", "there is a ")) for caption in row["captions"]
        )


@pytest.mark.parametrize("sampling_rate", [16000, 8000])
def test_asr_clips_are_float32_mono_at_the_sampling_rate(sampling_rate):
    dataset = make_asr_dataset(10, sampling_rate=sampling_rate, seed=0)
    assert dataset.column_names == ["audio", "text"]
    for row in dataset:
        samples = row["audio"]["array"]
        assert row["audio"]["sampling_rate"] == sampling_rate
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert 0.5 <= len(samples) / sampling_rate < 2.0
        assert 0.0 < np.abs(samples).max() <= 1.0
        assert 1 <= len(row["text"].split()) <= 3 and set(row["text"].split()) <= set(DIGIT_PHONES)


def test_pretraining_mix_has_each_modality_in_proportion():
    dataset = make_pretraining_dataset(20, modality_mix=(0.5, 0.25, 0.25), seed=0)
    assert dataset.column_names == ["text", "image", "audio"]
    kinds = collections.Counter(
        "image" if row["image"] is not None else "audio" if row["audio"] is not None else "text" for row in dataset
    )
    assert kinds == {"text": 10, "image": 5, "audio": 5}
    for row in dataset:
        assert row["text"] and (row["image"] is None or row["audio"] is None)
        if row["audio"] is not None:
            assert row["audio"]["array"].dtype == np.float32 and row["text"].split()[0] in DIGIT_PHONES
        if row["image"] is not None:
            assert row["text"].split()[1] in CAPTION_COLORS


def test_demo_splits_have_the_requested_sizes(demo_splits):
    assert list(demo_splits) == list(SMALL_SIZES)
    for task, split_sizes in SMALL_SIZES.items():
        assert {name: len(split) for name, split in demo_splits[task].items()} == split_sizes
    assert set(demo_splits["translation"]["test"]["target_lang"]) == {TOY_LANG}


def test_demo_splits_share_no_input(demo_splits):
    seen = collections.Counter(
        item for splits in demo_splits.values() for split in splits.values() for item in _inputs(split)
    )
    assert seen and max(seen.values()) == 1
    translation_text = {
        text
        for split in demo_splits["translation"].values()
        for column in ("source", "target")
        for text in split[column]
    }
    pretraining_text = {text for split in demo_splits["pretraining"].values() for text in split["text"]}
    assert not translation_text & pretraining_text


def test_demo_splits_reject_unknown_tasks():
    with pytest.raises(ValueError, match="Unknown tasks \\['speech'\\]"):
        make_demo_splits(sizes={"speech": {"train": 1}})


# ------------------------------------------------------------------------------------------------------------------
# The data say what the inputs show
# ------------------------------------------------------------------------------------------------------------------


def _shape_from_mask(mask: np.ndarray) -> str:
    """Tells the shapes apart by how much of their bounding box they fill: square 1, circle 0.79, triangle 0.5."""
    rows, columns = np.nonzero(mask)
    fill = mask.sum() / ((np.ptp(rows) + 1) * (np.ptp(columns) + 1))
    return "square" if fill > 0.88 else "circle" if fill > 0.66 else "triangle"


def _read_objects(caption: str) -> tuple[list[tuple[str, str]], str]:
    """The (colour, shape) objects a canonical caption names, and its place or relation words."""
    words = caption.split()
    if len(words) <= 6:  # "a red circle on the left"
        return [(words[1], words[2])], " ".join(words[3:])
    return [(words[1], words[2]), (words[-2], words[-1])], " ".join(words[3:-3])


def test_captions_describe_the_colours_shapes_and_places_in_the_pixels():
    dataset = make_captioning_dataset(60, image_size=32, seed=1)
    palette = {name: np.asarray(rgb) for name, rgb in CAPTION_COLORS.items()}
    for row in dataset:
        pixels = np.asarray(row["image"]).astype(float)
        objects, place = _read_objects(row["captions"][0])
        if len(objects) == 1:
            regions = [np.ones(pixels.shape[:2], dtype=bool)]
        else:  # the first-named object is in the top (or left) half, the other in the bottom (or right) half
            rows, columns = np.indices(pixels.shape[:2])
            along = rows if place == "above" else columns
            regions = [along < 16, along >= 16]
        for (color, shape), region in zip(objects, regions):
            mask = (np.linalg.norm(pixels - palette[color], axis=-1) < 60) & region
            assert mask.sum() >= 20, (row["captions"], color)
            assert _shape_from_mask(mask) == shape, row["captions"]
        if len(objects) == 1:
            center_y, center_x = np.argwhere(mask).mean(axis=0) / 32
            expected = {"on the left": center_x < 0.4, "on the right": center_x > 0.6, "at the top": center_y < 0.4}
            expected |= {
                "at the bottom": center_y > 0.6,
                "in the middle": abs(center_x - 0.5) + abs(center_y - 0.5) < 0.2,
            }
            assert expected[place], (row["captions"], center_x, center_y)


def _speech_profile(samples: np.ndarray, sampling_rate: int = 16000) -> np.ndarray:
    """Log energy in 16 frequency bands averaged over each third of the speech, less its mean (the clip's loudness)."""
    frame = sampling_rate // 50  # 20 ms, a wav2vec2 frame
    frames = samples[: len(samples) // frame * frame].reshape(-1, frame)
    power = np.abs(np.fft.rfft(frames * np.hanning(frame), axis=1)) ** 2
    bands = np.log(np.stack([band.sum(axis=1) for band in np.array_split(power, 16, axis=1)], axis=1) + 1e-6)
    energy = bands.max(axis=1)
    speech = bands[energy > energy.max() - 4.0]  # frames within 4 nats (17 dB) of the loudest
    profile = np.concatenate([third.mean(axis=0) for third in np.array_split(speech, 3)])  # (48,), order-aware
    return profile - profile.mean()


def test_spoken_digits_sound_distinct_across_voices():
    """A nearest-centroid classifier on band energies names single digits spoken by voices it has never heard."""
    rng = np.random.default_rng(0)
    profiles = {word: [_speech_profile(speak_digits([word], seed=rng)) for _ in range(12)] for word in DIGIT_PHONES}
    centroids = {word: np.mean(found[:6], axis=0) for word, found in profiles.items()}
    tests = [(word, profile) for word, found in profiles.items() for profile in found[6:]]
    hits = [
        min(centroids, key=lambda name: np.linalg.norm(profile - centroids[name])) == word for word, profile in tests
    ]
    assert np.mean(hits) >= 0.95  # 0.98 here; two digits made identical give at most 0.93


def test_speak_digits_rejects_unknown_words():
    with pytest.raises(ValueError, match="words must be 1 or more of"):
        speak_digits(["ten"])


def test_toy_lexicon_is_a_bijection_onto_new_words():
    assert len(set(TOY_LEXICON.values())) == len(TOY_LEXICON)
    assert not set(TOY_LEXICON.values()) & set(TOY_LEXICON)


def test_translation_reorders_the_translated_words():
    assert translate_to_toy("the red cat sees a dog today") == "hodi miku roki lo hundo na vidas"
    for row in make_translation_dataset(50, seed=0):
        word_for_word = [TOY_LEXICON[word] for word in row["source"].split()]
        target = row["target"].split()
        assert sorted(word_for_word) == sorted(target) and word_for_word != target


def test_translate_to_toy_rejects_sentences_outside_the_grammar():
    with pytest.raises(ValueError, match="unknown words: \\['zebra'\\]"):
        translate_to_toy("the zebra sees a dog")


def test_input_ignoring_guesses_score_poorly():
    """The most frequent output of a larger training set rarely matches: the input has to be used."""
    captions = make_captioning_dataset(300, seed=5)["captions"]
    best_caption = collections.Counter(references[0] for references in captions).most_common(1)[0][0]
    assert np.mean([best_caption in references for references in captions]) < 0.05
    transcripts = make_asr_dataset(150, seed=5)["text"]
    best_transcript = collections.Counter(transcripts).most_common(1)[0][0]
    assert np.mean([text == best_transcript for text in transcripts]) < 0.1
    targets = make_translation_dataset(300, seed=5)["target"]
    assert collections.Counter(targets).most_common(1)[0][1] == 1
    assert "exact match" in describe()
