"""The tasks: their prompts, defined here and nowhere else, and how each turns a dataset row into an [`Example`].

| task          | row columns                         | prompt                                                     |
| ------------- | ----------------------------------- | ---------------------------------------------------------- |
| `pretrain`    | `text` and / or `image` / `audio`   | `""`, `"<image>"` or `"<audio>"` (the row's media)         |
| `captioning`  | `image`, `captions` (one or a list) | `"<image>"`                                                |
| `asr`         | `audio`, `text`                     | `"<audio>"`                                                |
| `translation` | `source`, `target`                  | `"Translate English to German: {source}\\nGerman:"`        |
| `mmt`         | `image`, `source`, `target`         | `"<image>Translate English to German: {source}\\nGerman:"` |

Every column name is a field of [`Task`] ([`get_task`] replaces them); translation and mmt can also read the
`translation` column of `{language code: sentence}` dicts that Hub translation data sets have (`translation_column`).

Conventions shared by training and generation, so that what the model learns is what `generate()` continues:

- A prompt never ends in whitespace, and every target starts with exactly one space (`" a dog runs"`): that is how
  GPT-2's byte-level BPE tokenizes a word that follows another, so the first target token is the same `" a"` token
  whether it follows `German:`, an `<image>` span or nothing, and a caption tokenizes identically in pretraining and
  in captioning. [`Task.postprocess`] strips that space from a decoded prediction.
- Targets carry no end-of-text marker: the collator appends the tokenizer's eos token id after the target tokens, so
  the model learns to stop and `generate()` (whose `eos_token_id` is GPT-2's `<|endoftext|>`) stops there.
- Media come first in a prompt; `{image}` / `{audio}` in a template become the `<image>` / `<audio>` placeholders
  that the processor expands to the model's token count.
- Captioning trains on one reference per row and epoch: `captions[(crc32(captions) + epoch) % n]`, deterministic,
  and over `n` epochs each reference is used once (set the epoch with `collators.EpochCallback`). Evaluation keeps
  all references; the other tasks have the one reference `[target]`.

A pretraining row with a medium may have no text (a media-only row): its example has an empty target and no
references, and the model learns from the medium alone (next-element prediction, `media_loss_weight`).

Rows that cannot make an example (an empty target, a missing medium, text that contains a placeholder) raise
[`BadRowError`]; rows that lack a column altogether raise [`MissingColumnError`], which says that the `Trainer`
probably dropped it.
"""

import dataclasses
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..configuration_multimodal_gpt import AUDIO_TOKEN, IMAGE_TOKEN

# The translation instruction and language names live in the pipelines' Hub file, which checkpoints ship: pipelines
# loaded as remote code then prompt exactly as training did.
from ..pipeline_multimodal_gpt import LANGUAGE_NAMES
from ..pipeline_multimodal_gpt import TRANSLATION_PROMPT as TRANSLATION_INSTRUCTION

# Every target starts with this, and no prompt ends in whitespace (see the module docstring).
TARGET_PREFIX = " "


class MissingColumnError(ValueError):
    """A row lacks a column the task reads: a data set or pipeline problem, never skipped."""


class BadRowError(ValueError):
    """A row has its columns but cannot make an example (empty target, no medium, corrupt file...): skippable."""


@dataclass(frozen=True)
class Example:
    """One row as the model sees it.

    Args:
        prompt (`str`): the prompt text with one `<image>` / `<audio>` placeholder per medium; never ends in
            whitespace (`""` for text-only pretraining).
        images (`tuple`): the row's image sources (paths, bytes, dicts, PIL images), in placeholder order.
        audio (`tuple`): the row's audio sources (paths, bytes, `{"array", "sampling_rate"}` dicts), in order.
        target (`str`): the text to learn, with its leading space, without eos (the collator appends it); `""` for a
            media-only row, which has no text to learn.
        references (`tuple[str, ...]`): the reference texts for evaluation, stripped (all captions for captioning).
    """

    prompt: str
    images: tuple[Any, ...]
    audio: tuple[Any, ...]
    target: str
    references: tuple[str, ...]


@dataclass(frozen=True)
class Task:
    """How one task reads a dataset row.

    Args:
        name (`str`): the task name (`pretrain`, `captioning`, `translation`, `asr`, `mmt`).
        prompt_template (`str`): the prompt, with the fields `{image}`, `{audio}` (the placeholders of the media the
            row has), `{source}`, `{source_language}` and `{target_language}`. Must not end in whitespace.
        target_column (`str`): the column to learn and evaluate against: a string, or a list of references.
        source_column (`str`, *optional*): the column filled into `{source}`.
        translation_column (`str`, *optional*): a column of `{language code: sentence}` dicts (Hub translation data
            sets' `translation`); when set, the source is its `source_lang` entry and the target its `target_lang`
            entry, and `source_column` / `target_column` are not read.
        image_column (`str`, *optional*): the column with the image (path, bytes, `{"path", "bytes"}`, PIL, or pixels
            as an array or nested lists).
        audio_column (`str`, *optional*): the column with the audio (path, bytes, `{"path", "bytes"}` or
            `{"array", "sampling_rate"}`).
        media_optional (`bool`, defaults to `False`): the media columns may be absent or `None` (pretraining: such a
            row is text-only). Otherwise a row without its medium is a [`BadRowError`].
        text_optional (`bool`, defaults to `False`): a row with a medium may have an empty or `None` target (a
            media-only pretraining row): its [`Example`] has the target `""` and no references.
        source_lang, target_lang (`str`, defaults to `"en"`, `"de"`): language codes used when a row has no
            `source_lang` / `target_lang` column; [`LANGUAGE_NAMES`] names them in the prompt (unknown codes are used
            as they are).
    """

    name: str
    prompt_template: str
    target_column: str
    source_column: str | None = None
    translation_column: str | None = None
    image_column: str | None = None
    audio_column: str | None = None
    media_optional: bool = False
    text_optional: bool = False
    source_lang: str = "en"
    target_lang: str = "de"

    def __post_init__(self):
        if self.prompt_template != self.prompt_template.rstrip():
            raise ValueError(
                f"Task {self.name!r}: the prompt template ends in whitespace; the target brings its own leading "
                "space, so end the prompt on a visible character."
            )
        for field_name, column in (("{image}", self.image_column), ("{audio}", self.audio_column)):
            if (field_name in self.prompt_template) != (column is not None):
                raise ValueError(
                    f"Task {self.name!r}: the template must contain {field_name} exactly when the task has that "
                    "medium's column."
                )

    @property
    def text_columns(self) -> tuple[str, ...]:
        """The columns that hold the task's text: the target (or translation) column first, then the source."""
        if self.translation_column is not None:
            return (self.translation_column,)
        return tuple(column for column in (self.target_column, self.source_column) if column is not None)

    @property
    def media_columns(self) -> tuple[str, ...]:
        """The columns that hold the task's media."""
        return tuple(column for column in (self.image_column, self.audio_column) if column is not None)

    @property
    def required_columns(self) -> tuple[str, ...]:
        """The columns every row must have (optional media columns excluded)."""
        return self.text_columns + (() if self.media_optional else self.media_columns)

    def check_columns(self, row: Mapping[str, Any]) -> None:
        """Raise [`MissingColumnError`] when `row` lacks a column this task reads."""
        missing = [column for column in self.required_columns if column not in row]
        if missing:
            raise MissingColumnError(
                f"Task {self.name!r} needs the columns {missing}, but the row has only {sorted(row)}. The Trainer "
                "probably dropped them because the model's forward() does not name them: set "
                "`TrainingArguments(remove_unused_columns=False)` so the collator gets the raw columns."
            )

    def target_texts(self, row: Mapping[str, Any]) -> list[str]:
        """The row's target texts as given (every reference), without empty ones: tokenizer training text."""
        value = self._target_value(row)
        values = [value] if value is None or isinstance(value, str) else value
        return [text for text in values if isinstance(text, str) and text]

    def source_texts(self, row: Mapping[str, Any]) -> list[str]:
        """The row's source sentence as given, as a list (empty without one): tokenizer training text."""
        source = self.source_text(row)
        return [source] if source else []

    def source_text(self, row: Mapping[str, Any]) -> str | None:
        """The row's source sentence as given (`None` for tasks without one, or where it is missing)."""
        if self.source_column is None and self.translation_column is None:
            return None
        source = self._source_value(row)
        return source if isinstance(source, str) else None

    def references(self, row: Mapping[str, Any]) -> list[str]:
        """The reference texts of `row` for evaluation: every caption for captioning, else `[target]`; stripped."""
        self.check_columns(row)
        return list(self._references(row))

    def example(self, row: Mapping[str, Any], *, epoch: int = 0) -> Example:
        """Turn a dataset row into an [`Example`].

        Args:
            row (`Mapping[str, Any]`): the raw row (media undecoded).
            epoch (`int`, defaults to 0): selects the training reference when the row has several.

        Raises:
            [`MissingColumnError`]: a column is absent. [`BadRowError`]: the row cannot make an example.
        """
        self.check_columns(row)
        images = self._media(row, self.image_column)
        audio = self._media(row, self.audio_column)
        has_text = any(text.strip() for text in self.target_texts(row))
        media_only = self.text_optional and bool(images or audio) and not has_text
        references = () if media_only else self._references(row)
        fields = {
            "image": IMAGE_TOKEN * len(images),
            "audio": AUDIO_TOKEN * len(audio),
            "source": self._source(row),
            "source_language": language_name(self._language(row, "source_lang")),
            "target_language": language_name(self._language(row, "target_lang")),
        }
        target = TARGET_PREFIX + references[reference_index(references, epoch)] if references else ""
        return Example(self.prompt_template.format(**fields), images, audio, target, references)

    def _language(self, row: Mapping[str, Any], field_name: str) -> str:
        """The row's `source_lang` / `target_lang` column where it has one, else the task's; a translation dict is
        always read in the task's languages."""
        if self.translation_column is None and isinstance(row.get(field_name), str) and row[field_name]:
            return row[field_name]
        return getattr(self, field_name)

    def postprocess(self, prediction: str) -> str:
        """A decoded prediction (prompt sliced off, special tokens skipped) as comparable text: stripped."""
        return prediction.strip()

    def _translation_entry(self, row: Mapping[str, Any], language: str) -> Any:
        """The `language` entry of the row's translation dict."""
        entries = row[self.translation_column]
        if not isinstance(entries, Mapping):
            raise BadRowError(
                f"Task {self.name!r}: the row's {self.translation_column!r} is not a {{language: sentence}} dict "
                f"({entries!r})."
            )
        if language not in entries:
            raise MissingColumnError(
                f"The {self.translation_column!r} column has no {language!r} entry: its languages are "
                f"{sorted(entries)}. Pass --source_lang / --target_lang among them."
            )
        return entries[language]

    def _target_value(self, row: Mapping[str, Any]) -> Any:
        if self.translation_column is not None:
            return self._translation_entry(row, self.target_lang)
        return row[self.target_column]

    def _source_value(self, row: Mapping[str, Any]) -> Any:
        if self.translation_column is not None:
            return self._translation_entry(row, self.source_lang)
        return row[self.source_column]

    def _references(self, row: Mapping[str, Any]) -> tuple[str, ...]:
        value = self._target_value(row)
        column = self.translation_column or self.target_column
        # One string is one reference (never its characters); a list or tuple holds several.
        values = [value] if value is None or isinstance(value, str) else list(value)
        references = tuple(text.strip() for text in values if isinstance(text, str) and text.strip())
        if not references:
            raise BadRowError(f"Task {self.name!r}: the row's {column!r} is empty ({value!r}).")
        for text in references:
            _check_no_placeholder(text, column)
        return references

    def _source(self, row: Mapping[str, Any]) -> str:
        if self.source_column is None and self.translation_column is None:
            return ""
        source = self._source_value(row)
        column = self.translation_column or self.source_column
        if not isinstance(source, str) or not source.strip():
            raise BadRowError(f"Task {self.name!r}: the row's {column!r} is empty ({source!r}).")
        _check_no_placeholder(source, column)
        return source.strip()

    def _media(self, row: Mapping[str, Any], column: str | None) -> tuple[Any, ...]:
        if column is None:
            return ()
        source = row.get(column)
        if source is None:
            if self.media_optional:
                return ()
            raise BadRowError(f"Task {self.name!r}: the row's {column!r} is None.")
        if isinstance(source, list):  # an array column, as `datasets` returns it: pixels or samples
            source = np.asarray(source)
        return (source,)


def _check_no_placeholder(text: str, column: str) -> None:
    """Literal `<image>` / `<audio>` in a text column would become media slots without media."""
    for token in (IMAGE_TOKEN, AUDIO_TOKEN):
        if token in text:
            raise BadRowError(f"The row's {column!r} contains the placeholder {token}, which is reserved for media.")


def language_name(code: str) -> str:
    """The English name of a language code for prompts (`"de"` -> `"German"`); unknown codes unchanged."""
    return LANGUAGE_NAMES.get(code, code)


def reference_index(references: Sequence[str], epoch: int) -> int:
    """Which reference a row trains on in `epoch`: a stable hash of the references, advanced by one per epoch, so
    that rows start at different references and each reference is used once every `len(references)` epochs."""
    if len(references) == 1:
        return 0
    row_hash = zlib.crc32("\n".join(references).encode("utf-8"))
    return (row_hash + epoch) % len(references)


PRETRAIN = Task(
    "pretrain",
    prompt_template="{image}{audio}",
    target_column="text",
    image_column="image",
    audio_column="audio",
    media_optional=True,
    text_optional=True,
)
CAPTIONING = Task("captioning", prompt_template="{image}", target_column="captions", image_column="image")
TRANSLATION = Task(
    "translation", prompt_template=TRANSLATION_INSTRUCTION, target_column="target", source_column="source"
)
ASR = Task("asr", prompt_template="{audio}", target_column="text", audio_column="audio")
MMT = Task(
    "mmt",
    prompt_template="{image}" + TRANSLATION_INSTRUCTION,
    target_column="target",
    source_column="source",
    image_column="image",
)
TASKS: dict[str, Task] = {task.name: task for task in (PRETRAIN, CAPTIONING, TRANSLATION, ASR, MMT)}


def translation_text(source: str, target: str, source_lang: str = "en", target_lang: str = "de") -> str:
    """A translation pair written as one text, exactly as the translation task shows it to the model: its prompt
    then its target (`"Translate English to German: A dog runs.\\nGerman: Ein Hund rennt."`). The pretraining mix's
    `text_pair` rows, so that next-token prediction over both languages practises the format finetuning uses, as
    its image-text and audio-text rows do (their prompts are the captioning and ASR prompts).

    Raises:
        [`BadRowError`]: an empty source or target.
    """
    example = get_task("translation", source_lang=source_lang, target_lang=target_lang).example(
        {"source": source, "target": target}
    )
    return example.prompt + example.target


def get_task(name: str, **overrides: Any) -> Task:
    """The task `name`, with fields replaced by `overrides` (e.g. `target_lang="fr"`, `target_column="m30_de"`).

    Example: multimodal translation from Flickr8k rows (`load_flickr8k` + `keep_multi30k_rows`), whose sentences sit
    in `m30_en` / `m30_de`: `get_task("mmt", source_column="m30_en", target_column="m30_de")`.
    """
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}: choose one of {sorted(TASKS)}.")
    return dataclasses.replace(TASKS[name], **overrides)


__all__ = [
    "ASR",
    "CAPTIONING",
    "LANGUAGE_NAMES",
    "MMT",
    "PRETRAIN",
    "TARGET_PREFIX",
    "TASKS",
    "TRANSLATION",
    "BadRowError",
    "Example",
    "MissingColumnError",
    "Task",
    "get_task",
    "language_name",
    "reference_index",
    "translation_text",
]
