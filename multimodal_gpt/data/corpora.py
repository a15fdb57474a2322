"""Loaders that turn the project's real data sets, and users' own data, into `datasets.Dataset`s.

The real data sets (FSDD, read speech, Multi30k, Flickr8k) live beside the repository, never inside it: see
`../shared/data/README.md`. [`default_data_dir`] is the one place that locates them; every loader takes a `root`
argument that overrides it.

Media columns hold absolute file paths (`str`), not decoded arrays: decoding is left to
`multimodal_gpt.media_multimodal_gpt` ([`~media.load_audio`], [`~media.load_image`]), which needs neither FFmpeg nor
torchcodec, and is done in the collator or in a `datasets.map` step, at the sampling rate the model wants.
"""

import csv
import gzip
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict, Features, Value

DATA_DIR_ENV = "MMGPT_DATA_DIR"

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FSDD_FEATURES = Features(
    {
        "audio": Value("string"),
        "text": Value("string"),
        "digit": Value("int64"),
        "speaker": Value("string"),
        "recording": Value("int64"),
    }
)
READ_SPEECH_FEATURES = Features({"audio": Value("string"), "text": Value("string")})
MULTI30K_FEATURES = Features(
    {
        "source": Value("string"),
        "target": Value("string"),
        "source_lang": Value("string"),
        "target_lang": Value("string"),
        "image": Value("string"),
        "index": Value("int64"),
    }
)
FLICKR8K_MULTI30K_FIELDS = ("m30_en", "m30_de", "m30_fr", "m30_cs", "m30_split", "m30_index")
FLICKR8K_FEATURES = Features(
    {
        "image": Value("string"),
        "captions": datasets.List(Value("string")),
        **{field: Value("string") for field in FLICKR8K_MULTI30K_FIELDS[:-1]},
        "m30_index": Value("int64"),
    }
)

_FSDD_FILE_NAME = re.compile(r"(?P<digit>\d)_(?P<speaker>[^_]+)_(?P<recording>\d+)\.wav")
_MULTI30K_TEXT_NAME = re.compile(r"(?P<split>[^.]+)\.(?P<lang>[a-z]{2,3})\.gz")


# ---------------------------------------------------------------------------------------------------------------
# Locating the data
# ---------------------------------------------------------------------------------------------------------------


def default_data_dir() -> Path:
    """The folder that holds the real data sets (`fsdd/`, `read_speech/`, `multi30k/`, `flickr8k/`).

    In order:
    1. the environment variable `MMGPT_DATA_DIR`, when set (returned even if it does not exist, so that the
       loaders' errors name it);
    2. `../shared/data` beside the repository root (`multimodal_gpt/data/../../../shared/data`), where development
       machines and CI keep it;
    3. `../shared/data` relative to the working directory, when that exists and 2. does not (an installed
       package run from the repository);
    4. otherwise the path of 2., which does not exist: callers check `.is_dir()` (tests skip on it).

    Returns:
        `pathlib.Path`: an absolute, normalised path.
    """
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser().resolve()
    beside_repository = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()
    beside_cwd = (Path.cwd() / ".." / "shared" / "data").resolve()
    if not beside_repository.is_dir() and beside_cwd.is_dir():
        return beside_cwd
    return beside_repository


def _dataset_dir(root: str | os.PathLike | None, name: str) -> Path:
    """`root/name`, where `root` is the data folder (default: [`default_data_dir`]) or the `name` folder itself."""
    base = Path(root).expanduser().resolve() if root is not None else default_data_dir()
    if (base / name).is_dir():
        return base / name
    if base.name == name and base.is_dir():
        return base
    how_to_fix = (
        f"pass root= the folder that holds {name}/"
        if root is not None
        else f"set {DATA_DIR_ENV} to the folder that holds {name}/, or pass root="
    )
    raise FileNotFoundError(f"No {name}/ folder at {base / name}: {how_to_fix}.")


def _check_split(split: str | None, available: Iterable[str], data_set: str) -> str:
    """Returns `split` when it is one of `available`, else raises a `ValueError` that lists them."""
    available = sorted(available)
    if split not in available:
        raise ValueError(f"Unknown {data_set} split {split!r}: available splits are {available}.")
    return split


def _read_text_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (gzip when it ends in `.gz`), without line ends; only `\\n` ends a line."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as file:
        text = file.read()
    lines = text.split("\n")  # not splitlines(): it would also split at U+2028, U+0085... inside sentences
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


# ---------------------------------------------------------------------------------------------------------------
# FSDD and read speech (ASR)
# ---------------------------------------------------------------------------------------------------------------


def _fsdd_row(path: Path) -> dict:
    """The columns of one FSDD clip, parsed from its name `{digit}_{speaker}_{recording}.wav`."""
    match = _FSDD_FILE_NAME.fullmatch(path.name)
    if match is None:
        raise ValueError(f"Unexpected FSDD file name {path}: expected '{{digit}}_{{speaker}}_{{recording}}.wav'.")
    digit = int(match["digit"])
    return {
        "audio": str(path),
        "text": DIGIT_WORDS[digit],
        "digit": digit,
        "speaker": match["speaker"],
        "recording": int(match["recording"]),
    }


def load_fsdd(root: str | os.PathLike | None = None, split: str = "train") -> Dataset:
    """Loads the Free Spoken Digit Dataset from `root/fsdd/<split>/*.wav` (8 kHz mono WAV).

    Args:
        root (`str` or `os.PathLike`, *optional*):
            The data folder that holds `fsdd/` (or the `fsdd/` folder itself). Defaults to [`default_data_dir`].
        split (`str`, *optional*, defaults to `"train"`):
            A sub-folder of `fsdd/`. Only `train` (recordings 5-49) is shipped; carve a validation split with
            [`split_fsdd_by_recording`].

    Returns:
        `Dataset`: columns `audio` (absolute path), `text` (the digit as an English word, "zero".."nine"),
        `digit` (0-9), `speaker` and `recording` (the take index), sorted by (digit, speaker, recording).
    """
    fsdd_dir = _dataset_dir(root, "fsdd")
    _check_split(split, (path.name for path in fsdd_dir.iterdir() if path.is_dir()), "FSDD")
    rows = [_fsdd_row(path) for path in (fsdd_dir / split).glob("*.wav")]
    if not rows:
        raise ValueError(f"No .wav files in {fsdd_dir / split}: the FSDD split is empty.")
    rows.sort(key=lambda row: (row["digit"], row["speaker"], row["recording"]))
    return Dataset.from_list(rows, features=FSDD_FEATURES)


def split_fsdd_by_recording(dataset: Dataset, val_recordings: Iterable[int] = range(45, 50)) -> DatasetDict:
    """Splits FSDD into train and validation by recording index, never by random clips.

    Every speaker says every digit in each recording session, so holding out whole recording indices gives a
    validation set with all speakers and digits but no take seen in training (the official test split holds
    out recordings 0-4 the same way).

    Args:
        dataset (`Dataset`): FSDD as [`load_fsdd`] returns it (needs the `recording` column).
        val_recordings (`Iterable[int]`, *optional*, defaults to `range(45, 50)`): the held-out recording indices.

    Returns:
        `DatasetDict`: `train` and `validation`, both non-empty, in the order of `dataset`.
    """
    held_out = set(val_recordings)
    recordings = list(dataset["recording"])
    validation = [index for index, recording in enumerate(recordings) if recording in held_out]
    train = [index for index, recording in enumerate(recordings) if recording not in held_out]
    if not validation or not train:
        raise ValueError(
            f"val_recordings {sorted(held_out)} leave an empty split: the data set has recordings "
            f"{min(recordings)}-{max(recordings)}; hold out some, not all, of them."
        )
    return DatasetDict({"train": dataset.select(train), "validation": dataset.select(validation)})


def load_read_speech(root: str | os.PathLike | None = None, split: str | None = None) -> Dataset:
    """Loads the read-speech set: `root/read_speech/transcripts.tsv` (`file<TAB>text`) and `wavs/` (16 kHz FLAC).

    Args:
        root (`str` or `os.PathLike`, *optional*):
            The data folder that holds `read_speech/` (or that folder itself). Defaults to [`default_data_dir`].
        split (`str`, *optional*): there is only one split: `None` or `"train"`.

    Returns:
        `Dataset`: columns `audio` (absolute path) and `text`, in the order of `transcripts.tsv`.
    """
    _check_split("train" if split is None else split, ["train"], "read_speech")
    folder = _dataset_dir(root, "read_speech")
    transcripts = folder / "transcripts.tsv"
    if not transcripts.is_file():
        raise FileNotFoundError(f"No transcripts.tsv in {folder}: it should list `file<TAB>text` per clip.")
    with transcripts.open(encoding="utf-8", newline="") as file:
        # QUOTE_NONE: sentences contain quotation marks that are text, not CSV quoting.
        table = [row for row in csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE) if row]
    if not table or table[0] != ["file", "text"] or any(len(row) != 2 for row in table):
        raise ValueError(f"{transcripts} must start with the header 'file<TAB>text' and have two columns per line.")
    rows = [{"audio": str(folder / "wavs" / name), "text": text} for name, text in table[1:]]
    if not rows:
        raise ValueError(f"{transcripts} lists no clips.")
    missing = [row["audio"] for row in rows if not os.path.isfile(row["audio"])]
    if missing:
        raise FileNotFoundError(f"{len(missing)} clips listed in {transcripts} are missing, e.g. {missing[:3]}.")
    return Dataset.from_list(rows, features=READ_SPEECH_FEATURES)


# ---------------------------------------------------------------------------------------------------------------
# Multi30k (translation)
# ---------------------------------------------------------------------------------------------------------------


def multi30k_languages(root: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """The languages of each Multi30k split, from the file names `<split>.<lang>.gz`: `{"val": ["de", "en"], ...}`."""
    folder = _dataset_dir(root, "multi30k")
    languages: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.gz")):
        match = _MULTI30K_TEXT_NAME.fullmatch(path.name)
        if match is not None:
            languages.setdefault(match["split"], []).append(match["lang"])
    return languages


def load_multi30k(
    root: str | os.PathLike | None = None, split: str = "train", source_lang: str = "en", target_lang: str = "de"
) -> Dataset:
    """Loads a Multi30k language pair from `root/multi30k/<split>.<lang>.gz` (aligned sentences, one per line).

    Args:
        root (`str` or `os.PathLike`, *optional*):
            The data folder that holds `multi30k/` (or that folder itself). Defaults to [`default_data_dir`].
        split (`str`, *optional*, defaults to `"train"`): `train`, `val` or `test_2016_flickr` in the shared data.
        source_lang (`str`, *optional*, defaults to `"en"`): the language translated from.
        target_lang (`str`, *optional*, defaults to `"de"`): the language translated to.

    Returns:
        `Dataset`: columns `source`, `target` (sentences exactly as in the files), `source_lang`, `target_lang`,
        `image` (the Flickr30k file name from `<split>.images.txt`; `None` without that file) and `index` (the line
        number, 0-based: Flickr8k's `m30_index`).
    """
    if source_lang == target_lang:
        raise ValueError(f"source_lang and target_lang are both {source_lang!r}: pick two different languages.")
    folder = _dataset_dir(root, "multi30k")
    languages = multi30k_languages(folder)
    _check_split(split, languages, "Multi30k")
    missing = [lang for lang in (source_lang, target_lang) if lang not in languages[split]]
    if missing:
        raise ValueError(f"Multi30k {split!r} has no {missing} text: its languages are {languages[split]}.")
    sources = _read_text_lines(folder / f"{split}.{source_lang}.gz")
    targets = _read_text_lines(folder / f"{split}.{target_lang}.gz")
    images_file = folder / f"{split}.images.txt"
    images = _read_text_lines(images_file) if images_file.is_file() else [None] * len(sources)
    if not len(sources) == len(targets) == len(images):
        raise ValueError(
            f"Multi30k {split!r} files are not aligned: {len(sources)} {source_lang} lines, {len(targets)} "
            f"{target_lang} lines, {len(images)} image names."
        )
    if not sources:
        raise ValueError(f"Multi30k {split!r} is empty.")
    columns = {
        "source": sources,
        "target": targets,
        "source_lang": [source_lang] * len(sources),
        "target_lang": [target_lang] * len(sources),
        "image": images,
        "index": list(range(len(sources))),
    }
    return Dataset.from_dict(columns, features=MULTI30K_FEATURES)


# ---------------------------------------------------------------------------------------------------------------
# Flickr8k (captioning, multimodal translation)
# ---------------------------------------------------------------------------------------------------------------


def _flickr8k_row(record: dict, images_dir: Path, where: str) -> dict:
    """The columns of one `flickr8k/<split>.jsonl` record; `where` (file:line) locates errors."""
    try:
        image, captions = images_dir / record["image"], record["flickr8k_captions"]
    except KeyError as error:
        raise ValueError(
            f"{where}: a Flickr8k record needs 'image' and 'flickr8k_captions', missing {error}."
        ) from None
    if not image.is_file():
        raise FileNotFoundError(f"{where}: image {image} not found.")
    return {
        "image": str(image),
        "captions": captions,
        **{field: record.get(field) for field in FLICKR8K_MULTI30K_FIELDS},
    }


def load_flickr8k(root: str | os.PathLike | None = None, split: str = "train") -> Dataset:
    """Loads Flickr8k captions from `root/flickr8k/<split>.jsonl`, images in `root/flickr8k/images/`.

    Args:
        root (`str` or `os.PathLike`, *optional*):
            The data folder that holds `flickr8k/` (or that folder itself). Defaults to [`default_data_dir`].
        split (`str`, *optional*, defaults to `"train"`): `train` or `val` in the shared data.

    Returns:
        `Dataset`: columns `image` (absolute path), `captions` (the 5 English captions) and the image's Multi30k
        entry, `None` where it has none: `m30_en`, `m30_de`, `m30_fr`, `m30_cs`, `m30_split` and `m30_index` (the
        line in that Multi30k split). See [`keep_multi30k_rows`].
    """
    folder = _dataset_dir(root, "flickr8k")
    _check_split(split, (path.stem for path in folder.glob("*.jsonl")), "Flickr8k")
    path = folder / f"{split}.jsonl"
    with path.open(encoding="utf-8") as file:
        rows = [
            _flickr8k_row(json.loads(line), folder / "images", f"{path}:{number}")
            for number, line in enumerate(file, start=1)
            if line.strip()
        ]
    if not rows:
        raise ValueError(f"{path} holds no records.")
    return Dataset.from_list(rows, features=FLICKR8K_FEATURES)


def keep_multi30k_rows(dataset: Dataset, m30_splits: str | Iterable[str] | None = None) -> Dataset:
    """Keeps the Flickr8k rows that have a Multi30k entry, for multimodal translation.

    Beware: Flickr8k's splits are not Multi30k's. In the shared data, 27 Flickr8k `train` images are Multi30k
    `test_2016_flickr` lines and 26 are `val` lines, while 92 of the 100 Flickr8k `val` images are Multi30k `train`
    lines. Pass `m30_splits` so that a model tuned or evaluated on a Multi30k split never trained on its sentences.

    Args:
        dataset (`Dataset`): Flickr8k as [`load_flickr8k`] returns it.
        m30_splits (`str` or `Iterable[str]`, *optional*): keep only rows whose `m30_split` is one of these.

    Returns:
        `Dataset`: the kept rows, in order.
    """
    wanted = {m30_splits} if isinstance(m30_splits, str) else None if m30_splits is None else set(m30_splits)
    keep = [
        index
        for index, m30_split in enumerate(dataset["m30_split"])
        if m30_split is not None and (wanted is None or m30_split in wanted)
    ]
    if not keep:
        where = "" if wanted is None else f" in the Multi30k splits {sorted(wanted)}"
        raise ValueError(f"No row has a Multi30k entry{where}: check m30_splits and the data set's m30_split column.")
    return dataset.select(keep)
