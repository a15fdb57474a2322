"""The standard `Trainer` with generation-based evaluation for this decoder-only model: `generate_predictions` and
`MultimodalTrainer`, whose `evaluate()` also generates and scores with the task's metrics, and whose checkpoints
survive a crash and resume every parameter (see `multimodal_gpt.training.checkpoints`)."""

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence, Sized
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedModel, Trainer
from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME, TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import is_sagemaker_mp_enabled

from ..data.collators import TaskCollator
from ..data.tasks import BadRowError, Task
from ..modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from .checkpoints import (
    CHECKPOINT_PATTERN,
    IncompleteCheckpointError,
    begin_checkpoint,
    check_resumable,
    finish_checkpoint,
    load_weights_strictly,
    resumable_checkpoint,
    rotate_checkpoints,
)
from .metrics import compute_metrics_for_task
from .model_card import write_model_card
from .optimization import parameter_groups
from .outputs import RowPrediction, describe_input

logger = logging.getLogger(__name__)
# What the output folder gets instead of the Trainer's pickled `training_args.bin` (checkpoints keep the pickle)
TRAINING_ARGS_JSON = "training_args.json"

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
    metrics (`eval_wer`, `eval_bleu`, `eval_cider`, ...), next to the teacher-forced `eval_loss`.

    Checkpoints and resuming (`multimodal_gpt.training.checkpoints`):

    - a checkpoint counts only once complete (`checkpoint_complete.json`, written last); `save_total_limit` deletes
      old checkpoints only after the new one is complete;
    - `train(resume_from_checkpoint=True)` takes the most recently completed checkpoint and names the ones it
      skipped; an explicit incomplete checkpoint is an error;
    - resuming restores every parameter of the model, renamed keys of ViT / DINOv2 towers included, or fails; a
      checkpoint without its optimizer, scheduler or RNG state is an error, unless `save_only_model=True` says that
      the checkpoints hold weights only (then they restart, with a warning);
    - the output folder (not the checkpoints) gets `training_args.json` instead of the pickled `training_args.bin`.

    Optimization: `module_learning_rates` (`{"towers" | "fusion" | "embeddings" | "language_model": lr}`) gives each
    module its own learning rate (see `multimodal_gpt.training.optimization`); `--label_smoothing_factor` smooths the
    model's own loss (`config.label_smoothing`), since the `Trainer`'s label smoother needs logits that a training
    step with `labelled_logits_only` does not compute.
    """

    def __init__(
        self,
        *args: Any,
        generation_collator: TaskCollator | None = None,
        generation_kwargs: dict[str, Any] | None = None,
        module_learning_rates: dict[str, float | None] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.module_learning_rates = module_learning_rates or {}
        self._smooth_labels_in_the_model()
        self.generation_collator = generation_collator
        self.generation_kwargs = generation_kwargs or {}
        # The rows of the last evaluation of each metric prefix, with their predictions: `run()` writes them out.
        self.last_predictions: dict[str, list[RowPrediction]] = {}
        # What the model card says about the run (task, datasets, training, results): `run()` fills it in.
        self.model_card_kwargs: dict[str, Any] = {}
        # Per evaluation split (by fingerprint): the rows the training collator cannot use, left out of the loss.
        self._rows_without_loss: dict[str, set[int]] = {}

    def evaluate(
        self,
        eval_dataset: Dataset | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        metrics = super().evaluate(
            self._rows_with_a_loss(dataset), ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix
        )
        collator = self.generation_collator
        if collator is None or collator.task.name not in GENERATION_TASKS:
            return metrics
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

    def unusable_evaluation_rows(self, dataset: Dataset) -> dict[int, str]:
        """Why each row of an evaluation split that the training collator (the loss) or the generation collator
        cannot use is unusable, by row index (see `TaskCollator.unusable_rows`); remembered for `evaluate()`."""
        collators = [self.data_collator, self.generation_collator]
        reasons: dict[int, str] = {}
        for collator in collators:
            if isinstance(collator, TaskCollator):
                unusable = collator.unusable_rows(dataset)
                if collator is self.data_collator:
                    self._rows_without_loss[dataset._fingerprint] = set(unusable)
                reasons = unusable | reasons
        return reasons

    def _rows_with_a_loss(self, dataset: Any) -> Any:
        """`dataset` without the rows the training collator cannot use, so that a batch of bad rows cannot stop the
        loss evaluation (generation keeps every row and reports the skipped ones)."""
        if not isinstance(dataset, Dataset) or not isinstance(self.data_collator, TaskCollator):
            return dataset
        if dataset._fingerprint not in self._rows_without_loss:
            self._rows_without_loss[dataset._fingerprint] = set(self.data_collator.unusable_rows(dataset))
        skipped = self._rows_without_loss[dataset._fingerprint]
        return dataset.select([row for row in range(len(dataset)) if row not in skipped]) if skipped else dataset

    # ----- optimization: per-module learning rates, label smoothing ---------------------------------------------

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """The `Trainer`'s optimizer (`--optim`, its kwargs, weight decay except on biases and norms), with one
        parameter group per module and weight decay, each at its module's learning rate."""
        if self.optimizer is not None or not any(rate is not None for rate in self.module_learning_rates.values()):
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        groups = parameter_groups(
            opt_model,
            learning_rate=self.args.learning_rate,
            weight_decay=self.args.weight_decay,
            decay_parameter_names=self.get_decay_parameter_names(opt_model),
            module_learning_rates=self.module_learning_rates,
        )
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _get_dataloader(
        self,
        dataset: Any,
        description: str,
        batch_size: int,
        sampler_fn: Any = None,
        is_training: bool = False,
        dataloader_key: str | None = None,
    ) -> Any:
        """The `Trainer`'s loaders; those of evaluation and prediction collate without the training collator's
        augmentation (a copy without it), so that the evaluation loss sees the media as they are."""
        collator = self.data_collator
        if not is_training and isinstance(collator, TaskCollator) and collator.augmentation is not None:
            self.data_collator = dataclasses.replace(collator, augmentation=None)
        try:
            return super()._get_dataloader(dataset, description, batch_size, sampler_fn, is_training, dataloader_key)
        finally:
            self.data_collator = collator

    def _smooth_labels_in_the_model(self) -> None:
        """`--label_smoothing_factor` becomes the model's `config.label_smoothing` (0 included, so that a checkpoint
        trained with smoothing does not smooth a run that asked for none), and the `Trainer`'s label smoother, which
        would need the logits, stands down."""
        config = getattr(self.accelerator.unwrap_model(self.model), "config", None)
        if config is not None and hasattr(config, "label_smoothing"):
            config.label_smoothing = self.args.label_smoothing_factor
            self.label_smoother = None

    # ----- checkpoints: crash-safe saves and strict resumes -----------------------------------------------------

    def train(
        self,
        resume_from_checkpoint: str | bool | None = None,
        trial: Any = None,
        ignore_keys_for_eval: list[str] | None = None,
    ):
        """`Trainer.train`; `resume_from_checkpoint=True` takes the most recently *completed* checkpoint of the output
        folder, and an explicit checkpoint must be complete."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = resumable_checkpoint(
                self.args.output_dir, remove_interrupted=self.args.should_save
            )
            if resume_from_checkpoint is None:
                raise IncompleteCheckpointError(f"No complete checkpoint in {self.args.output_dir} to resume from.")
        elif resume_from_checkpoint:
            check_resumable(resume_from_checkpoint)
        return super().train(
            resume_from_checkpoint=resume_from_checkpoint or None,
            trial=trial,
            ignore_keys_for_eval=ignore_keys_for_eval,
        )

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        run_dir = Path(self._get_output_dir(trial=trial))
        folder = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save:
            begin_checkpoint(folder)
        self.accelerator.wait_for_everyone()
        limit = self.args.save_total_limit
        self.args.save_total_limit = None  # old checkpoints go only once this one is complete (below)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        self.accelerator.wait_for_everyone()  # every rank's files (RNG states, shards) are written
        if self.args.should_save:
            finish_checkpoint(folder, self.state.global_step)
            rotate_checkpoints(run_dir, limit, protected=self.state.best_model_checkpoint)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict=state_dict)
        output_dir = Path(output_dir if output_dir is not None else self.args.output_dir)
        if self.args.should_save and not CHECKPOINT_PATTERN.match(output_dir.name):
            # The Hub-ready folder holds no pickle: `push_to_hub` would upload it, `from_pretrained` never reads it
            (output_dir / TRAINING_ARGS_NAME).unlink(missing_ok=True)
            (output_dir / TRAINING_ARGS_JSON).write_text(self.args.to_json_string())

    def _loads_weights_itself(self, model: torch.nn.Module) -> bool:
        """Plain models load through `from_pretrained`'s key mapping; DeepSpeed, FSDP, SageMaker and PEFT adapters
        keep the `Trainer`'s own loaders."""
        engines = self.is_deepspeed_enabled or self.is_fsdp_enabled or is_sagemaker_mp_enabled()
        return isinstance(model, PreTrainedModel) and not engines

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        model = self.model if model is None else model
        if not self._loads_weights_itself(model):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        logger.info("Loading every weight of %s.", resume_from_checkpoint)
        load_weights_strictly(model, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        if not self._loads_weights_itself(self.model):
            return super()._load_best_model()
        logger.info(
            "Loading the best model from %s (score: %s).", self.state.best_model_checkpoint, self.state.best_metric
        )
        load_weights_strictly(self.model, self.state.best_model_checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is not None and not (self.is_deepspeed_enabled or self.is_fsdp_enabled):
            self._check_training_state(checkpoint, [OPTIMIZER_NAME, SCHEDULER_NAME])
        super()._load_optimizer_and_scheduler(checkpoint)

    def _load_rng_state(self, checkpoint: str | None) -> None:
        if checkpoint is not None:
            rank = "" if self.args.world_size <= 1 else f"_{self.args.process_index}"
            self._check_training_state(checkpoint, [f"rng_state{rank}.pth"])
        super()._load_rng_state(checkpoint)

    def _check_training_state(self, checkpoint: str, names: list[str]) -> None:
        """The `Trainer` silently restarts whatever state a checkpoint lacks; here that takes `save_only_model`."""
        missing = [name for name in names if not (Path(checkpoint) / name).is_file()]
        if not missing:
            return
        if self.args.save_only_model:
            logger.warning(
                "Resuming from %s without %s (--save_only_model: weights-only checkpoints): the optimizer, the "
                "learning-rate schedule and the random state start afresh.",
                checkpoint,
                ", ".join(missing),
            )
            return
        raise IncompleteCheckpointError(
            f"{checkpoint} has no {', '.join(missing)}: resuming would silently restart the optimizer, the "
            "learning-rate schedule or the random state. Resume from a complete checkpoint, or pass "
            "--save_only_model true to accept weights-only checkpoints and restart them."
        )

    # ----- model card -------------------------------------------------------------------------------------------

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
