"""The standard `Trainer` with generation-based evaluation for this decoder-only model: `generate_predictions` and
`MultimodalTrainer`, whose `evaluate()` also generates and scores with the task's metrics, and whose checkpoints
survive a crash and resume every parameter (see `multimodal_gpt.training.checkpoints`)."""

import logging
from collections.abc import Sequence
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

logger = logging.getLogger(__name__)
# What the output folder gets instead of the Trainer's pickled `training_args.bin` (checkpoints keep the pickle)
TRAINING_ARGS_JSON = "training_args.json"

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
    """

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


__all__ = ["GENERATION_TASKS", "MultimodalTrainer", "generate_predictions"]
