"""Which data each task trains and evaluates on: the real layouts of `../shared/data` or the built-in synthetic set.

| task | real data: train / validation / test |
| --- | --- |
| asr (fsdd) | FSDD train folder, recordings 5-44 / 45-49 (split by recording, never by random clip) |
| asr (read_speech) | read speech, first 121 / last 20 sentences (one speaker: an overfitting check) |
| translation | Multi30k train / val / test_2016_flickr, `source_lang` -> `target_lang` |
| captioning | Flickr8k train / val, 5 references per image |
| mmt | Flickr8k rows whose Multi30k entry is in Multi30k train / in Multi30k val (both Flickr8k files) |
| pretrain | text (Multi30k sentences) + image-text (Flickr8k captions) + audio-text (FSDD, read speech); |
|          | validation from the held-out parts of each |
"""

import dataclasses
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, DatasetDict, Features, Value, concatenate_datasets

from ..media_multimodal_gpt import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from .corpora import (
    _check_split,
    default_data_dir,
    keep_multi30k_rows,
    load_flickr8k,
    load_fsdd,
    load_multi30k,
    load_read_speech,
    split_fsdd_by_recording,
)
from .synthetic import make_demo_splits

METADATA_FILE_NAMES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")
# `datasets` packaged builders (local, no Hub access) by file name extension.
TABLE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
READ_SPEECH_VALIDATION = 20
SYNTHETIC_TASKS = {"pretrain": "pretraining", "captioning": "captioning", "translation": "translation", "asr": "asr"}


def load_task_splits(data_args: Any) -> DatasetDict:
    """`train`, `validation` (and `test` where the data has one) for `data_args.task`, cut to
    `max_train_samples` / `max_eval_samples`. `data_args` is a `training.DataArguments`."""
    if data_args.dataset == "synthetic":
        if data_args.task not in SYNTHETIC_TASKS:
            raise ValueError(f"The synthetic data set has no {data_args.task!r} task: use {sorted(SYNTHETIC_TASKS)}.")
        splits = make_demo_splits(seed=0)[SYNTHETIC_TASKS[data_args.task]]
    elif data_args.dataset == "real":
        root = data_args.data_dir or default_data_dir()
        splits = REAL_DATA[data_args.task](root, data_args)
    else:
        raise ValueError(f"--dataset must be 'real' or 'synthetic', got {data_args.dataset!r}.")
    return DatasetDict(
        {
            name: _head(split, data_args.max_train_samples if name == "train" else data_args.max_eval_samples)
            for name, split in splits.items()
        }
    )


def training_texts(train: Dataset) -> list[str]:
    """Every sentence of a training split (targets, sources, all caption references): a tokenizer's training text."""
    texts: list[str] = []
    for column in ("text", "target", "source", "captions"):
        if column in train.column_names:
            for value in train[column]:
                texts.extend(value if isinstance(value, list) else [value])
    return [text for text in texts if text]


def _head(split: Dataset, limit: int | None) -> Dataset:
    return split if limit is None or limit >= len(split) else split.select(range(limit))


def _asr(root, data_args) -> DatasetDict:
    if data_args.asr_corpus == "fsdd":
        return split_fsdd_by_recording(load_fsdd(root, "train"))
    if data_args.asr_corpus == "read_speech":
        speech = load_read_speech(root)
        cut = len(speech) - READ_SPEECH_VALIDATION
        return DatasetDict({"train": speech.select(range(cut)), "validation": speech.select(range(cut, len(speech)))})
    raise ValueError(f"--asr_corpus must be 'fsdd' or 'read_speech', got {data_args.asr_corpus!r}.")


def _translation(root, data_args) -> DatasetDict:
    pair = dict(source_lang=data_args.source_lang, target_lang=data_args.target_lang)
    return DatasetDict(
        {
            "train": load_multi30k(root, "train", **pair),
            "validation": load_multi30k(root, "val", **pair),
            "test": load_multi30k(root, "test_2016_flickr", **pair),
        }
    )


def _captioning(root, data_args) -> DatasetDict:
    return DatasetDict({"train": load_flickr8k(root, "train"), "validation": load_flickr8k(root, "val")})


def _mmt(root, data_args) -> DatasetDict:
    """Flickr8k rows with their Multi30k sentences as `source` / `target`. Flickr8k's own splits overlap Multi30k's,
    so rows are split by their Multi30k split: no validation sentence is ever trained on."""
    source, target = f"m30_{data_args.source_lang}", f"m30_{data_args.target_lang}"
    flickr = concatenate_datasets([load_flickr8k(root, "train"), load_flickr8k(root, "val")])

    def rows(m30_split: str) -> Dataset:
        kept = keep_multi30k_rows(flickr, m30_split)
        kept = kept.map(lambda row: {"source": row[source], "target": row[target]})
        return kept.select_columns(["image", "source", "target"])

    return DatasetDict({"train": rows("train"), "validation": rows("val")})


def _pretrain(root, data_args) -> DatasetDict:
    """Text-only, image-text and audio-text rows in one data set (columns `text`, `image`, `audio`)."""
    fsdd = split_fsdd_by_recording(load_fsdd(root, "train"))
    speech = _asr(root, _with(data_args, asr_corpus="read_speech"))
    flickr = {split: load_flickr8k(root, name) for split, name in (("train", "train"), ("validation", "val"))}
    multi30k = {split: load_multi30k(root, name) for split, name in (("train", "train"), ("validation", "val"))}
    result = {}
    for split in ("train", "validation"):
        parts = [
            _text_rows(sentence for row in multi30k[split] for sentence in (row["source"], row["target"])),
            _media_rows("image", ((row["image"], caption) for row in flickr[split] for caption in row["captions"])),
            _media_rows("audio", ((row["audio"], row["text"]) for row in fsdd[split])),
            _media_rows("audio", ((row["audio"], row["text"]) for row in speech[split])),
        ]
        result[split] = concatenate_datasets(parts).shuffle(seed=0)
    return DatasetDict(result)


# Media are file paths, `None` where a row has none.
PRETRAIN_FEATURES = Features({"text": Value("string"), "image": Value("string"), "audio": Value("string")})


def _text_rows(texts: Iterable[str]) -> Dataset:
    texts = [text.strip() for text in texts if text.strip()]
    empty = [None] * len(texts)
    return Dataset.from_dict({"text": texts, "image": empty, "audio": empty}, features=PRETRAIN_FEATURES)


def _media_rows(column: str, pairs: Iterable[tuple[str, str]]) -> Dataset:
    media, texts = zip(*pairs)
    other = "audio" if column == "image" else "image"
    rows = {"text": list(texts), column: list(media), other: [None] * len(texts)}
    return Dataset.from_dict(rows, features=PRETRAIN_FEATURES)


def _with(data_args: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(data_args, **changes)


# ---------------------------------------------------------------------------------------------------------------
# Users' own data
# ---------------------------------------------------------------------------------------------------------------


def _media_column_name(column: str, paths: Sequence[str | None], where: Path) -> str:
    """The column that a `file_name` column becomes: `audio` or `image` by the files' extensions."""
    suffixes = {Path(path).suffix.lower() for path in paths if path}
    for name, extensions in (("audio", AUDIO_EXTENSIONS), ("image", IMAGE_EXTENSIONS)):
        if suffixes and suffixes <= extensions:
            return name
    raise ValueError(
        f"{where}: cannot tell whether the {column!r} column names audio or image files (extensions "
        f"{sorted(suffixes)}): name the column 'audio_file_name' or 'image_file_name' instead."
    )


def _path_columns(dataset: Dataset, media_columns: Sequence[str], where: Path) -> dict[str, str]:
    """Maps each column that holds relative media paths to the name it gets, the way `imagefolder` names them."""
    renames = {}
    for column, feature in dataset.features.items():
        is_text = feature in (Value("string"), Value("large_string"))
        if column == "file_name" and is_text:
            renames[column] = _media_column_name(column, dataset[column], where)
        elif column.endswith("_file_name") and is_text:
            renames[column] = column.removesuffix("_file_name")
        elif column in media_columns and is_text:
            renames[column] = column
    return renames


def _resolve_media_paths(dataset: Dataset, base_dir: Path, media_columns: Sequence[str], where: Path) -> Dataset:
    """Renames `file_name` columns and turns their relative paths into absolute ones; checks the files exist."""
    renames = _path_columns(dataset, media_columns, where)
    taken = set(dataset.column_names) - set(renames)
    clashes = [name for old, name in renames.items() if name != old and name in taken]
    if clashes:
        raise ValueError(f"{where}: the file_name columns would overwrite the columns {clashes}: rename them.")
    columns = {}
    for old, new in renames.items():
        paths = [None if path is None else str((base_dir / path).resolve()) for path in dataset[old]]
        missing = [path for path in paths if path is not None and not os.path.isfile(path)]
        if missing:
            raise FileNotFoundError(f"{where}: {len(missing)} files of column {old!r} not found, e.g. {missing[:3]}.")
        columns[new] = paths
    order = [renames.get(column, column) for column in dataset.column_names]
    dataset = dataset.remove_columns(list(renames))
    for name, paths in columns.items():
        dataset = dataset.add_column(name, paths)
    return dataset.select_columns(order)


def _load_table_file(file: Path, media_columns: Sequence[str], cache_dir: str | os.PathLike | None) -> Dataset:
    """Loads one JSON lines / CSV / Parquet file with `datasets`' local builders and resolves its media paths."""
    builder = TABLE_BUILDERS.get(file.suffix.lower())
    if builder is None:
        raise ValueError(f"Cannot load {file}: supported files are {sorted(TABLE_BUILDERS)} or a media folder.")
    if not file.is_file():
        raise FileNotFoundError(f"Data file not found: {file}")
    file = file.resolve()
    try:
        dataset = datasets.load_dataset(builder, data_files=str(file), split="train", cache_dir=cache_dir)
    except (ValueError, StopIteration) as error:  # what the builders raise for an empty file
        raise ValueError(f"Could not read any rows from {file} ({error!r}): is it empty or malformed?") from error
    if len(dataset) == 0:
        raise ValueError(f"{file} holds no rows: is it empty?")
    return _resolve_media_paths(dataset, file.parent, media_columns, file)


def _find_metadata(folder: Path) -> Path | None:
    """The one `metadata.{jsonl,csv,parquet}` file of `folder`, or `None`."""
    found = [folder / name for name in METADATA_FILE_NAMES if (folder / name).is_file()]
    if len(found) > 1:
        raise ValueError(f"{folder} has several metadata files {[path.name for path in found]}: keep one.")
    return found[0] if found else None


def _media_folder_metadata(folder: Path, split: str | None) -> Path:
    """The metadata file of a split of an `imagefolder` / `audiofolder`-style folder."""
    metadata = _find_metadata(folder)
    if metadata is not None:
        _check_split("train" if split is None else split, ["train"], f"{folder} (metadata in the folder itself)")
        return metadata
    splits = {sub.name: _find_metadata(sub) for sub in sorted(folder.iterdir()) if sub.is_dir()}
    splits = {name: path for name, path in splits.items() if path is not None}
    if not splits:
        raise FileNotFoundError(
            f"No {' / '.join(METADATA_FILE_NAMES)} in {folder} or its sub-folders: add one with a 'file_name' column "
            "giving each file's path relative to it (the Hugging Face imagefolder / audiofolder layout)."
        )
    return splits[_check_split("train" if split is None else split, splits, str(folder))]


def load_user_dataset(
    path_or_files: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    split: str | None = None,
    media_columns: Sequence[str] = ("audio", "image"),
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """Loads users' own data in the standard Hugging Face forms, with media columns as absolute path strings.

    Accepted forms:
    - an `imagefolder` / `audiofolder` directory: a `metadata.jsonl` (or `.csv`, `.parquet`) whose `file_name`
      column names each file relative to the metadata file, either in the folder itself or in one sub-folder per
      split (`train/metadata.jsonl`, `validation/metadata.jsonl`...);
    - JSON lines, CSV or Parquet files (one path or a list, concatenated), read with `datasets`' local builders
      (no Hub access; works with `HF_HUB_OFFLINE=1`).

    Media paths are resolved relative to the file that lists them. As in `imagefolder`, a `file_name` column
    becomes `audio` or `image` (by the files' extensions) and an `<name>_file_name` column becomes `<name>`; string
    columns named in `media_columns` are resolved too. Decoding is left to `multimodal_gpt.media_multimodal_gpt`.

    Args:
        path_or_files (`str`, `os.PathLike` or a sequence of them): a media folder, or data file(s).
        split (`str`, *optional*):
            The split sub-folder of a media folder (default `train`; a folder with its own metadata file is the
            `train` split). Not used with files: pass the files of the split you want.
        media_columns (`Sequence[str]`, *optional*, defaults to `("audio", "image")`):
            Columns that hold media file paths to resolve.
        cache_dir (`str` or `os.PathLike`, *optional*): the `datasets` cache folder for the Arrow files.

    Returns:
        `Dataset`: the user's columns, with media columns as absolute paths.

    Raises:
        `FileNotFoundError`: a path, metadata file or listed media file is missing.
        `ValueError`: an unknown split or file type, or no rows.
    """
    if isinstance(path_or_files, (str, os.PathLike)):
        path = Path(path_or_files).expanduser()
        if path.is_dir():
            metadata = _media_folder_metadata(path, split)
            return _load_table_file(metadata, media_columns, cache_dir)
        files = [path]
    else:
        files = [Path(file).expanduser() for file in path_or_files]
    if split is not None:
        raise ValueError(
            f"split={split!r} selects a sub-folder of a media folder; with files, pass that split's files."
        )
    if not files:
        raise ValueError("No data files given: pass a media folder, or JSON lines / CSV / Parquet files.")
    parts = [_load_table_file(file, media_columns, cache_dir) for file in files]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


# ---------------------------------------------------------------------------------------------------------------
# `datasets` features
# ---------------------------------------------------------------------------------------------------------------


def _undecoded_feature(feature: Any) -> Any:
    """The same feature with every (nested) `Audio` / `Image` set to `decode=False`."""
    if isinstance(feature, (datasets.Audio, datasets.Image)):
        return dataclasses.replace(feature, decode=False)
    if isinstance(feature, (datasets.List, datasets.LargeList)):
        return dataclasses.replace(feature, feature=_undecoded_feature(feature.feature))
    if isinstance(feature, dict):
        return {key: _undecoded_feature(value) for key, value in feature.items()}
    if isinstance(feature, (list, tuple)) and len(feature) == 1:
        return [_undecoded_feature(feature[0])]
    return feature


def undecoded_media_columns(
    dataset: datasets.Dataset | datasets.DatasetDict | datasets.IterableDataset | datasets.IterableDatasetDict,
) -> datasets.Dataset | datasets.DatasetDict | datasets.IterableDataset | datasets.IterableDatasetDict:
    """Casts every `Audio` and `Image` column (nested ones too) to `decode=False`, so that our decoders take over.

    Rows then hold `{"path": ..., "bytes": ...}` dicts for [`load_audio`] / [`load_image`], and reading a row no
    longer needs torchcodec or FFmpeg. The cast only changes the feature, not the stored data, so it is instant.
    An `Audio(sampling_rate=...)` target rate is not applied by the cast: pass it to [`load_audio`].

    Args:
        dataset (`Dataset`, `DatasetDict`, `IterableDataset` or `IterableDatasetDict`): the data set to cast.

    Returns:
        The same kind of object with undecoded media columns. Other columns, and iterable data sets whose features
        are unknown, are returned unchanged.
    """
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        return type(dataset)({split: undecoded_media_columns(part) for split, part in dataset.items()})
    if dataset.features is None:
        return dataset
    for column, feature in dataset.features.items():
        undecoded = _undecoded_feature(feature)
        if undecoded != feature:
            dataset = dataset.cast_column(column, undecoded)
    return dataset


REAL_DATA = {"asr": _asr, "translation": _translation, "captioning": _captioning, "mmt": _mmt, "pretrain": _pretrain}

__all__ = ["load_task_splits", "load_user_dataset", "training_texts", "undecoded_media_columns"]
