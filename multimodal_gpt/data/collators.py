"""Collators that turn raw dataset rows into model batches, one per task, for `Trainer(data_collator=...)`.

Each collator reads rows with the columns of its [`~tasks.Task`] (media undecoded: paths, bytes, dicts, PIL
images, arrays), decodes the media with the processor's own decoder (`media_multimodal_gpt`, the Hub file that
serving uses too, and `MultimodalGPTProcessor.load_audio_clip`), runs the processor (which expands every
placeholder to the model's token count and builds the media tensors) and lays the batch out:

- training (`for_generation=False`): `[bos] + prompt + target + [eos]`, right-padded; `labels` is -100 on the bos,
  the prompt, every media token and the padding, and the target ids (and eos) elsewhere;
- generation (`for_generation=True`): `[bos] + prompt`, left-padded, plus three keys that the evaluation loop pops
  before calling `generate()`: `references` (a list of lists of str, one list per sample), `row_indices` (the
  position of each sample's row in the rows given) and `skipped_rows` (`{position: reason}` for the rows that made no
  sample), so that every prediction can be written next to its own row; the new tokens are
  `generated[:, input_ids.shape[1]:]`, which [`TaskCollator.decode_predictions`] decodes.

Truncation to `max_length` never cuts a media span, nor the prompt's text: a cut prompt would ask for a target it no
longer determines (half a source sentence, a full translation). Only the target is shortened, and then it loses its
eos too (the model must not learn to stop mid-sentence). A sample whose bos + prompt + media (+ one target token) do
not fit is dropped. Both are counted in [`CollatorStats`] and logged once.

Bad rows (a corrupt, truncated, missing or empty media file, a decompression-bomb image, NaN/inf audio, a clip too
short for one audio frame, an empty target or source) are skipped and counted in `stats.bad_rows` when
`skip_bad_rows=True` (the default: one bad file must not stop a long run), with a warning naming the first one; with
`skip_bad_rows=False` they raise the decoder's error, the one the processor raises at inference. A row that lacks a
column altogether always raises (the `Trainer` dropped it: set `remove_unused_columns=False`), and so does a training
batch whose rows were all skipped (a generation batch then has no samples, only `skipped_rows`). With
`dataloader_num_workers > 0` each worker process counts in its own copy of the stats.
"""

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, TrainerCallback

from ..configuration_multimodal_gpt import AUDIO_TOKEN, IMAGE_TOKEN
from ..media_multimodal_gpt import load_image
from ..processing_multimodal_gpt import MultimodalGPTProcessor
from .augment import Augmentation
from .feature_cache import AUDIO_FEATURES, IMAGE_FEATURES, MEDIA_ERROR
from .tasks import ASR, CAPTIONING, MMT, PRETRAIN, TRANSLATION, BadRowError, Example, MissingColumnError, Task

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
# The processor's outputs that hold images (one row per image); every other media output holds audio clips.
IMAGE_INPUTS = ("pixel_values", "image_features")
# Tokenizers report this (int(1e30)) as `model_max_length` when no limit was saved.
_UNSET_MODEL_MAX_LENGTH = int(1e9)


class NoUsableRowsError(ValueError):
    """A training batch has no row the collator can use (every row bad, or too long for `max_length`): the
    evaluation loss leaves such a batch out (`training.predictions.EvaluationCollator`); training stops on it."""


@dataclass
class CollatorStats:
    """Counters of a collator since it was built (per process).

    Args:
        rows (`int`): rows received.
        samples (`int`): samples emitted in batches.
        truncated (`int`): samples whose target was shortened (and lost its eos) to fit `max_length`.
        dropped_too_long (`int`): samples dropped because bos + prompt + media + one target token (generation:
            bos + prompt + media) exceed `max_length`.
        bad_rows (`int`): rows skipped as unusable (see the module docstring).
    """

    rows: int = 0
    samples: int = 0
    truncated: int = 0
    dropped_too_long: int = 0
    bad_rows: int = 0


@dataclass
class _Sample:
    """An example with its media decoded: PIL RGB images and float32 clips at the feature extractor's rate; or,
    for a row of a media-feature cache (`features=True`), each medium's precomputed features."""

    example: Example
    images: list[Any]
    audio: list[np.ndarray]
    generator: np.random.Generator | None = None  # the row's augmentation choices, when augmenting
    features: bool = False


@dataclass
class TaskCollator:
    """Collates raw rows of one task into a training or generation batch (see the module docstring).

    Args:
        processor ([`MultimodalGPTProcessor`]): the model's processor; its tokenizer needs a pad token and an eos.
        task ([`~tasks.Task`]): how rows become prompts, media and targets.
        max_length (`int`, *optional*): the longest sequence, media tokens included. Defaults to the tokenizer's
            `model_max_length` when it has one (GPT-2: 1024), else no limit. In generation mode it bounds the
            prompt: leave room for `max_new_tokens` below GPT-2's `n_positions`.
        for_generation (`bool`, defaults to `False`): left-padded prompts and `references` instead of training
            inputs and labels.
        skip_bad_rows (`bool`, defaults to `True`): skip and count unusable rows instead of raising.
        add_bos_token (`bool`, defaults to `True`): start every sequence with the tokenizer's bos token (GPT-2's
            `<|endoftext|>`, its document separator), so that the first target token of a text-only sample, whose
            prompt is empty, has a position to be predicted from.
        pad_to_multiple_of (`int`, *optional*): pad the sequence length up to a multiple of this.
        epoch (`int`, defaults to 0): picks the training reference of multi-reference rows, and seeds the
            augmentation; [`EpochCallback`] keeps it in step with the `Trainer`.
        media_targets (`tuple[str, ...]`, defaults to `()`): modalities (`"vision"`, `"audio"`) whose media tokens are
            labelled as next-element targets, with their placeholder id (every token of a span but the first, which
            nothing of its medium precedes): set it to `model.config.media_prediction_modalities`. A media-only row
            (pretraining) needs one of its media here, else it has nothing to learn and is skipped.
        augmentation ([`~augment.Augmentation`], *optional*): changes media at random in training batches (never in
            generation batches).
        packing (`bool`, defaults to `False`): training batches pack their samples, whole, into as few rows of at
            most `max_length` tokens as fit (balanced, see [`pack_rows`]), instead of one padded row per sample:
            less work on padding. A batch that packing would not shorten is padded as usual. Each sample's
            `position_ids` restart at 0 and the batch has no `attention_mask`, which tells the model (and
            Transformers' masks) that each token attends only to its own sample: its text and its media. The loss
            is the unpacked batch's. Needs `max_length`.

    Returns (from `__call__`):
        [`BatchFeature`] with `input_ids` and `attention_mask` `(batch_size, sequence_length)`, `labels` (training)
        or `references`, `row_indices` and `skipped_rows` (generation), and the media tensors of the kept samples in
        placeholder order: `pixel_values` `(num_images, channels, height, width)`; `input_values` + `input_values_mask`
        `(num_clips, samples)` or `input_features` `(num_clips, mel_bins, frames)` + `input_features_mask`.
    """

    processor: MultimodalGPTProcessor
    task: Task
    max_length: int | None = None
    for_generation: bool = False
    skip_bad_rows: bool = True
    add_bos_token: bool = True
    pad_to_multiple_of: int | None = None
    epoch: int = 0
    media_targets: tuple[str, ...] = ()
    augmentation: Augmentation | None = None
    packing: bool = False
    stats: CollatorStats = field(default_factory=CollatorStats, init=False)
    _warned: set[str] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self):
        tokenizer = self.processor.tokenizer
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError(
                "The tokenizer needs a pad and an eos token: call multimodal_gpt.add_multimodal_tokens(tokenizer) "
                "(it adds <|pad|>), and use a tokenizer with an eos token such as GPT-2's <|endoftext|>."
            )
        if self.packing and self.for_generation:
            raise ValueError("packing=True packs training rows; generation batches are prompts: drop one of them.")
        if self.packing and self._max_length() is None:
            raise ValueError("packing=True packs samples into rows of max_length tokens: set max_length.")

    # ----- public -----------------------------------------------------------------------------------------------

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> BatchFeature:
        """Collate `rows` (a list of raw dataset rows, as the `Trainer`'s DataLoader passes them) into a batch."""
        self.stats.rows += len(rows)
        decoded = [self._decode_row(row) for row in rows]
        positions = [index for index, sample in enumerate(decoded) if isinstance(sample, _Sample)]
        skipped = {index: reason for index, reason in enumerate(decoded) if isinstance(reason, str)}
        samples = [decoded[index] for index in positions]
        if self.for_generation:
            return self._generation_batch(samples, positions, skipped)
        if not samples:
            raise NoUsableRowsError(
                f"All {len(rows)} rows of the batch were unusable (see the warnings above, and collator.stats): "
                "clean the data set, or check that its columns hold what the task expects."
            )
        prompt_ids, media = self._encode_prompts(samples)
        if "input_features" in media and self._augmenting():
            media["input_features"] = self._masked_log_mel(samples, media)
        return self._training_batch(samples, prompt_ids, media)

    def decode_predictions(self, generated: torch.Tensor, input_ids: torch.Tensor) -> list[str]:
        """The texts `generate()` produced for a generation batch: the prompt (`input_ids.shape[1]` left-padded
        positions) sliced off, special tokens skipped, the target's leading space stripped.

        Args:
            generated (`torch.LongTensor` of shape `(batch_size, prompt_length + new_tokens)`): `generate()`'s output.
            input_ids (`torch.LongTensor` of shape `(batch_size, prompt_length)`): the batch's `input_ids`.
        """
        texts = self.processor.tokenizer.batch_decode(generated[:, input_ids.shape[1] :], skip_special_tokens=True)
        return [self.task.postprocess(text) for text in texts]

    def unusable_rows(self, rows: Sequence[Mapping[str, Any]]) -> dict[int, str]:
        """Why each row that this collator could not use on its own is unusable, by row index: a bad medium or
        text, or a prompt too long for `max_length`. Checked before training on the evaluation splits, so that an
        evaluation batch of bad rows cannot stop a run after its training. A missing column still raises."""
        strict = dataclasses.replace(self, skip_bad_rows=False)
        reasons = {}
        for index in range(len(rows)):
            try:
                strict([rows[index]])
            except MissingColumnError:
                raise
            except (ValueError, FileNotFoundError, TypeError) as error:
                reasons[index] = str(error)
        return reasons

    # ----- rows -> decoded samples ------------------------------------------------------------------------------

    @property
    def changes_media_between_epochs(self) -> bool:
        """Whether this collator gives a medium different pixels or samples from one epoch to the next (random
        augmentation). A media-feature cache (`multimodal_gpt.data.feature_cache`) encodes each medium once, so it
        refuses such a collator; a collator that augments media must return `True`."""
        return self._augmenting()

    def decode_media(self, example: Example) -> tuple[list[Any], list[np.ndarray]]:
        """The example's images (PIL RGB) and clips (float32 at the feature extractor's rate), decoded by the
        processor's own decoder, so that training and serving see the same pixels and samples. Raises the decoder's
        error (`ValueError`, `FileNotFoundError`, `TypeError`) for an unusable medium."""
        images = [load_image(source) for source in example.images]
        audio = [self.processor.load_audio_clip(source) for source in example.audio]
        return images, audio

    def _decode_row(self, row: Mapping[str, Any]) -> _Sample | str:
        """The row's example with decoded media (or their cached features), or why the row is skipped."""
        self.task.check_columns(row)  # a missing column is a pipeline error: never skipped
        try:
            example = self.task.example(row, epoch=self.epoch)
        except BadRowError as error:
            return self._skip(error)
        self._check_processor_takes(example)  # a configuration error: never skipped
        if not example.target and not self.for_generation and not self._has_media_target(example):
            return self._skip(BadRowError("a media-only row, but media prediction is off (no media_targets)"))
        if MEDIA_ERROR in row:  # a row of a media-feature cache: its media were encoded once, or were unusable
            if row[MEDIA_ERROR]:
                return self._skip(BadRowError(row[MEDIA_ERROR]))
            return _Sample(example, list(row[IMAGE_FEATURES]), list(row[AUDIO_FEATURES]), features=True)
        try:  # the processor's own decoding, so that training and serving see the same pixels and samples
            images, audio = self.decode_media(example)
        except (ValueError, FileNotFoundError, TypeError) as error:  # the decoder's errors for unusable media
            return self._skip(error)
        if not self._augmenting():
            return _Sample(example, images, audio)
        return self._augmented(_Sample(example, images, audio))

    def _has_media_target(self, example: Example) -> bool:
        return bool(
            example.images and "vision" in self.media_targets or example.audio and "audio" in self.media_targets
        )

    # ----- augmentation (training batches only) -----------------------------------------------------------------

    def _augmenting(self) -> bool:
        return self.augmentation is not None and self.augmentation.changes_anything and not self.for_generation

    def _augmented(self, sample: _Sample) -> _Sample:
        example = sample.example
        texts = (example.prompt, *example.references)
        generator = self.augmentation.generator(example.images + example.audio, texts, self.epoch)
        images = [self.augmentation.image(image, generator, texts) for image in sample.images]
        audio = []
        for clip in sample.audio:
            changed = self.augmentation.waveform(clip, generator)
            try:  # slowed down past a Whisper-style window: keep the clip as it is
                self.processor._check_clip_length(len(changed))
            except ValueError:
                changed = clip
            audio.append(changed)
        return _Sample(example, images, audio, generator)

    def _masked_log_mel(self, samples: list[_Sample], media: dict[str, torch.Tensor]) -> torch.Tensor:
        """SpecAugment's masks on each clip's log-mel features, drawn by its row's generator."""
        owners = [sample for sample in samples for _ in sample.audio]
        valid_frames = media["input_features_mask"].sum(-1).tolist()
        return torch.stack(
            [
                self.augmentation.log_mel(features, int(frames), owner.generator)
                for features, frames, owner in zip(media["input_features"], valid_frames, owners)
            ]
        )

    def _skip(self, error: Exception) -> str:
        if not self.skip_bad_rows:
            raise error
        self.stats.bad_rows += 1
        self._warn_once("bad_row", f"Skipping an unusable row ({error}); collator.stats.bad_rows counts them.")
        return str(error)

    def _check_processor_takes(self, example: Example) -> None:
        for media, part, modality in (
            (example.images, "image_processor", "vision"),
            (example.audio, "feature_extractor", "audio"),
        ):
            if media and getattr(self.processor, part) is None:
                raise ValueError(
                    f"Task {self.task.name!r} gave a row with {modality} input, but the processor has no {part} "
                    f"(the model has no {modality} tower): use a model with one, or data without that medium."
                )

    # ----- samples -> token ids and media tensors ---------------------------------------------------------------

    def _encode_prompts(self, samples: list[_Sample]) -> tuple[list[list[int]], dict[str, torch.Tensor]]:
        """Prompt ids (bos included, placeholders expanded) per sample, and the media tensors of all samples."""
        images = [image for sample in samples for image in sample.images]
        audio = [clip for sample in samples for clip in sample.audio]
        if len({sample.features for sample in samples}) > 1:
            raise ValueError(
                "A batch mixes rows of a media-feature cache with raw rows: cache the whole data set, or none of it."
            )
        if samples[0].features:
            media = {"image_features": images or None, "audio_features": audio or None}
        else:
            sampling_rate = self.processor.feature_extractor.sampling_rate if audio else None
            media = {"images": images or None, "audio": audio or None, "sampling_rate": sampling_rate}
        encoded = self.processor(text=[sample.example.prompt for sample in samples], **media, add_special_tokens=False)
        bos_token_id = self._bos_token_id()
        bos = [] if bos_token_id is None else [bos_token_id]
        prompt_ids = [bos + list(ids) for ids in encoded["input_ids"]]
        media = {
            key: torch.as_tensor(value) for key, value in encoded.items() if key not in ("input_ids", "attention_mask")
        }
        return prompt_ids, media

    def _bos_token_id(self) -> int | None:
        tokenizer = self.processor.tokenizer
        if not self.add_bos_token:
            return None
        return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id

    def _target_ids(self, samples: list[_Sample]) -> list[list[int]]:
        """Target token ids per sample, eos appended (none for a media-only row, which has no text)."""
        tokenizer = self.processor.tokenizer
        targets = tokenizer([sample.example.target for sample in samples], add_special_tokens=False)["input_ids"]
        return [
            list(ids) + [tokenizer.eos_token_id] if sample.example.target else []
            for ids, sample in zip(targets, samples)
        ]

    def _prompt_labels(self, prompt: list[int]) -> list[int]:
        """-100 on the prompt, except media tokens of `media_targets` after the first of their span: their own
        placeholder id, which makes them next-element targets."""
        tokens = {"vision": IMAGE_TOKEN, "audio": AUDIO_TOKEN}
        target_ids = {
            self.processor.tokenizer.convert_tokens_to_ids(tokens[modality]) for modality in self.media_targets
        }
        return [
            token if token in target_ids and position > 0 and prompt[position - 1] == token else IGNORE_INDEX
            for position, token in enumerate(prompt)
        ]

    # ----- batches ----------------------------------------------------------------------------------------------

    def _training_batch(
        self, samples: list[_Sample], prompt_ids: list[list[int]], media: dict[str, torch.Tensor]
    ) -> BatchFeature:
        sequences, labels, kept = [], [], []
        for index, (prompt, target) in enumerate(zip(prompt_ids, self._target_ids(samples))):
            target = self._fit_target(len(prompt), target)
            if target is None:
                continue
            kept.append(index)
            sequences.append(prompt + target)
            labels.append(self._prompt_labels(prompt) + target)
        packed = self._packed(sequences, labels) if self.packing else None
        if packed is not None:
            batch, order = packed
            return self._finish(batch, samples, media, [kept[index] for index in order])
        batch = self._padded(sequences, padding_side="right")
        batch["labels"] = self._pad_rows(labels, IGNORE_INDEX, batch["input_ids"].shape[1], "right")
        return self._finish(batch, samples, media, kept)

    def _packed(
        self, sequences: list[list[int]], labels: list[list[int]]
    ) -> tuple[dict[str, torch.Tensor], list[int]] | None:
        """`sequences` packed into rows of at most `max_length` tokens (see `packing`), and the order in which the
        samples now appear (row by row), which their media follow; `None` when packing would not take fewer
        positions than one padded row per sample (then the batch is padded as usual). The padding at the end of a
        row is one more segment whose positions restart at 0, so that no real token attends to it."""
        rows = pack_rows(list(map(len, sequences)), self._max_length())
        length = self._padded_length(max(sum(len(sequences[index]) for index in row) for row in rows))
        if len(rows) * length >= len(sequences) * self._padded_length(max(map(len, sequences))):
            return None
        pad_id = self.processor.tokenizer.pad_token_id
        packed = {
            key: torch.full((len(rows), length), value)
            for key, value in (("input_ids", pad_id), ("labels", IGNORE_INDEX), ("position_ids", 0))
        }
        for row_index, row in enumerate(rows):
            start = 0
            for index in row:
                end = start + len(sequences[index])
                packed["input_ids"][row_index, start:end] = torch.tensor(sequences[index])
                # the first token is never predicted within its sample (the shift drops it when unpacked): it must
                # not be predicted from the end of the sample before it either
                packed["labels"][row_index, start + 1 : end] = torch.tensor(labels[index][1:], dtype=torch.long)
                packed["position_ids"][row_index, start:end] = torch.arange(end - start)
                start = end
            packed["position_ids"][row_index, start:] = torch.arange(length - start)
        return packed, [index for row in rows for index in row]

    def _padded_length(self, length: int) -> int:
        if self.pad_to_multiple_of:
            return math.ceil(length / self.pad_to_multiple_of) * self.pad_to_multiple_of
        return length

    def _generation_batch(self, samples: list[_Sample], positions: list[int], skipped: dict[int, str]) -> BatchFeature:
        """Left-padded prompts of the samples that fit, with their references and rows; `skipped_rows` says why each
        other row of the batch made no sample."""
        kept: list[int] = []
        if samples:
            prompt_ids, media = self._encode_prompts(samples)
            limit = self._max_length()
            kept = [index for index, prompt in enumerate(prompt_ids) if limit is None or len(prompt) <= limit]
            self._count_dropped(len(prompt_ids) - len(kept))
            for index in sorted(set(range(len(samples))) - set(kept)):
                skipped[positions[index]] = (
                    f"its prompt and media take {len(prompt_ids[index])} tokens, more than max_length={limit}"
                )
        rows = {"row_indices": [positions[index] for index in kept], "skipped_rows": dict(sorted(skipped.items()))}
        if not kept:
            return BatchFeature(data={"references": [], **rows})
        batch = self._padded([prompt_ids[index] for index in kept], padding_side="left")
        batch["references"] = [list(samples[index].example.references) for index in kept]
        batch.update(rows)
        return self._finish(batch, samples, media, kept)

    def _finish(
        self, batch: dict[str, Any], samples: list[_Sample], media: dict[str, torch.Tensor], kept: list[int]
    ) -> BatchFeature:
        if not kept:
            raise NoUsableRowsError(
                f"Every sample of the batch is longer than max_length={self._max_length()} before its target "
                "(media tokens included): raise max_length, or send fewer media tokens (smaller images, shorter "
                "clips, a resampler fusion)."
            )
        self.stats.samples += len(kept)
        batch.update(self._kept_media(samples, media, kept))
        return BatchFeature(data=batch)

    def _fit_target(self, prompt_length: int, target: list[int]) -> list[int] | None:
        """The target (with eos) cut to fit `max_length` after the prompt, or `None` when not one token fits."""
        limit = self._max_length()
        if limit is None or prompt_length + len(target) <= limit:
            return target
        room = limit - prompt_length
        if room < 1:
            self._count_dropped(1)
            return None
        self.stats.truncated += 1
        self._warn_once(
            "truncated",
            f"Targets are cut to fit max_length={limit} (and lose their eos); collator.stats.truncated counts them.",
        )
        return target[:room]

    def _count_dropped(self, count: int) -> None:
        if count:
            self.stats.dropped_too_long += count
            self._warn_once(
                "dropped",
                f"Samples whose prompt and media tokens do not fit max_length={self._max_length()} are dropped; "
                "collator.stats.dropped_too_long counts them.",
            )

    def _max_length(self) -> int | None:
        if self.max_length is not None:
            return self.max_length
        model_max_length = getattr(self.processor.tokenizer, "model_max_length", None)
        return model_max_length if model_max_length and model_max_length < _UNSET_MODEL_MAX_LENGTH else None

    def _padded(self, sequences: list[list[int]], padding_side: str) -> dict[str, torch.Tensor]:
        length = max(map(len, sequences), default=0)
        if self.pad_to_multiple_of:
            length = math.ceil(length / self.pad_to_multiple_of) * self.pad_to_multiple_of
        pad_id = self.processor.tokenizer.pad_token_id
        return {
            "input_ids": self._pad_rows(sequences, pad_id, length, padding_side),
            "attention_mask": self._pad_rows([[1] * len(row) for row in sequences], 0, length, padding_side),
        }

    @staticmethod
    def _pad_rows(rows: list[list[int]], value: int, length: int, padding_side: str) -> torch.Tensor:
        """`(len(rows), length)` long tensor of `rows` padded with `value` on `padding_side`."""
        padded = torch.full((len(rows), length), value, dtype=torch.long)
        for index, row in enumerate(rows):
            if row:
                span = slice(length - len(row), length) if padding_side == "left" else slice(0, len(row))
                padded[index, span] = torch.tensor(row, dtype=torch.long)
        return padded

    def _kept_media(self, samples: list[_Sample], media: dict[str, torch.Tensor], kept: list[int]) -> dict:
        """The media tensors of the kept samples only, in the placeholder order of the batch: the order of `kept`
        (ascending, or the order in which packing laid the samples out)."""
        image_owner = [index for index, sample in enumerate(samples) for _ in sample.example.images]
        audio_owner = [index for index, sample in enumerate(samples) for _ in sample.example.audio]
        selected: dict[str, torch.Tensor] = {}
        for key, tensor in media.items():
            owners = image_owner if key in IMAGE_INPUTS else audio_owner
            rows = [row for sample in kept for row, owner in enumerate(owners) if owner == sample]
            if rows:
                selected[key] = tensor if rows == list(range(len(owners))) else tensor[rows]
        for key in ("input_values", "audio_features"):
            if key in selected and len(selected[key]) < len(media[key]):
                # Waveforms (and features) are padded to the longest clip of the batch; a dropped sample may have
                # been that clip.
                longest = int(selected[f"{key}_mask"].sum(-1).max())
                selected[key] = selected[key][:, :longest]
                selected[f"{key}_mask"] = selected[f"{key}_mask"][:, :longest]
        return selected

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(message)


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into rows of at most `capacity`: the rows of a packed batch. As few rows as first
    fit decreasing makes, balanced where it can be (longest sample first, each into the row that holds the fewest
    tokens), so that the longest row, which every row is padded to, stays short; a row keeps its samples in their
    order, and the rows follow their first samples. A length above `capacity` gets a row of its own (the collators
    never make one: they cut or drop longer samples first)."""
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    fewest = [[order[slot] for slot in row] for row in _first_fit([lengths[index] for index in order], capacity)]
    rows = fewest
    balanced: list[list[int]] = [[] for _ in fewest]
    totals = [0] * len(fewest)
    for index in order:
        row = min(range(len(balanced)), key=lambda row: totals[row])
        if totals[row] + lengths[index] > capacity:
            break  # the lightest row has no room: keep first fit's rows
        balanced[row].append(index)
        totals[row] += lengths[index]
    else:
        rows = balanced
    return sorted((sorted(row) for row in rows if row), key=lambda row: row[0])


def _first_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` in bins of at most `capacity`, each into the first bin with room, in order."""
    bins: list[list[int]] = []
    room: list[int] = []
    for index, length in enumerate(lengths):
        target = next((slot for slot, free in enumerate(room) if free >= length), None)
        if target is None:
            bins.append([])
            room.append(capacity)
            target = len(bins) - 1
        bins[target].append(index)
        room[target] -= length
    return bins


@dataclass
class PretrainCollator(TaskCollator):
    """Pretraining mix: rows with `text` and optional `image` / `audio` (text-only, image-text and audio-text rows
    mix in one batch)."""

    task: Task = PRETRAIN


@dataclass
class CaptioningCollator(TaskCollator):
    """Captioning: rows with `image` and `captions` (one reference per row and epoch in training, all in
    generation)."""

    task: Task = CAPTIONING


@dataclass
class TranslationCollator(TaskCollator):
    """Translation: rows with `source` and `target` (and optionally `source_lang` / `target_lang`)."""

    task: Task = TRANSLATION


@dataclass
class ASRCollator(TaskCollator):
    """Speech recognition: rows with `audio` and `text`."""

    task: Task = ASR


@dataclass
class MMTCollator(TaskCollator):
    """Multimodal translation: rows with `image`, `source` and `target`."""

    task: Task = MMT


COLLATORS: dict[str, type[TaskCollator]] = {
    "pretrain": PretrainCollator,
    "captioning": CaptioningCollator,
    "translation": TranslationCollator,
    "asr": ASRCollator,
    "mmt": MMTCollator,
}


class EpochCallback(TrainerCallback):
    """Keeps `collator.epoch` in step with the `Trainer`, so that multi-reference rows (captioning) rotate through
    their references. The `Trainer` calls `on_epoch_begin` before it creates the epoch's data iterator, so this
    reaches dataloader workers too, unless `dataloader_persistent_workers=True`.

    Example: `Trainer(..., data_collator=collator, callbacks=[EpochCallback(collator)])`.
    """

    def __init__(self, collator: TaskCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        # `state.epoch` is fractional when resuming mid-epoch: the integer part is the epoch being run.
        self.collator.epoch = math.floor((state.epoch or 0) + 1e-6)


__all__ = [
    "COLLATORS",
    "IGNORE_INDEX",
    "ASRCollator",
    "CaptioningCollator",
    "CollatorStats",
    "EpochCallback",
    "MMTCollator",
    "NoUsableRowsError",
    "PretrainCollator",
    "TaskCollator",
    "TranslationCollator",
    "pack_rows",
]
