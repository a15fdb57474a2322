"""Users' local data: JSON lines, JSON, CSV, TSV and Parquet files, and imagefolder / audiofolder-style folders, read
with `datasets`' local builders (no Hub access; works with `HF_HUB_OFFLINE=1`). [`~sources.load_task_data`] decides
which of these a run reads; this module reads them.

- Text files are checked before `datasets` reads them, so that bad input names its file and line: a UTF-8
  byte-order mark, bytes that are not UTF-8, a JSON line that does not parse.
- Media paths are resolved relative to the file that lists them. As in `imagefolder`, a `file_name` column becomes
  `audio` or `image` (by the files' extensions) and a `<name>_file_name` column becomes `<name>`; string columns the
  task reads as media are resolved too. Decoding is left to `multimodal_gpt.media_multimodal_gpt`.
- Media folders are read through their metadata file, not with `load_dataset("audiofolder")`: `datasets` needs
  torchcodec (and FFmpeg) even to list the audio files of an audiofolder, and this package needs neither.
"""

import json
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, IterableDataset, Value

from ..media_multimodal_gpt import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from .corpora import iter_text_lines, parse_json_line

METADATA_FILE_NAMES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")
# `datasets` packaged builders (local, no Hub access) and their options, by file name extension.
TABLE_BUILDERS = {
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".parquet": ("parquet", {}),
}
_TEXT_COLUMN_TYPES = (Value("string"), Value("large_string"))


# ----- checking text files ---------------------------------------------------------------------------------------


def check_table_file(path: Path) -> None:
    """Reads a text data file once, failing on the first bad line with its file and line number (see
    [`~corpora.iter_text_lines`]); JSON lines must each parse as an object. Parquet files are binary: not read here.

    Raises:
        `ValueError`: naming the file and line.
    """
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return
    if suffix == ".json" and _is_json_document(path):
        return
    records = 0
    for number, line in iter_text_lines(path):
        if line.strip():
            records += 1
            if suffix in (".jsonl", ".json"):
                parse_json_line(line, f"{path}:{number}")
    header_lines = 1 if suffix in (".csv", ".tsv") else 0
    if records <= header_lines:
        raise ValueError(f"{path} holds no rows: is it empty?")


def _is_json_document(path: Path) -> bool:
    """Whether a `.json` file is one JSON document (a list of records, or an object of columns); `False` for JSON
    lines, which are checked line by line. A broken document is reported here, with its line."""
    text = "\n".join(line for _, line in iter_text_lines(path))
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        first_line = next((line for line in text.split("\n") if line.strip()), "")
        try:
            json.loads(first_line)
        except json.JSONDecodeError:  # not even the first line is a value of its own: a broken document
            raise ValueError(f"{path}:{error.lineno}: not valid JSON ({error.msg}, column {error.colno}).") from None
        return False
    return True


# ----- media paths -----------------------------------------------------------------------------------------------


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


def _path_columns(
    features: datasets.Features, file_names: Sequence[str | None], media_columns: Sequence[str], where: Path
) -> dict[str, str]:
    """Maps each column that holds relative media paths to the name it gets, the way `imagefolder` names them
    (`file_names`: the values, or the first values, of a `file_name` column)."""
    renames = {}
    for column, feature in features.items():
        if feature not in _TEXT_COLUMN_TYPES:
            continue
        if column == "file_name":
            renames[column] = _media_column_name(column, file_names, where)
        elif column.endswith("_file_name"):
            renames[column] = column.removesuffix("_file_name")
        elif column in media_columns:
            renames[column] = column
    taken = set(features) - set(renames)
    clashes = [name for old, name in renames.items() if name != old and name in taken]
    if clashes:
        raise ValueError(f"{where}: the file_name columns would overwrite the columns {clashes}: rename them.")
    return renames


def _absolute(path: str | None, base_dir: Path) -> str | None:
    if path is None or "://" in path:  # a URL stays as it is
        return path
    return str((base_dir / path).resolve())


def with_features(dataset: Dataset | IterableDataset) -> Dataset | IterableDataset:
    """`dataset` with known features: a CSV stream learns them from its first rows (read now)."""
    if dataset.features is not None:
        return dataset
    return dataset._resolve_features()  # the public `column_names` is `None` until then


def resolve_media_paths(
    dataset: Dataset | IterableDataset, base_dir: Path, media_columns: Sequence[str], where: Path
) -> Dataset | IterableDataset:
    """Renames `file_name` columns and makes their relative paths absolute (against `base_dir`); in a `Dataset` it
    also checks that every file exists (a stream's missing files are skipped rows, counted by the collator).

    Raises:
        `FileNotFoundError`: listing missing files. `ValueError`: a `file_name` column of unknown media.
    """
    dataset = with_features(dataset)
    if "file_name" not in dataset.features:
        file_names = []
    elif isinstance(dataset, Dataset):
        file_names = dataset["file_name"]
    else:
        file_names = [row["file_name"] for row in dataset.take(100)]
    renames = _path_columns(dataset.features, file_names, media_columns, where)
    if not renames:
        return dataset
    if isinstance(dataset, IterableDataset):
        renamed = [old for old, new in renames.items() if old != new]
        return dataset.map(partial(_absolute_row, renames=renames, base_dir=base_dir), remove_columns=renamed)
    columns = {}
    for old, new in renames.items():
        paths = [_absolute(path, base_dir) for path in dataset[old]]
        missing = [path for path in paths if path is not None and "://" not in path and not os.path.isfile(path)]
        if missing:
            raise FileNotFoundError(f"{where}: {len(missing)} files of column {old!r} not found, e.g. {missing[:3]}.")
        columns[new] = paths
    order = [renames.get(column, column) for column in dataset.column_names]
    dataset = dataset.remove_columns(list(renames))
    for name, paths in columns.items():
        dataset = dataset.add_column(name, paths)
    return dataset.select_columns(order)


def _absolute_row(row: dict[str, Any], *, renames: dict[str, str], base_dir: Path) -> dict[str, Any]:
    return {new: _absolute(row[old], base_dir) for old, new in renames.items()}


# ----- table files and media folders -----------------------------------------------------------------------------


def load_table_file(
    file: str | os.PathLike,
    *,
    media_columns: Sequence[str] = ("audio", "image"),
    cache_dir: str | os.PathLike | None = None,
    streaming: bool = False,
    num_proc: int | None = None,
) -> Dataset | IterableDataset:
    """Loads one JSON lines / JSON / CSV / TSV / Parquet file with `datasets`' local builders and resolves its media
    paths (see the module docstring).

    Args:
        file (`str` or `os.PathLike`): the file.
        media_columns (`Sequence[str]`, defaults to `("audio", "image")`): string columns of media paths to resolve.
        cache_dir (`str` or `os.PathLike`, *optional*): the `datasets` cache folder for the Arrow files.
        streaming (`bool`, defaults to `False`): return an `IterableDataset` that reads the file as it is iterated.
        num_proc (`int`, *optional*): processes that prepare the Arrow file (not with `streaming`).

    Raises:
        `FileNotFoundError`: the file or a media file it lists is missing.
        `ValueError`: an unsupported file type, a bad line (file and line named), or no rows.
    """
    file = Path(file).expanduser()
    if file.suffix.lower() not in TABLE_BUILDERS:
        raise ValueError(f"Cannot load {file}: supported files are {sorted(TABLE_BUILDERS)}, or a folder.")
    if not file.is_file():
        raise FileNotFoundError(f"Data file not found: {file}")
    file = file.resolve()
    check_table_file(file)
    builder, options = TABLE_BUILDERS[file.suffix.lower()]
    try:
        dataset = datasets.load_dataset(
            builder,
            data_files=str(file),
            split="train",
            cache_dir=cache_dir,
            streaming=streaming,
            **options,
            **({} if num_proc is None else {"num_proc": num_proc}),
        )
        is_empty = len(dataset) == 0 if isinstance(dataset, Dataset) else next(iter(dataset), None) is None
    except (ValueError, OSError, datasets.exceptions.DatasetGenerationError) as error:
        raise ValueError(f"Could not read {file}: {error.__cause__ or error}") from error
    if is_empty:
        raise ValueError(f"{file} holds no rows: is it empty?")
    return resolve_media_paths(dataset, file.parent, media_columns, file)


def _find_metadata(folder: Path) -> Path | None:
    """The one `metadata.{jsonl,csv,parquet}` file of `folder`, or `None`."""
    found = [folder / name for name in METADATA_FILE_NAMES if (folder / name).is_file()]
    if len(found) > 1:
        raise ValueError(f"{folder} has several metadata files {[path.name for path in found]}: keep one.")
    return found[0] if found else None


def media_folder_metadata(folder: Path) -> dict[str, Path]:
    """The metadata file of each split of an `imagefolder` / `audiofolder`-style folder: `{"train": ...}` for a
    metadata file in the folder itself, else one split per sub-folder that has one; `{}` for another folder."""
    metadata = _find_metadata(folder)
    if metadata is not None:
        return {"train": metadata}
    splits = {sub.name: _find_metadata(sub) for sub in sorted(folder.iterdir()) if sub.is_dir()}
    return {name: path for name, path in splits.items() if path is not None}


def table_splits(files: dict[str, Path], **load_options: Any) -> dict[str, Callable[[], Dataset | IterableDataset]]:
    """A loader per split of `{split: file}` (see [`load_table_file`] for `load_options`)."""
    return {split: partial(load_table_file, file, **load_options) for split, file in files.items()}


__all__ = ["check_table_file", "load_table_file", "media_folder_metadata", "resolve_media_paths", "table_splits"]
