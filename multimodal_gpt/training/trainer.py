"""The standard `Trainer` with generation-based evaluation for this decoder-only model, the `Seq2SeqTrainer` way
(`MultimodalTrainer`: `evaluate()` and `predict()` generate, `compute_metrics` receives the generated ids and the
labels), and checkpoints that survive a crash and resume every parameter (see `multimodal_gpt.training.checkpoints`).
"""

import contextlib
import copy
import dataclasses
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import EvalPrediction, GenerationConfig, PreTrainedModel, Trainer
from transformers.distributed.fsdp import is_fsdp_managed_module
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME, TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, EvalLoopOutput, PredictionOutput, has_length
from transformers.utils import is_sagemaker_mp_enabled

from ..data.collators import IGNORE_INDEX, TaskCollator
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
from .model_card import write_model_card
from .optimization import parameter_groups
from .outputs import RowPrediction
from .predictions import (
    EvaluationCollator,
    GenerationEvalPrediction,
    NumberedRows,
    TaskMetrics,
    decode_generated,
    first_of_each_row,
)
from .self_critical import TEACHER_FORCED, SelfCritical

logger = logging.getLogger(__name__)
# What the output folder gets instead of the Trainer's pickled `training_args.bin` (checkpoints keep the pickle)
TRAINING_ARGS_JSON = "training_args.json"

GENERATION_TASKS = ("captioning", "translation", "asr", "mmt")


class _GenerationLoop:
    """The rows one evaluation loop gathered (in the order of its gathered predictions) and its metric prefix."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.rows: list[RowPrediction] = []

    def kept(self) -> list[int]:
        return first_of_each_row(self.rows)


def over_the_models_generation_config(
    given: str | GenerationConfig, model_config: GenerationConfig
) -> GenerationConfig:
    """The generation config `given` (an object, or a file, folder or Hub id, as `Seq2SeqTrainer` takes them) with
    every setting it leaves unset taken from the model's, as Transformers 5's `generate(generation_config=...)`
    does: a file of decoding settings alone (`{"length_penalty": 0.0}`) keeps the checkpoint's beam width, output
    length and special token ids (without them generation would never stop at the end of text)."""
    if isinstance(given, GenerationConfig):
        config = copy.deepcopy(given)
    elif Path(given).is_file():
        config = GenerationConfig.from_pretrained(Path(given).parent, Path(given).name)
    else:
        config = GenerationConfig.from_pretrained(given)
    config.update(**model_config.to_dict(), defaults_only=True, allow_custom_entries=True)
    try:  # strict, as `Seq2SeqTrainer` checks its file: `save_pretrained` at the end of training would refuse it
        config.validate(strict=True)
    except ValueError as error:
        raise ValueError(f"{error}\n\nFix these issues in the generation config {given}.") from None
    return config


class MultimodalTrainer(Trainer):
    """`Trainer` whose `evaluate()` and `predict()` generate for this decoder-only model, as `Seq2SeqTrainer` does
    for encoder-decoders, next to the teacher-forced loss.

    Generation-based evaluation (when a `generation_collator` is given, for captioning, translation, asr and mmt):

    - `args.predict_with_generate` (`Seq2SeqTrainingArguments`; plain `TrainingArguments` count as `True`) turns it on
      for every evaluation, periodic ones during training included; off, evaluation is the `Trainer`'s loss (and
      logits, for a `compute_metrics` that wants them);
    - generation settings, later ones winning: the model's `generation_config` (`args.generation_config` over it when
      given: what that leaves unset stays the model's), `args.generation_max_length` (for this decoder-only model,
      the longest output in *new* tokens: `generate()`'s `max_new_tokens`) and `args.generation_num_beams`, the
      `generation_kwargs` given here, and the keyword arguments of `evaluate(**gen_kwargs)` / `predict(**gen_kwargs)`;
    - `compute_metrics` receives a [`GenerationEvalPrediction`] over the rows scored: the generated ids (prompt
      stripped) and the labels (the first reference, -100 padded), plus every reference of each row; without one,
      [`TaskMetrics`] (the task's WER/CER, BLEU/chrF or BLEU-4/CIDEr-D) scores them. The metrics also count
      `<prefix>_samples` (rows scored) and `<prefix>_skipped_rows` (rows no collator could use: a bad medium or
      text, a prompt longer than the room left), which add up to the rows evaluated;
    - `predict()` returns one row of generated ids per row of the split (a skipped row's all -100), and
      `last_predictions[prefix]` holds one [`RowPrediction`] per row (input, references, prediction or why it was
      skipped), which `run()` writes as the predictions file;
    - rows the training collator cannot use are left out of the loss only; iterable data sets (streams) work, also
      across processes.

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

    Self-critical training (`self_critical`, see `multimodal_gpt.training.self_critical`): the training batches come
    from it (prompts and every reference of each row, and the training collator's batch of the same rows for a
    mixed objective), and the loss is that of sampled outputs rewarded against the references, instead of (or, mixed,
    beside) the teacher-forced cross-entropy; the mean reward is logged as `reward`.
    """

    def __init__(
        self,
        *args: Any,
        generation_collator: TaskCollator | None = None,
        generation_kwargs: dict[str, Any] | None = None,
        module_learning_rates: dict[str, float | None] | None = None,
        self_critical: SelfCritical | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        if self.args.dataloader_pin_memory and self.args.device.type == "cpu":
            # pinned memory only speeds up copies to an accelerator: on a CPU run torch warns at every epoch instead
            self.args.dataloader_pin_memory = False
        if generation_collator is not None and not generation_collator.for_generation:
            raise ValueError("generation_collator must be built with for_generation=True.")
        self.module_learning_rates = module_learning_rates or {}
        self.self_critical = self_critical
        self._smooth_labels_in_the_model()
        self.generation_collator = generation_collator
        self.generation_kwargs = generation_kwargs or {}
        if getattr(self.args, "generation_config", None) is not None:  # as Seq2SeqTrainer does
            generating_model = self._generating_model()
            generating_model.generation_config = over_the_models_generation_config(
                self.args.generation_config, generating_model.generation_config
            )
        # The rows of the last evaluation of each metric prefix, with their predictions: `run()` writes them out.
        self.last_predictions: dict[str, list[RowPrediction]] = {}
        # What the model card says about the run (task, datasets, training, results): `run()` fills it in.
        self.model_card_kwargs: dict[str, Any] = {}
        # Set for the length of one evaluate() / predict() (see `_evaluation`): whether its batches come from the
        # task's collators, and the generation settings when it generates.
        self._evaluating = False
        self._generation_call: dict[str, Any] | None = None
        self._loop: _GenerationLoop | None = None

    # ----- evaluation and prediction, with generation -----------------------------------------------------------

    def _generating_model(self) -> torch.nn.Module:
        """The model whose `generation_config` `generate()` reads: the base model under a LoRA adapter."""
        model = self.accelerator.unwrap_model(self.model)
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def generates(self) -> bool:
        """Whether `evaluate()` and `predict()` generate: a generation collator for a generation task, and
        `predict_with_generate` (`Seq2SeqTrainingArguments`; plain `TrainingArguments` count as `True`)."""
        collator = self.generation_collator
        return (
            collator is not None
            and collator.task.name in GENERATION_TASKS
            and getattr(self.args, "predict_with_generate", True)
            and not self.args.prediction_loss_only
        )

    def evaluate(
        self,
        eval_dataset: Dataset | dict[str, Dataset] | str | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
        **gen_kwargs: Any,
    ) -> dict[str, float]:
        """`Trainer.evaluate`, generating as the class docstring says; `gen_kwargs` go to `generate()`."""
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        if isinstance(dataset, str):
            dataset = self.eval_dataset[dataset]
        if isinstance(dataset, dict):
            metrics: dict[str, float] = {}
            for name, split in dataset.items():
                metrics.update(self.evaluate(split, ignore_keys, f"{metric_key_prefix}_{name}", **gen_kwargs))
            return metrics
        with self._evaluation(gen_kwargs):
            return super().evaluate(dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def predict(
        self,
        test_dataset: Dataset,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "test",
        **gen_kwargs: Any,
    ) -> PredictionOutput:
        """`Trainer.predict`, generating as the class docstring says: `predictions` holds the generated ids (prompt
        stripped), one row per row of `test_dataset`; `gen_kwargs` go to `generate()`."""
        with self._evaluation(gen_kwargs):
            return super().predict(test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    @contextlib.contextmanager
    def _evaluation(self, gen_kwargs: dict[str, Any]) -> Iterator[None]:
        """For one evaluate() / predict(): evaluation batches from the task's collators (the same loss batches
        whether it generates or not), and when it generates, the generation settings and the `compute_metrics`
        that scores the rows (the user's, or the task's)."""
        generating = self.generates()
        self._evaluating = generating or isinstance(self.data_collator, TaskCollator)
        if not generating:
            try:
                yield
            finally:
                self._evaluating = False
            return
        if self.args.batch_eval_metrics or not self.args.eval_do_concat_batches or self.args.include_for_metrics:
            raise ValueError(
                "Generation-based evaluation scores every row of a split at once, with its references: it does not "
                "take --batch_eval_metrics, --eval_do_concat_batches false or --include_for_metrics (the rows' "
                "inputs and references are in the predictions file). Drop them, or pass --predict_with_generate "
                "false for the Trainer's loss-only evaluation."
            )
        given_metrics = self.compute_metrics
        tokenizer = self.generation_collator.processor.tokenizer
        self._generation_call = self._generation_settings(gen_kwargs)
        self.compute_metrics = self._scored_rows_metrics(
            given_metrics or TaskMetrics(self.generation_collator.task, tokenizer)
        )
        try:
            yield
        finally:
            self.compute_metrics = given_metrics
            self._generation_call = None
            self._evaluating = False

    def _generation_settings(self, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
        """`generate()`'s keyword arguments: see the class docstring for the order."""
        settings: dict[str, Any] = {}
        if getattr(self.args, "generation_max_length", None) is not None:
            settings["max_new_tokens"] = self.args.generation_max_length
        if getattr(self.args, "generation_num_beams", None) is not None:
            settings["num_beams"] = self.args.generation_num_beams
        settings.update(self.generation_kwargs)
        settings.update({key: value for key, value in gen_kwargs.items() if value is not None})
        if "max_length" in settings and "max_new_tokens" in settings:
            settings.pop("max_new_tokens" if "max_length" in gen_kwargs else "max_length")
        return settings

    def get_eval_dataloader(self, eval_dataset: str | Dataset | None = None) -> DataLoader:
        if not self._evaluating:
            return super().get_eval_dataloader(eval_dataset)
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        return self._evaluation_dataloader(self.eval_dataset[dataset] if isinstance(dataset, str) else dataset)

    def get_test_dataloader(self, test_dataset: Dataset) -> DataLoader:
        if not self._evaluating:
            return super().get_test_dataloader(test_dataset)
        return self._evaluation_dataloader(test_dataset)

    def _evaluation_dataloader(self, dataset: Any) -> DataLoader:
        """The rows in split order (no sampler: the predictions file follows the split), collated for the loss and,
        when it generates, for generation; across processes, accelerate gives each its share. A stream is read by
        every process, each keeping its share (not dispatched from the first: prompts of different lengths cannot be
        concatenated), its rows numbered so that the copies padding the last batch can be dropped."""
        loss_collator = unaugmented(self.data_collator) if isinstance(self.data_collator, TaskCollator) else None
        generation_collator = self.generation_collator if self._generation_call is not None else None
        streamed_across_processes = not has_length(dataset) and self.args.world_size > 1
        loader = DataLoader(
            NumberedRows(dataset) if streamed_across_processes else dataset,
            batch_size=self.args.eval_batch_size,
            collate_fn=EvaluationCollator(loss_collator, generation_collator),
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers,
            multiprocessing_context=self.args.dataloader_multiprocessing_context,
            prefetch_factor=self.args.dataloader_prefetch_factor,
        )
        loader_config = self.accelerator.dataloader_config
        dispatch = loader_config.dispatch_batches
        loader_config.dispatch_batches = False if streamed_across_processes else dispatch
        try:
            return self.accelerator.prepare(loader)
        finally:
            loader_config.dispatch_batches = dispatch

    def evaluation_loop(
        self,
        dataloader: DataLoader,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> EvalLoopOutput:
        if self._generation_call is None:
            return super().evaluation_loop(
                dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
            )
        self._loop = _GenerationLoop(metric_key_prefix)
        try:
            output = super().evaluation_loop(
                dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
            )
            kept = self._loop.kept()
        finally:
            loop, self._loop = self._loop, None
        if output.predictions is None or len(kept) == len(loop.rows):
            return output
        # A stream evaluated by several processes: drop the rows repeated to pad its last batch
        return output._replace(
            predictions=output.predictions[kept], label_ids=output.label_ids[kept], num_samples=len(kept)
        )

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """The loss of the rows the training collator could use (a batch without any gives NaN, which the `Trainer`'s
        `logging_nan_inf_filter` leaves out), then, when it generates and unless `prediction_loss_only`, the
        generated ids of every row, prompt stripped (`-100` for a skipped row), and the labels."""
        if "loss_inputs" not in inputs:  # a batch of another collator
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        if "generation_inputs" not in inputs:
            return self._loss_step(model, inputs["loss_inputs"], prediction_loss_only, ignore_keys)
        loss = self._loss_step(model, inputs["loss_inputs"], True, ignore_keys)[0]
        # The rows go through the same gather as the predictions: the same order, the same padding rows dropped.
        self._loop.rows.extend(self.accelerator.gather_for_metrics(inputs["rows"], use_gather_object=True))
        if prediction_loss_only:
            return loss, None, None
        return loss, self._generate(model, inputs), inputs["labels"]

    def _loss_step(
        self, model: torch.nn.Module, loss_inputs: Any, prediction_loss_only: bool, ignore_keys: list[str] | None
    ) -> tuple[torch.Tensor | None, Any, Any]:
        if loss_inputs is not None:
            return super().prediction_step(model, loss_inputs, prediction_loss_only, ignore_keys=ignore_keys)
        if not prediction_loss_only and self.args.world_size > 1:
            raise ValueError(
                "A batch of the evaluation has no row the loss can use, and compute_metrics wants the logits of every "
                "process's batch: clean the split, or evaluate in one process."
            )
        return torch.tensor(float("nan"), device=self.args.device), None, None

    @torch.no_grad()
    def _generate(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """`(rows, new_tokens)` ids generated for the kept rows of the batch, prompt stripped; -100 elsewhere."""
        rows, kept, prompts = len(inputs["rows"]), inputs["kept_rows"], inputs["generation_inputs"]
        new_tokens = torch.full((rows, 1), IGNORE_INDEX, dtype=torch.long, device=self.args.device)
        if not kept:
            return new_tokens
        tokenizer = self.generation_collator.processor.tokenizer
        settings = {
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "synced_gpus": is_deepspeed_zero3_enabled() or is_fsdp_managed_module(model),
            **self._generation_call,
        }
        generated = self.accelerator.unwrap_model(model).generate(**prompts, **settings)
        continuation = generated[:, prompts["input_ids"].shape[1] :]
        new_tokens = torch.full(
            (rows, max(continuation.shape[1], 1)), IGNORE_INDEX, dtype=torch.long, device=continuation.device
        )
        new_tokens[kept, : continuation.shape[1]] = continuation
        return new_tokens

    def _scored_rows_metrics(self, compute_metrics: Callable[[EvalPrediction], dict]) -> Callable:
        """The `compute_metrics` the evaluation loop calls: it records every row's prediction, then calls
        `compute_metrics` on the rows scored, and counts them."""

        def score(eval_prediction: EvalPrediction) -> dict[str, Any]:
            loop = self._loop
            kept = loop.kept()
            rows = [loop.rows[position] for position in kept]
            scored = [position for position, row in enumerate(rows) if row.skipped is None]
            if not scored:
                reason = rows[0].skipped if rows else "the split is empty"
                raise ValueError(f"No row of the {len(rows)} evaluated could be scored, e.g.: {reason}.")
            predictions = np.asarray(eval_prediction.predictions)[kept][scored]
            label_ids = np.asarray(eval_prediction.label_ids)[kept][scored]
            texts = decode_generated(
                self.generation_collator.processor.tokenizer, self.generation_collator.task, predictions
            )
            for index, row in enumerate(rows):
                row.index = index
            for position, text in zip(scored, texts):
                rows[position].prediction = text
            self.last_predictions[loop.prefix] = rows
            references = [rows[position].references for position in scored]
            scored_rows = GenerationEvalPrediction(predictions, label_ids, references=references, texts=texts)
            metrics = dict(compute_metrics(scored_rows))
            return {**metrics, "samples": len(scored), "skipped_rows": len(rows) - len(scored)}

        return score

    def unusable_evaluation_rows(self, dataset: Dataset) -> dict[int, str]:
        """Why each row of an evaluation split that the training collator (the loss) or the generation collator
        cannot use is unusable, by row index (see `TaskCollator.unusable_rows`); remembered for `evaluate()`."""
        collators = [self.data_collator, self.generation_collator]
        reasons: dict[int, str] = {}
        for collator in collators:
            if isinstance(collator, TaskCollator):
                reasons = collator.unusable_rows(dataset) | reasons
        return reasons

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
        augmentation (a copy without it), so that the evaluation loss sees the media as they are; under
        self-critical training, the training loader collates its prompts."""
        collator = self.data_collator
        if not is_training:
            self.data_collator = unaugmented(collator)
        elif self.self_critical is not None:  # prompts to sample from, with every reference of each row
            self.data_collator = self.self_critical
        try:
            return super()._get_dataloader(dataset, description, batch_size, sampler_fn, is_training, dataloader_key)
        finally:
            self.data_collator = collator

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """The `Trainer`'s loss, or under self-critical training (a batch of prompts and references) its loss, plus
        the weighted teacher-forced loss of the same rows when the batch holds it."""
        if self.self_critical is None or "references" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss = self.self_critical.loss(model, self._generating_model(), inputs)
        if TEACHER_FORCED in inputs:
            teacher_forced = super().compute_loss(model, inputs[TEACHER_FORCED])
            loss = loss + self.self_critical.cross_entropy_weight * teacher_forced
        return (loss, None) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """The `Trainer`'s log, with the mean reward of the samples since the last one under self-critical
        training."""
        if self.self_critical is not None and self.self_critical.rewards and "loss" in logs:
            rewards = self.self_critical.rewards
            logs["reward"] = round(sum(rewards) / len(rewards), 4)
            rewards.clear()
        super().log(logs, start_time)

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


def unaugmented(collator: Any) -> Any:
    """`collator` without its augmentation (a copy), for the batches of evaluation and prediction: the evaluation
    loss sees the media as they are."""
    if isinstance(collator, TaskCollator) and collator.augmentation is not None:
        return dataclasses.replace(collator, augmentation=None)
    return collator


__all__ = ["GENERATION_TASKS", "MultimodalTrainer"]
