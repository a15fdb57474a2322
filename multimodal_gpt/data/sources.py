"""Where a run's rows come from, in one place: [`load_task_data`] reads the splits a run needs, from a built-in corpus
or any `datasets` source, and checks them against the task's columns before anything trains.

- `--dataset_name fsdd`, `read_speech`, `multi30k`, `flickr8k`: the built-in corpora under `--data_dir`
  ([`builtin_splits`]); `synthetic`: the generated demo set ([`~synthetic.make_demo_splits`], seed 0);
- no `--dataset_name`: the task's built-in corpus (asr: fsdd; translation: multi30k; captioning and mmt: flickr8k;
  pretrain: the four real ones mixed);
- `--dataset_name <folder>`: a `save_to_disk` folder; an imagefolder / audiofolder with metadata files
  ([`~local_files.media_folder_metadata`]); else any folder `datasets.load_dataset` reads;
- `--dataset_name <Hub id>`: `datasets.load_dataset(id, --dataset_config_name)`, from the local cache when
  `HF_HUB_OFFLINE=1`;
- `--train_file` / `--validation_file` / `--test_file`: JSON lines, JSON, CSV, TSV or Parquet files
  ([`~local_files.load_table_file`]).

Any split the source has can be trained on (`--train_split_name`) or evaluated (`--eval_split_name`, several); an
unknown split is an error that lists the available ones. Columns are the task's ([`~tasks.Task`]), renamed by the
column flags; an unknown column is an error that lists the available ones. Media columns stay undecoded (paths, bytes,
`{"path", "bytes"}` dicts, arrays): the collator decodes them with `multimodal_gpt.media_multimodal_gpt` at the
tower's sampling rate, without FFmpeg or torchcodec ([`undecoded_media_columns`]).
"""

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, IterableDataset, concatenate_datasets

from ..media_multimodal_gpt import read_audio
from .corpora import (
    FLICKR8K_MULTI30K_FIELDS,
    _dataset_dir,
    default_data_dir,
    keep_multi30k_rows,
    load_flickr8k,
    load_fsdd,
    load_multi30k,
    load_read_speech,
    multi30k_languages,
    split_fsdd_by_recording,
)
from .local_files import TABLE_BUILDERS, media_folder_metadata, resolve_media_paths, table_splits, with_features
from .mix import media_rows, parse_mix_weights, text_rows, weighted_mix
from .synthetic import make_demo_splits
from .tasks import BadRowError, Task, get_task, translation_text

logger = logging.getLogger(__name__)

AnyDataset = Dataset | IterableDataset
SplitLoader = Callable[[], AnyDataset]

# ---------------------------------------------------------------------------------------------------------------
# The built-in corpora as named sources: every split of each layout, in the columns each task reads
# ---------------------------------------------------------------------------------------------------------------

BUILTIN_SOURCES = ("fsdd", "read_speech", "multi30k", "flickr8k", "synthetic")
# Each task's corpus when no --dataset_name is given; pretraining mixes the four real ones (`_pretrain_mix_splits`).
DEFAULT_SOURCES = {"asr": "fsdd", "translation": "multi30k", "captioning": "flickr8k", "mmt": "flickr8k"}
# The layouts call their validation split `val`; `validation` (the Hugging Face name, the scripts' default) names it
# too where the folder has no `validation` of its own.
VALIDATION_ALIASES = {"validation": "val"}
READ_SPEECH_VALIDATION = 20
SYNTHETIC_TASKS = {"pretrain": "pretraining", "captioning": "captioning", "translation": "translation", "asr": "asr"}


def builtin_splits(
    name: str | None,
    task: str,
    root: str | os.PathLike | None = None,
    *,
    source_lang: str = "en",
    target_lang: str = "de",
    pretrain_mix: dict[str, float] | None = None,
) -> dict[str, SplitLoader]:
    """The splits of a built-in corpus for `task`, each as a function that loads it (nothing is read before).

    - `fsdd` (asr, pretrain): every sub-folder of `fsdd/`; without a validation folder of its own, `train` is split
      by recording: 5-44 `train`, 45-49 `validation` ([`~corpora.split_fsdd_by_recording`]);
    - `read_speech` (asr, pretrain): `train` (the first 121 sentences) and `validation` (the last 20);
    - `multi30k` (translation, pretrain): every `<split>` of the `<split>.<lang>.gz` files;
    - `flickr8k` (captioning, pretrain, mmt): every `<split>.jsonl`; for mmt, the Multi30k splits of its rows
      ([`~corpora.keep_multi30k_rows`]);
    - `synthetic` (asr, translation, captioning, pretrain): `train`, `validation`, `test` (generated, seed 0);
    - `None` (pretrain): `train` and `validation` of the four real corpora mixed and shuffled, weighted by kind with
      `pretrain_mix` (text, text pairs, image-text, audio-text, media-only rows: see `multimodal_gpt.data.mix`).

    `validation` also names a layout's `val` split. Pretraining rows have the columns `text`, `image`, `audio`
    (paths, `None` where absent) for multi30k, flickr8k and the mix; fsdd and read_speech rows keep their own.

    Args:
        name (`str`, *optional*): one of [`BUILTIN_SOURCES`], or `None` for the task's default corpus.
        task (`str`): the task that reads the rows.
        root (`str` or `os.PathLike`, *optional*): the data folder (default [`default_data_dir`]).
        source_lang, target_lang (`str`): the language pair of multi30k translation and flickr8k mmt rows.
        pretrain_mix (`dict[str, float]`, *optional*): the weight of each kind of row in the pretraining mix
            ([`~mix.parse_mix_weights`]); `None`: text, image-text and audio-text rows as they come.

    Raises:
        `ValueError`: the corpus does not serve `task`, or lacks the language pair.
    """
    if name is None:
        if task == "pretrain":
            return _pretrain_mix_splits(root, pretrain_mix)
        name = DEFAULT_SOURCES[task]
    servers = {
        "fsdd": (("asr", "pretrain"), _fsdd_splits),
        "read_speech": (("asr", "pretrain"), _read_speech_splits),
        "multi30k": (("translation", "pretrain"), _multi30k_splits),
        "flickr8k": (("captioning", "pretrain", "mmt"), _flickr8k_splits),
        "synthetic": (tuple(SYNTHETIC_TASKS), _synthetic_splits),
    }
    if name not in servers:
        raise ValueError(f"Unknown built-in corpus {name!r}: choose one of {list(BUILTIN_SOURCES)}.")
    if pretrain_mix is not None:
        raise ValueError(f"--pretrain_mix weights the built-in pretraining mix (no --dataset_name), not {name!r}.")
    tasks, splits_of = servers[name]
    if task not in tasks:
        raise ValueError(f"The built-in corpus {name!r} serves the tasks {list(tasks)}, not {task!r}.")
    splits = splits_of(root, task, source_lang=source_lang, target_lang=target_lang)
    for alias, name_in_layout in VALIDATION_ALIASES.items():
        if alias not in splits and name_in_layout in splits:
            splits[alias] = splits[name_in_layout]
    return splits


def _fsdd_splits(root, task: str, **languages: str) -> dict[str, SplitLoader]:
    folder = _dataset_dir(root, "fsdd")
    splits = {path.name: partial(load_fsdd, root, path.name) for path in sorted(folder.iterdir()) if path.is_dir()}
    has_validation = any(name in splits for name in ("validation", *VALIDATION_ALIASES.values()))
    if "train" in splits and not has_validation:
        carved = cache(lambda: split_fsdd_by_recording(load_fsdd(root, "train")))
        splits["train"] = lambda: carved()["train"]
        splits["validation"] = lambda: carved()["validation"]
    return splits


def _read_speech_splits(root, task: str, **languages: str) -> dict[str, SplitLoader]:
    def load(split: str) -> Dataset:
        speech = load_read_speech(root)
        cut = len(speech) - READ_SPEECH_VALIDATION
        return speech.select(range(cut) if split == "train" else range(cut, len(speech)))

    return {split: partial(load, split) for split in ("train", "validation")}


def _multi30k_splits(root, task: str, *, source_lang: str, target_lang: str) -> dict[str, SplitLoader]:
    def load(split: str) -> Dataset:
        if task == "pretrain":  # both sides of every pair as text-only rows
            pairs = load_multi30k(root, split)
            return text_rows(sentence for row in pairs for sentence in (row["source"], row["target"]))
        return load_multi30k(root, split, source_lang=source_lang, target_lang=target_lang)

    return {split: partial(load, split) for split in multi30k_languages(root)}


def _flickr8k_splits(root, task: str, *, source_lang: str, target_lang: str) -> dict[str, SplitLoader]:
    folder = _dataset_dir(root, "flickr8k")
    files = sorted(path.stem for path in folder.glob("*.jsonl"))
    if task == "mmt":
        return _flickr8k_mmt_splits(root, files, source_lang, target_lang)

    def load(split: str) -> Dataset:
        flickr = load_flickr8k(root, split)
        if task == "pretrain":  # one image-text row per caption
            return media_rows("image", ((row["image"], caption) for row in flickr for caption in row["captions"]))
        return flickr

    return {split: partial(load, split) for split in files}


def _flickr8k_mmt_splits(root, files: list[str], source_lang: str, target_lang: str) -> dict:
    """Flickr8k rows with their Multi30k sentences as `source` / `target`, split by their Multi30k split (Flickr8k's
    own splits overlap Multi30k's): no sentence of a Multi30k validation split is ever trained on."""
    order = sorted(files, key=lambda name: (name != "train", name != "val", name))  # as before: train, val, others
    flickr = cache(lambda: concatenate_datasets([load_flickr8k(root, name) for name in order]))
    columns = {f"m30_{lang}" for lang in (source_lang, target_lang)}
    missing = sorted(columns - set(FLICKR8K_MULTI30K_FIELDS))
    if missing:
        languages = [field.removeprefix("m30_") for field in FLICKR8K_MULTI30K_FIELDS if len(field) == 6]
        raise ValueError(f"Flickr8k rows have Multi30k sentences in {languages}, not {missing}.")

    def load(m30_split: str) -> Dataset:
        kept = keep_multi30k_rows(flickr(), m30_split)
        kept = kept.map(lambda row: {"source": row[f"m30_{source_lang}"], "target": row[f"m30_{target_lang}"]})
        return kept.select_columns(["image", "source", "target"])

    m30_splits = sorted({split for split in flickr()["m30_split"] if split is not None})
    return {split: partial(load, split) for split in m30_splits}


def _synthetic_splits(root, task: str, **languages: str) -> dict[str, SplitLoader]:
    generated = make_demo_splits(seed=0)[SYNTHETIC_TASKS[task]]  # every task is generated: they share no input
    return {split: partial(lambda name: generated[name], split) for split in generated}


def _pretrain_mix_splits(root, weights: dict[str, float] | None) -> dict[str, SplitLoader]:
    """The rows of every kind of `multimodal_gpt.data.mix` (columns `text`, `image`, `audio`), weighted, shuffled."""
    languages = {"source_lang": "en", "target_lang": "de"}

    def load(split: str) -> Dataset:
        name_in_layout = "train" if split == "train" else "val"
        speech = (_fsdd_splits(root, "pretrain")[split], _read_speech_splits(root, "pretrain")[split])
        clips = cache(lambda: [(row["audio"], row["text"]) for load_clips in speech for row in load_clips()])
        pairs = cache(lambda: load_multi30k(root, name_in_layout))
        flickr = cache(lambda: load_flickr8k(root, name_in_layout))
        parts = {
            "text": lambda: _multi30k_splits(root, "pretrain", **languages)[name_in_layout](),
            "text_pair": lambda: text_rows(translation_text(row["source"], row["target"]) for row in pairs()),
            "image_text": lambda: _flickr8k_splits(root, "pretrain", **languages)[name_in_layout](),
            "audio_text": lambda: media_rows("audio", clips()),
            "image": lambda: media_rows("image", ((row["image"], None) for row in flickr())),
            "audio": lambda: media_rows("audio", ((audio, None) for audio, _ in clips())),
        }
        return weighted_mix(parts, weights)

    return {split: partial(load, split) for split in ("train", "validation")}


# ---------------------------------------------------------------------------------------------------------------
# Users' data: data files, local folders, Hub ids
# ---------------------------------------------------------------------------------------------------------------

SPLIT_FILES = {"train": "train_file", "validation": "validation_file", "test": "test_file"}


def _user_splits(data_args: Any, media_columns: Sequence[str]) -> tuple[dict[str, SplitLoader], str]:
    """The splits of the user's data (`--train_file`... or `--dataset_name`), and a name for it."""
    options = dict(
        media_columns=media_columns,
        cache_dir=data_args.cache_dir,
        streaming=data_args.streaming,
        num_proc=data_args.preprocessing_num_workers,
    )
    files = {split: Path(getattr(data_args, flag)) for split, flag in SPLIT_FILES.items() if getattr(data_args, flag)}
    if files:
        _refuse_config(data_args, "data files")
        return table_splits(files, **options), ", ".join(str(file) for file in files.values())
    name = data_args.dataset_name
    path = Path(name).expanduser()
    if path.is_dir():
        return _folder_splits(path.resolve(), data_args, options), str(path)
    if path.is_file() or path.suffix.lower() in TABLE_BUILDERS:
        raise ValueError(
            f"--dataset_name {name} is a file: pass it as --train_file, --validation_file or --test_file."
        )
    return _load_dataset_splits(name, data_args), name


def _refuse_config(data_args: Any, what: str) -> None:
    if data_args.dataset_config_name is not None:
        raise ValueError(f"--dataset_config_name selects a configuration of a data set; {what} have none: drop it.")


def _folder_splits(path: Path, data_args: Any, options: dict[str, Any]) -> dict[str, SplitLoader]:
    """A `save_to_disk` folder, an imagefolder / audiofolder with metadata files, or any folder `load_dataset`
    reads (data files named by split), in that order."""
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        _refuse_config(data_args, "save_to_disk folders")
        return _disk_splits(path)
    metadata = media_folder_metadata(path)
    if metadata:
        _refuse_config(data_args, "media folders")
        return table_splits(metadata, **options)
    media_columns = options["media_columns"]
    try:
        splits = _load_dataset_splits(str(path), data_args)
    except ValueError as error:
        raise ValueError(
            f"Could not read the folder {path}: {error.__cause__ or error}. A data folder holds a metadata.csv, "
            ".jsonl or .parquet with a 'file_name' column (imagefolder / audiofolder, in the folder or in one "
            "sub-folder per split), save_to_disk output, or data files that datasets.load_dataset reads (e.g. "
            "train.csv, test.csv)."
        ) from error
    return {split: _then(load, resolve_media_paths, path, media_columns, path) for split, load in splits.items()}


def _then(load: SplitLoader, step: Callable[..., AnyDataset], *args: Any) -> SplitLoader:
    """A loader that applies `step(dataset, *args)` to what `load` gives."""
    return lambda: step(load(), *args)


def _disk_splits(path: Path) -> dict[str, SplitLoader]:
    """The splits of a `save_to_disk` folder: a `DatasetDict`'s, or `train` for a single `Dataset`."""
    loaded = cache(lambda: datasets.load_from_disk(str(path)))
    if (path / "dataset_dict.json").is_file():
        names = json.loads((path / "dataset_dict.json").read_text())["splits"]
        return {name: partial(lambda split: loaded()[split], name) for name in names}
    return {"train": loaded}


def _load_dataset_splits(name: str, data_args: Any) -> dict[str, SplitLoader]:
    """`datasets.load_dataset(name, --dataset_config_name)`: a Hub id (from the local cache when offline) or a local
    folder of data files."""
    try:
        workers = (
            {} if data_args.preprocessing_num_workers is None else {"num_proc": data_args.preprocessing_num_workers}
        )
        loaded = datasets.load_dataset(
            name,
            data_args.dataset_config_name,
            cache_dir=data_args.cache_dir,
            streaming=data_args.streaming,
            **workers,
        )
    except ImportError as error:  # an audiofolder without metadata: datasets lists audio files with torchcodec
        raise ImportError(
            f"datasets could not read {name!r} ({error}). For a folder of media files, add a metadata.csv or "
            "metadata.jsonl with a 'file_name' column and the text columns: this package reads it without torchcodec."
        ) from error
    except (FileNotFoundError, ConnectionError, ValueError, datasets.exceptions.DatasetNotFoundError) as error:
        raise ValueError(
            f"Could not load the data set {name!r}: {error}. --dataset_name takes a built-in corpus "
            f"{list(BUILTIN_SOURCES)}, a local folder, or a Hub id; with no network (HF_HUB_OFFLINE=1) a Hub data set "
            "loads from the local cache (--cache_dir where it is not the default)."
        ) from error
    return {split: partial(lambda part: loaded[part], split) for split in loaded}


# ---------------------------------------------------------------------------------------------------------------
# The task's columns
# ---------------------------------------------------------------------------------------------------------------

# Per task: the `Task` field each column flag sets.
COLUMN_FLAGS = {
    "asr": {"audio_column": "audio_column_name", "target_column": "text_column_name"},
    "pretrain": {
        "target_column": "text_column_name",
        "image_column": "image_column",
        "audio_column": "audio_column_name",
    },
    "captioning": {"image_column": "image_column", "target_column": "caption_column"},
    "translation": {"source_column": "source_column", "target_column": "target_column"},
    "mmt": {"image_column": "image_column", "source_column": "source_column", "target_column": "target_column"},
}
TRANSLATION_COLUMN = "translation"
# The fields a `translation` dict column replaces.
TRANSLATION_FIELDS = ("source_column", "target_column")


def task_for(data_args: Any, column_names: Sequence[str] = ()) -> Task:
    """The task a run reads its rows with: its columns from the column flags (else the task's defaults), its language
    pair, and for `--text_only` mmt the translation prompt on the same rows.

    Without `--source_column` / `--target_column`, translation data with a `translation` column of `{language:
    sentence}` dicts and no `source` column (Hub translation data sets) is read through that column.
    """
    flags = dict(COLUMN_FLAGS[data_args.task])
    name = data_args.task
    if name == "mmt" and data_args.text_only:
        name = "translation"
        flags.pop("image_column")
    default = get_task(name)
    fields = {field: getattr(data_args, flag) or getattr(default, field) for field, flag in flags.items()}
    if data_args.task in ("translation", "mmt"):
        fields.update(source_lang=data_args.source_lang or "en", target_lang=data_args.target_lang or "de")
        no_column_flags = data_args.source_column is None and data_args.target_column is None
        if no_column_flags and TRANSLATION_COLUMN in column_names and fields["source_column"] not in column_names:
            fields["translation_column"] = TRANSLATION_COLUMN
    return get_task(name, **fields)


def _check_columns(dataset: AnyDataset, task: Task, data_args: Any, where: str) -> None:
    """Every column the task reads is in `dataset`, else an error naming the flag and the columns there are."""
    columns = list(dataset.column_names)
    for field_name, flag in COLUMN_FLAGS[data_args.task].items():
        column = getattr(task, field_name)
        read_from_translation = task.translation_column is not None and field_name in TRANSLATION_FIELDS
        optional = task.media_optional and getattr(data_args, flag) is None  # pretraining rows may lack a medium
        if column is not None and column not in columns and not read_from_translation and not optional:
            raise ValueError(f"--{flag} {column!r} not found in {where}: its columns are {columns}.")
    if task.translation_column is not None:  # the language pair must be in the dicts: check the first row
        first = dataset[0] if isinstance(dataset, Dataset) else next(iter(dataset.take(1)))
        task.target_texts(first)
        task.source_texts(first)


# ---------------------------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------------------------

# With --streaming and no limit, a tokenizer trained here reads this many training rows.
STREAMING_TOKENIZER_ROWS = 100_000


@dataclass
class TaskData:
    """The data of a run.

    Args:
        task ([`~tasks.Task`]): how rows become examples (the columns read, the language pair).
        source (`str`): what was read (a built-in corpus, a folder, a Hub id, files), for logs and the model card.
        train (`Dataset` or `IterableDataset`, *optional*): the training split, cut and filtered.
        evaluation (`dict[str, Dataset | IterableDataset]`): each evaluation split by name, in the order asked.
        prediction (`Dataset` or `IterableDataset`, *optional*): the split to predict (`--predict_split_name`).
    """

    task: Task
    source: str
    train: AnyDataset | None
    evaluation: dict[str, AnyDataset]
    prediction: AnyDataset | None = None

    def sizes(self) -> dict[str, int | str]:
        """Rows per split (the training split as `train`; `"streamed"` for a stream), for logs."""
        splits = {"train": self.train} if self.train is not None else {}
        splits.update(self.evaluation)
        if self.prediction is not None:
            splits["predict"] = self.prediction
        return {name: len(split) if isinstance(split, Dataset) else "streamed" for name, split in splits.items()}


def load_task_data(
    data_args: Any, *, train: bool = True, evaluation: bool = True, prediction: bool = False
) -> TaskData:
    """Loads the training split (`train=True`), the evaluation splits (`evaluation=True`) and the split to predict
    (`prediction=True`) of a run.

    Args:
        data_args (`training.DataArguments`): the data flags (checked with `training.check_data_arguments`).
        train (`bool`, defaults to `True`): load `--train_split_name`, cut to `--max_train_samples`, then filtered by
            `--min/max_duration_in_seconds`.
        evaluation (`bool`, defaults to `True`): load every `--eval_split_name`, cut to `--max_eval_samples`.
        prediction (`bool`, defaults to `False`): load `--predict_split_name`, cut to `--max_predict_samples`.

    Raises:
        `ValueError`: an unknown split or column (the available ones are listed), or flags that do not fit the source.
        `FileNotFoundError`: missing data.
    """
    task = task_for(data_args)
    splits, source = available_splits(data_args, task.media_columns)
    wanted = ([data_args.train_split_name] if train else []) + (list(data_args.eval_split_name) if evaluation else [])
    wanted += [data_args.predict_split_name] if prediction else []
    for name in wanted:
        if name not in splits:
            raise ValueError(f"Unknown split {name!r} of {source}: available splits are {sorted(splits)}.")
    loaded = {name: _prepared(splits[name](), data_args) for name in dict.fromkeys(wanted)}
    if loaded:
        task = task_for(data_args, next(iter(loaded.values())).column_names)
    for name, dataset in loaded.items():
        _check_columns(dataset, task, data_args, f"{source} split {name!r}")
    train_split = None
    if train:
        train_split = _head(loaded[data_args.train_split_name], data_args.max_train_samples)
        train_split = _within_durations(train_split, task, data_args)
    evaluation_splits = {}
    if evaluation:
        evaluation_splits = {
            name: _head(loaded[name], data_args.max_eval_samples) for name in data_args.eval_split_name
        }
    prediction_split = None
    if prediction:
        prediction_split = _head(loaded[data_args.predict_split_name], data_args.max_predict_samples)
    return TaskData(task, source, train_split, evaluation_splits, prediction_split)


def available_splits(data_args: Any, media_columns: Sequence[str] = ()) -> tuple[dict[str, SplitLoader], str]:
    """Every split of the run's source, as `{name: loader}` (nothing is loaded yet), and the source's name."""
    is_builtin = data_args.dataset_name is None or data_args.dataset_name in BUILTIN_SOURCES
    has_files = any(getattr(data_args, flag) for flag in SPLIT_FILES.values())
    if is_builtin and not has_files:
        unused = ["dataset_config_name"]
        if not getattr(data_args, "cache_media_features", False):  # the media-feature cache is written there
            unused.append("cache_dir")
        if data_args.min_duration_in_seconds is None and data_args.max_duration_in_seconds is None:
            unused.append("preprocessing_num_workers")  # only the duration filter runs in processes here
        for flag in unused:
            if getattr(data_args, flag) is not None:
                raise ValueError(f"The built-in corpora are read in memory, without --{flag}: drop it.")
        root = data_args.data_dir or default_data_dir()
        splits = builtin_splits(
            data_args.dataset_name,
            data_args.task,
            root,
            source_lang=data_args.source_lang or "en",
            target_lang=data_args.target_lang or "de",
            pretrain_mix=_pretrain_mix(data_args),
        )
        return splits, data_args.dataset_name or DEFAULT_SOURCES.get(data_args.task, "the built-in pretraining mix")
    if data_args.data_dir is not None:
        raise ValueError("--data_dir locates the built-in corpora; with your own data it is not read: drop it.")
    if _pretrain_mix(data_args) is not None:
        raise ValueError("--pretrain_mix weights the built-in pretraining mix; with your own data, drop it.")
    return _user_splits(data_args, media_columns)


def _pretrain_mix(data_args: Any) -> dict[str, float] | None:
    spec = getattr(data_args, "pretrain_mix", None)
    return parse_mix_weights(spec) if spec else None


def _prepared(dataset: AnyDataset, data_args: Any) -> AnyDataset:
    """Media columns undecoded (our decoder takes over), a stream if asked, features known."""
    dataset = undecoded_media_columns(dataset)
    if data_args.streaming and isinstance(dataset, Dataset):
        dataset = dataset.to_iterable_dataset()
    return with_features(dataset)


def _head(dataset: AnyDataset, limit: int | None) -> AnyDataset:
    if limit is None:
        return dataset
    if isinstance(dataset, IterableDataset):
        return dataset.take(limit)
    return dataset if limit >= len(dataset) else dataset.select(range(limit))


def _within_durations(dataset: AnyDataset, task: Task, data_args: Any) -> AnyDataset:
    """Training rows whose clips last between `--min_duration_in_seconds` and `--max_duration_in_seconds`. A row
    whose audio cannot be read is kept: the collator skips and counts it with its reason."""
    low, high = data_args.min_duration_in_seconds, data_args.max_duration_in_seconds
    if low is None and high is None:
        return dataset
    keep = partial(_clips_within, task=task, low=low, high=high)
    if isinstance(dataset, IterableDataset):
        return dataset.filter(keep)
    kept = dataset.filter(keep, num_proc=data_args.preprocessing_num_workers, desc="clip durations")
    logger.info("Kept %d of %d training rows whose clips last %s-%s s.", len(kept), len(dataset), low or 0, high or "")
    return kept


def _clips_within(row: dict[str, Any], *, task: Task, low: float | None, high: float | None) -> bool:
    try:
        clips = [read_audio(source) for source in task.example(row).audio]
    except (BadRowError, ValueError, FileNotFoundError, TypeError):
        return True
    durations = [len(samples) / rate for samples, rate in clips]
    return all((low is None or seconds >= low) and (high is None or seconds <= high) for seconds in durations)


def training_texts(dataset: AnyDataset, task: Task, *, limit: int | None = None) -> list[str]:
    """Every text a task reads in a training split, references first, then sources (verbatim, empty ones dropped):
    a tokenizer's training text. A stream is read for its first `limit` rows (default 100,000)."""
    if isinstance(dataset, IterableDataset) and limit is None:
        limit = STREAMING_TOKENIZER_ROWS
    rows = _head(dataset.select_columns(list(task.text_columns)), limit)
    targets: list[str] = []
    sources: list[str] = []
    for row in rows:
        targets += task.target_texts(row)
        sources += task.source_texts(row)
    return targets + sources


def training_references(dataset: AnyDataset, task: Task, *, limit: int | None = None) -> list[list[str]]:
    """The references of each row of a training split (stripped; rows without any left out): the corpus whose
    document frequencies weigh a self-critical captioning reward. A stream is read for its first `limit` rows
    (default 100,000)."""
    if isinstance(dataset, IterableDataset) and limit is None:
        limit = STREAMING_TOKENIZER_ROWS
    references = []
    for row in _head(dataset.select_columns(list(task.text_columns)), limit):
        row_references = [text.strip() for text in task.target_texts(row) if text.strip()]
        if row_references:
            references.append(row_references)
    return references


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


__all__ = [
    "BUILTIN_SOURCES",
    "TaskData",
    "available_splits",
    "builtin_splits",
    "load_task_data",
    "task_for",
    "training_references",
    "training_texts",
    "undecoded_media_columns",
]
