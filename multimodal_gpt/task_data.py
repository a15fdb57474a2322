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

from collections.abc import Iterable
from typing import Any

from datasets import Dataset, DatasetDict, Features, Value, concatenate_datasets

from .data import (
    default_data_dir,
    keep_multi30k_rows,
    load_flickr8k,
    load_fsdd,
    load_multi30k,
    load_read_speech,
    split_fsdd_by_recording,
)
from .synthetic import make_demo_splits

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


REAL_DATA = {"asr": _asr, "translation": _translation, "captioning": _captioning, "mmt": _mmt, "pretrain": _pretrain}

__all__ = ["load_task_splits", "training_texts"]
