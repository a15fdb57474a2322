"""The standard `Trainer` with generation-based evaluation for this decoder-only model: `generate_predictions` and
`MultimodalTrainer`, whose `evaluate()` also generates and scores with the task's metrics."""

from collections.abc import Sequence
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import Trainer

from ..data.collators import TaskCollator
from ..modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from .metrics import compute_metrics_for_task
from .model_card import write_model_card

GENERATION_TASKS = ("captioning", "translation", "asr", "mmt")


@torch.no_grad()
def generate_predictions(
    model: MultimodalGPTForConditionalGeneration,
    collator: TaskCollator,
    dataset: Sequence[dict[str, Any]],
    *,
    batch_size: int = 16,
    progress: bool = True,
    **generation_kwargs: Any,
) -> tuple[list[str], list[list[str]]]:
    """Generate for every row of `dataset` (batched, left-padded prompts) and return the predictions, stripped of
    their prompt, with the references of each row."""
    if not collator.for_generation:
        raise ValueError("generate_predictions needs a collator built with for_generation=True.")
    was_training = model.training
    model.eval()
    tokenizer = collator.processor.tokenizer
    predictions: list[str] = []
    references: list[list[str]] = []
    batches = range(0, len(dataset), batch_size)
    for start in tqdm(batches, desc="generating", disable=not progress, leave=False):
        rows = [dataset[index] for index in range(start, min(start + batch_size, len(dataset)))]
        batch = collator(rows)
        references += batch.pop("references")
        batch = {key: value.to(model.device) for key, value in batch.items()}
        generated = model.generate(
            **batch, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **generation_kwargs
        )
        predictions += collator.decode_predictions(generated, batch["input_ids"])
    model.train(was_training)
    return predictions, references


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
        self.last_predictions: dict[str, tuple[list[str], list[list[str]]]] = {}
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
        predictions, references = generate_predictions(
            self.model,
            collator,
            dataset,
            batch_size=self.args.per_device_eval_batch_size,
            progress=not self.args.disable_tqdm,
            **self.generation_kwargs,
        )
        self.last_predictions[metric_key_prefix] = (predictions, references)
        scores = compute_metrics_for_task(collator.task.name, predictions, references)
        scores = {f"{metric_key_prefix}_{name}": value for name, value in scores.items()}
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


__all__ = ["GENERATION_TASKS", "MultimodalTrainer", "generate_predictions"]
