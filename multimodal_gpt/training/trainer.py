"""The standard `Trainer` with generation-based evaluation for this decoder-only model: `generate_predictions` and
`MultimodalTrainer`, whose `evaluate()` also generates and scores with the task's metrics."""

from collections.abc import Iterable, Mapping, Sequence, Sized
from itertools import islice
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import Trainer

from ..data.collators import TaskCollator
from ..data.tasks import BadRowError, Task
from ..modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from .metrics import compute_metrics_for_task
from .model_card import write_model_card
from .outputs import RowPrediction, describe_input

GENERATION_TASKS = ("captioning", "translation", "asr", "mmt")


@torch.no_grad()
def generate_predictions(
    model: MultimodalGPTForConditionalGeneration,
    collator: TaskCollator,
    dataset: Iterable[Mapping[str, Any]],
    *,
    batch_size: int = 16,
    progress: bool = True,
    **generation_kwargs: Any,
) -> list[RowPrediction]:
    """Generate for every row of `dataset` (batched, left-padded prompts; a `Dataset`, an `IterableDataset` or a list
    of rows) and return one [`RowPrediction`] per row, in order: its input, references and prediction (stripped of
    the prompt), or why it was skipped (a row the collator could not use)."""
    if not collator.for_generation:
        raise ValueError("generate_predictions needs a collator built with for_generation=True.")
    was_training = model.training
    model.eval()
    tokenizer = collator.processor.tokenizer
    records: list[RowPrediction] = []
    rows_left = iter(dataset)
    total = len(dataset) if isinstance(dataset, Sized) else None
    with tqdm(total=total, desc="generating", disable=not progress, leave=False) as bar:
        while rows := list(islice(rows_left, batch_size)):
            batch = collator(rows)
            references, row_indices, skipped = (
                batch.pop(key) for key in ("references", "row_indices", "skipped_rows")
            )
            predictions: list[str] = []
            if row_indices:
                batch = {key: value.to(model.device) for key, value in batch.items()}
                generated = model.generate(
                    **batch,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                    **generation_kwargs,
                )
                predictions = collator.decode_predictions(generated, batch["input_ids"])
            scored = dict(zip(row_indices, zip(predictions, references)))
            for position, row in enumerate(rows):
                record = RowPrediction(len(records), describe_input(row, collator.task), [])
                if position in scored:
                    record.prediction, record.references = scored[position]
                else:
                    record.skipped, record.references = skipped[position], _usable_references(collator.task, row)
                records.append(record)
            bar.update(len(rows))
    model.train(was_training)
    return records


def _usable_references(task: Task, row: Mapping[str, Any]) -> list[str]:
    """A skipped row's references, for the predictions file; none where they are what made the row unusable."""
    try:
        return task.references(row)
    except BadRowError:
        return []


def score_predictions(task_name: str, records: Sequence[RowPrediction], prefix: str = "eval") -> dict[str, float]:
    """The task's metrics over the scored rows, as `<prefix>_<metric>`, with `<prefix>_samples` (rows scored) and
    `<prefix>_skipped_rows` (rows skipped): the two add up to the lines of the predictions file."""
    scored = [record for record in records if record.skipped is None]
    if not scored:
        reason = records[0].skipped if records else "the split is empty"
        raise ValueError(f"No row of the {len(records)} evaluated could be scored, e.g.: {reason}.")
    scores = compute_metrics_for_task(task_name, [r.prediction for r in scored], [r.references for r in scored])
    scores = {f"{prefix}_{name}": value for name, value in scores.items()}
    scores.update({f"{prefix}_samples": len(scored), f"{prefix}_skipped_rows": len(records) - len(scored)})
    return scores


class MultimodalTrainer(Trainer):
    """`Trainer` whose `evaluate()` also generates for the evaluation rows and scores the outputs with the task's
    metrics (`eval_wer`, `eval_bleu`, `eval_cider`, ...), next to the teacher-forced `eval_loss`."""

    def __init__(
        self,
        *args: Any,
        generation_collator: TaskCollator | None = None,
        generation_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.generation_collator = generation_collator
        self.generation_kwargs = generation_kwargs or {}
        # The rows of the last evaluation of each metric prefix, with their predictions: `run()` writes them out.
        self.last_predictions: dict[str, list[RowPrediction]] = {}
        # What the model card says about the run (task, datasets, training, results): `run()` fills it in.
        self.model_card_kwargs: dict[str, Any] = {}

    def evaluate(
        self,
        eval_dataset: Dataset | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        metrics = super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        collator = self.generation_collator
        if collator is None or collator.task.name not in GENERATION_TASKS:
            return metrics
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        records = generate_predictions(
            self.model,
            collator,
            dataset,
            batch_size=self.args.per_device_eval_batch_size,
            progress=not self.args.disable_tqdm,
            **self.generation_kwargs,
        )
        self.last_predictions[metric_key_prefix] = records
        scores = score_predictions(collator.task.name, records, metric_key_prefix)
        self.log(scores)
        metrics.update(scores)
        return metrics

    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
    ) -> None:
        """Write this package's model card (`multimodal_gpt.training.model_card`) into the output folder instead of the
        `Trainer`'s generic one; `trainer.push_to_hub()` calls this before uploading the folder. The card describes
        the run that `model_card_kwargs` records (`run()` fills it in), with the arguments given here on top;
        `tasks`, `dataset_tags` and `dataset_args` (metadata of the generic card) are not used."""
        if not self.is_world_process_zero():
            return
        card_kwargs = dict(self.model_card_kwargs)
        if "task" not in card_kwargs and self.generation_collator is not None:
            card_kwargs["task"] = self.generation_collator.task.name
        given = {
            "language": language,
            "license": license,
            "tags": [tags] if isinstance(tags, str) else tags,
            "model_name": model_name,
            "base_models": [finetuned_from] if finetuned_from else None,
            "datasets": [dataset] if isinstance(dataset, str) else dataset,
            "repo_id": self.hub_model_id,
        }
        card_kwargs.update({key: value for key, value in given.items() if value is not None})
        write_model_card(self.args.output_dir, self.accelerator.unwrap_model(self.model), **card_kwargs)


__all__ = ["GENERATION_TASKS", "MultimodalTrainer", "generate_predictions", "score_predictions"]
