"""What generation-based evaluation passes around, the `Seq2SeqTrainer` way, for this decoder-only model.

[`MultimodalTrainer`]'s evaluation loop (the `Trainer`'s own `evaluate()` / `predict()`) reads batches that
[`EvaluationCollator`] makes from the raw rows of a split: the training collator's batch of the rows it can use (the
teacher-forced loss), the generation collator's left-padded prompts (for `generate()`), the `labels`, and one
[`RowPrediction`] per row (its input, references, or why it was skipped). The loop gathers the generated ids and the
labels across processes in row order, and the rows through the same `gather_for_metrics`, so both stay aligned.

`compute_metrics` then receives a [`GenerationEvalPrediction`], a standard `EvalPrediction` over the rows that were
scored (skipped rows are left out and counted):

- `predictions`: the generated ids, the prompt stripped, `(rows, new_tokens)`; a row that stopped early is padded
  with the pad token, and the `Trainer` pads across batches with -100;
- `label_ids`: the ids of the row's first reference as the model learns it (its leading space, then eos), padded
  with -100, so that `tokenizer.batch_decode(np.where(labels != -100, labels, pad_token_id))` gives the reference;
- `references` (an attribute of this subclass): every reference of each row, for multi-reference metrics
  (captioning: all five captions; the other tasks: the one target); `texts`: the decoded predictions.

A user's `compute_metrics` written for `Seq2SeqTrainer` works on it unchanged; [`TaskMetrics`], the task's built-in
metrics (WER and CER, BLEU and chrF, BLEU-4 and CIDEr-D), is the default one and scores against `references`.
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import EvalPrediction

from ..data.collators import IGNORE_INDEX, NoUsableRowsError, TaskCollator
from ..data.tasks import TARGET_PREFIX, BadRowError, Task, get_task
from .metrics import compute_metrics_for_task
from .outputs import RowPrediction, describe_input

# The key under which a stream's rows carry their position when several processes evaluate it (see `NumberedRows`).
ROW_NUMBER = "__row_number__"


class GenerationEvalPrediction(EvalPrediction):
    """`EvalPrediction` of generated ids over the scored rows, with every reference of each row.

    Args:
        predictions (`np.ndarray` of shape `(rows, new_tokens)`): generated ids, prompt stripped.
        label_ids (`np.ndarray` of shape `(rows, target_tokens)`): the first reference's ids, eos included, -100
            padded.
        references (`list[list[str]]`): every reference of each row, stripped.
        texts (`list[str]`): the decoded predictions, as the predictions file writes them.
    """

    def __init__(
        self, predictions: np.ndarray, label_ids: np.ndarray, *, references: list[list[str]], texts: list[str]
    ):
        super().__init__(predictions=predictions, label_ids=label_ids)
        self.references = references
        self.texts = texts


def decode_generated(tokenizer: Any, task: Task, token_ids: np.ndarray) -> list[str]:
    """Generated ids (prompt stripped; -100 and pad after the end) as the task's comparable texts."""
    token_ids = np.where(np.asarray(token_ids) == IGNORE_INDEX, tokenizer.pad_token_id, token_ids)
    return [task.postprocess(text) for text in tokenizer.batch_decode(token_ids, skip_special_tokens=True)]


class TaskMetrics:
    """The task's built-in metrics as a `compute_metrics` for the `Trainer`: WER and CER (asr), BLEU and chrF
    (translation, mmt), BLEU-4 and CIDEr-D (captioning), computed by the package's `evaluate` modules.

    It decodes the predictions and scores them against `eval_prediction.references` (every reference of each row,
    as [`MultimodalTrainer`] gives them), or, from any other `EvalPrediction`, against the decoded `label_ids` (one
    reference a row), so it also serves a plain `Seq2SeqTrainer` whose predictions are the new tokens only.

    Args:
        task (`str` or [`~data.tasks.Task`]): `captioning`, `translation`, `asr` or `mmt`.
        tokenizer: the model's tokenizer (`processor.tokenizer`).
    """

    def __init__(self, task: str | Task, tokenizer: Any):
        self.task = get_task(task) if isinstance(task, str) else task
        self.tokenizer = tokenizer

    def __call__(self, eval_prediction: EvalPrediction) -> dict[str, float]:
        texts = getattr(eval_prediction, "texts", None)
        if texts is None:
            texts = decode_generated(self.tokenizer, self.task, eval_prediction.predictions)
        references = getattr(eval_prediction, "references", None)
        if references is None:
            references = [[text] for text in decode_generated(self.tokenizer, self.task, eval_prediction.label_ids)]
        return compute_metrics_for_task(self.task.name, texts, references)


@dataclass
class EvaluationCollator:
    """Collates the raw rows of an evaluation split into one batch for the loss and generation (see the module
    docstring); `MultimodalTrainer` builds it from its training and generation collators.

    Args:
        loss_collator ([`TaskCollator`], *optional*): the training collator: its batch of the rows it can use gives
            the teacher-forced loss; a batch with none gives no loss. `None`: no loss.
        generation_collator ([`TaskCollator`], *optional*): built with `for_generation=True`; `None` for a
            loss-only evaluation.

    Returns (from `__call__`): a dict with `loss_inputs` (a training batch, or `None`); when it generates also
    `labels` `(rows, target_tokens)` (all -100 for a skipped row), `generation_inputs` (the prompts and media of the
    rows kept for generation, or `None` when there is none), `kept_rows` (their positions in the batch) and `rows`
    (one [`RowPrediction`] per row, without its prediction).
    """

    loss_collator: TaskCollator | None
    generation_collator: TaskCollator | None = None

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if self.generation_collator is None:
            return {"loss_inputs": self._loss_batch(rows)}
        generation = dict(self.generation_collator(rows))
        references, kept, skipped = (generation.pop(key) for key in ("references", "row_indices", "skipped_rows"))
        task = self.generation_collator.task
        records = []
        for position, row in enumerate(rows):
            record = RowPrediction(row.get(ROW_NUMBER, -1), describe_input(row, task), [])
            if position in skipped:
                record.skipped, record.references = skipped[position], _usable_references(task, row)
            else:
                record.references = references[kept.index(position)]
            records.append(record)
        return {
            "labels": self._label_ids(len(rows), kept, references),
            "loss_inputs": self._loss_batch(rows),
            "generation_inputs": generation or None,
            "kept_rows": kept,
            "rows": records,
        }

    def _loss_batch(self, rows: Sequence[Mapping[str, Any]]) -> Mapping[str, torch.Tensor] | None:
        if self.loss_collator is None:
            return None
        try:
            return self.loss_collator(rows)
        except NoUsableRowsError:
            return None  # every row bad or too long for the loss: generation still reports each one

    def _label_ids(self, rows: int, kept: list[int], references: list[list[str]]) -> torch.Tensor:
        """The first reference of each kept row as the model learns it (leading space, then eos), -100 padded."""
        tokenizer = self.generation_collator.processor.tokenizer
        targets = [TARGET_PREFIX + row_references[0] for row_references in references]
        target_ids = tokenizer(targets, add_special_tokens=False)["input_ids"] if targets else []
        width = max((len(ids) + 1 for ids in target_ids), default=1)
        labels = torch.full((rows, width), IGNORE_INDEX, dtype=torch.long)
        for position, ids in zip(kept, target_ids):
            labels[position, : len(ids) + 1] = torch.tensor([*ids, tokenizer.eos_token_id])
        return labels


def _usable_references(task: Task, row: Mapping[str, Any]) -> list[str]:
    """A skipped row's references, for the predictions file; none where they are what made the row unusable."""
    try:
        return task.references(row)
    except BadRowError:
        return []


class NumberedRows(torch.utils.data.IterableDataset):
    """A stream whose rows carry their position (`ROW_NUMBER`): several processes evaluating a stream each read it
    and keep their share (accelerate's `IterableDatasetShard`), which pads the last global batch with rows from the
    start, and a stream has no length to tell those copies apart; their numbers do ([`first_of_each_row`])."""

    def __init__(self, rows: Any):
        self.rows = rows

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = torch.utils.data.get_worker_info()
        if worker is not None and worker.num_workers > 1:
            raise ValueError(
                "Several processes evaluate a stream, each through dataloader workers, which would number its rows "
                "each on its own share: pass --dataloader_num_workers 0 for the evaluation, or drop --streaming."
            )
        for number, row in enumerate(self.rows):
            yield {**row, ROW_NUMBER: number}


def first_of_each_row(records: Sequence[RowPrediction]) -> list[int]:
    """Positions of `records` to keep, in row order: all of them, unless they carry row numbers (a stream evaluated
    by several processes); then the first record of each number, sorted by number."""
    if all(record.index < 0 for record in records):
        return list(range(len(records)))
    first: dict[int, int] = {}
    for position, record in enumerate(records):
        first.setdefault(record.index, position)
    return [first[number] for number in sorted(first)]


__all__ = [
    "ROW_NUMBER",
    "EvaluationCollator",
    "GenerationEvalPrediction",
    "NumberedRows",
    "TaskMetrics",
    "decode_generated",
    "first_of_each_row",
]
