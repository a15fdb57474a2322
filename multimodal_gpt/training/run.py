"""One training run with the standard `Trainer`, as `scripts/train.py` and the demo start it: data, model and
processor, collators, training with resume, generation-based evaluation of every requested split, model card.

A run owns its output folder (a second process on it is refused), continues from the most recently completed
checkpoint after a crash, and, rerun once finished, trains nothing more (see `multimodal_gpt.training.checkpoints`)."""

import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoProcessor, TrainingArguments, set_seed

from ..data.collators import COLLATORS, EpochCallback, TaskCollator
from ..data.sources import load_task_splits, training_texts
from ..data.tasks import get_task
from ..modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from .arguments import DataArguments, ModelArguments, check_generation_arguments
from .checkpoints import (
    RunLock,
    finished_run,
    forget_finished_run,
    mark_run_finished,
    resumable_checkpoint,
    training_plan,
)
from .distributed import check_distributed_engine, check_distributed_launch
from .lora import apply_lora, is_lora_folder, is_peft_model, load_lora, lora_base_model, merge_lora
from .model_card import run_card_kwargs
from .outputs import describe_inputs, plot_training_curves, write_predictions
from .presets import build_model_and_processor
from .trainer import MultimodalTrainer

logger = logging.getLogger(__name__)


def run(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict[str, Any]:
    """Train and evaluate one task; returns the metrics. The output folder gets a Hub-ready model and processor,
    `all_results.json`, `eval_results.json`, `predictions_<split>.jsonl` and `loss_curve.png`.

    Run state: the main process holds a lock on the output folder for the whole run ([`RunLock`]: a second run on it
    is refused; a crashed one leaves no lock behind). Training resumes from the most recently completed checkpoint
    of the output folder (or `--resume_from_checkpoint`). Once training has finished, `training_complete.json`
    records it: the same command run again trains nothing (it loads the finished model, says so, and evaluates);
    a command with another plan of steps (more epochs, say) goes on from the last checkpoint."""
    # 1. Checks and seed
    if data_args.task not in COLLATORS:
        raise ValueError(f"--task {data_args.task!r} is not one of {sorted(COLLATORS)}.")
    training_args.remove_unused_columns = False  # the collators read the raw media columns
    if training_args.ddp_find_unused_parameters is None:
        # Every trainable parameter is in the graph of every batch (absent modalities are anchored with 0 x their
        # parameters), so DDP needs no search for unused ones. Left at None, the Trainer would turn that search on
        # for any model without gradient checkpointing: an extra graph traversal per step that also hides bugs.
        training_args.ddp_find_unused_parameters = False
    check_distributed_launch(training_args)
    if not (training_args.do_train or training_args.do_eval):
        training_args.do_train = training_args.do_eval = True  # neither flag given: train, then evaluate
    set_seed(training_args.seed)
    is_main = training_args.process_index == 0
    with RunLock(training_args.output_dir) if is_main else contextlib.nullcontext():
        return _train_and_evaluate(model_args, data_args, training_args)


def _train_and_evaluate(
    model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments
) -> dict[str, Any]:
    # 2. Data, and whether this command already ran to its end here
    splits = load_task_splits(data_args)
    logger.info("Data: %s", {name: len(split) for name, split in splits.items()})
    output_dir = Path(training_args.output_dir)
    plan = training_plan(training_args, len(splits["train"]))
    finished = finished_run(output_dir, plan) if training_args.do_train else None
    if finished:
        logger.warning(
            "%s holds the finished run of this command (step %d, %s): nothing to train. Evaluating its model; to "
            "train further, raise --num_train_epochs or --max_steps, or choose another --output_dir.",
            output_dir,
            finished["global_step"],
            finished["finished"],
        )
        training_args.do_train = False
        model_args = dataclasses.replace(model_args, model_name_or_path=str(output_dir))

    # 3. Model and processor: the finished run's, continue a checkpoint, or build the preset with an offline tokenizer
    if model_args.model_name_or_path:
        model = load_checkpoint(model_args)
        processor = AutoProcessor.from_pretrained(model_args.model_name_or_path)
    else:
        model, processor = build_model_and_processor(
            model_args.preset,
            texts=training_texts(splits["train"]),
            tokenizer_name_or_path=model_args.tokenizer_name_or_path,
            vocab_size=model_args.vocab_size,
            fusion=model_args.fusion,
            max_length=data_args.max_length,
        )
    check_generation_arguments(data_args, model.config)
    apply_freezing(model, model_args)
    if model_args.lora_r and not is_peft_model(model):
        model = prepare_lora(model, processor, model_args, training_args)
    logger.info("Model: %.2fM parameters, %.2fM trainable", *parameter_counts(model))

    # 4. Collators and trainer
    task = task_for(data_args)
    collator = COLLATORS[data_args.task](processor=processor, task=task, max_length=data_args.max_length)
    # A prompt may take the positions that max_new_tokens leaves (longer ones are dropped and counted)
    prompt_room = min(data_args.max_length, model.config.text_config.n_positions - data_args.max_new_tokens)
    generation_collator = COLLATORS[data_args.task](
        processor=processor, task=task, max_length=prompt_room, for_generation=True
    )
    if training_args.do_eval or training_args.eval_strategy != "no":
        drop_unusable_evaluation_rows(splits, evaluated_splits(data_args), (collator, generation_collator))
    eval_split = splits.get("validation")
    trainer = MultimodalTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=eval_split,
        data_collator=collator,
        processing_class=processor,
        callbacks=[EpochCallback(collator)],
        generation_collator=generation_collator,
        generation_kwargs={"max_new_tokens": data_args.max_new_tokens, "num_beams": data_args.num_beams},
    )
    check_distributed_engine(trainer)

    # 5. Train (resuming from the most recently completed checkpoint of the output folder, or the one given)
    results: dict[str, Any] = {}
    if training_args.do_train:
        checkpoint = training_args.resume_from_checkpoint
        with training_args.main_process_first(desc="choosing the checkpoint to resume from"):
            if checkpoint is None:
                checkpoint = resumable_checkpoint(output_dir, remove_interrupted=training_args.should_save)
        if training_args.should_save:
            forget_finished_run(output_dir)  # a run of another plan: its final model is about to be rewritten
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        if training_args.should_save:  # the main process only: under DDP every rank gets here
            processor.save_pretrained(output_dir)
            if model_args.merge_lora and is_peft_model(trainer.model):
                save_merged_lora(output_dir, output_dir / "merged", processor)
        train_metrics = dict(
            train_result.metrics, train_samples=len(splits["train"]), world_size=training_args.world_size
        )
        train_metrics.update({f"collator_{k}": v for k, v in vars(collator.stats).items()})
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()
        if training_args.should_save:
            mark_run_finished(output_dir, plan, trainer.state.global_step)
        results.update(train_metrics)

    # 6. Evaluate every requested split, with generation and its metrics
    if training_args.do_eval:
        for split_name in evaluated_splits(data_args):
            if split_name not in splits:
                logger.warning("No %r split for task %s; skipped.", split_name, data_args.task)
                continue
            prefix = "eval" if split_name == "validation" else split_name
            metrics = trainer.evaluate(splits[split_name], metric_key_prefix=prefix)
            trainer.log_metrics(prefix, metrics)
            trainer.save_metrics(prefix, metrics)
            results.update(metrics)
            if prefix in trainer.last_predictions:
                predictions, references = trainer.last_predictions[prefix]
                prompts = describe_inputs(splits[split_name], data_args.task)
                write_predictions(output_dir / f"predictions_{split_name}.jsonl", prompts, predictions, references)

    # 7. Model card (README.md, with the run's task, data and results: the folder is a Hub repo) and loss curve
    if training_args.do_train:
        step = trainer.state.global_step
        trainer.model_card_kwargs = run_card_kwargs(
            model_args, data_args, training_args, task=task.name, global_step=step, results=results
        )
        trainer.create_model_card()
    if trainer.is_world_process_zero() and not finished:  # a finished run's curve stays the one its training drew
        plot_training_curves(trainer.state.log_history, output_dir / "loss_curve.png", title=data_args.task)
    return results


def evaluated_splits(data_args: DataArguments) -> list[str]:
    return [name.strip() for name in data_args.eval_splits.split(",") if name.strip()]


def drop_unusable_evaluation_rows(
    splits: dict[str, Dataset], names: list[str], collators: tuple[TaskCollator, ...]
) -> None:
    """Before training: rows of the evaluation splits that a collator cannot use (a bad medium or text, a prompt
    longer than the room left) are dropped with a warning, so that no evaluation batch fails after training; a split
    with no usable row is an error now."""
    for name in dict.fromkeys(["validation", *names]):
        if name not in splits:
            continue
        reasons: dict[int, str] = {}
        for collator in collators:
            reasons = collator.unusable_rows(splits[name]) | reasons
        if not reasons:
            continue
        first = min(reasons)
        if len(reasons) == len(splits[name]):
            raise ValueError(f"No row of the {name!r} split is usable (row {first}: {reasons[first]}).")
        logger.warning(
            "Dropped %d of %d rows of the %r split that evaluation could not use (row %d: %s).",
            len(reasons),
            len(splits[name]),
            name,
            first,
            reasons[first],
        )
        splits[name] = splits[name].select([index for index in range(len(splits[name])) if index not in reasons])


def task_for(data_args: DataArguments):
    """The task with the data's language pair, and for `--text_only` mmt the text-only prompt on the same rows."""
    name = data_args.task
    if name == "mmt" and data_args.text_only:
        return get_task("translation")
    return get_task(name)


# ----- LoRA (peft is optional: `training.lora` imports it only when a LoRA option is used) ----------------


def load_checkpoint(model_args: ModelArguments) -> torch.nn.Module:
    """The model of `--model_name_or_path`: a full checkpoint, or a LoRA run's adapter folder. An adapter is put on
    its base model (`base_model_name_or_path`), to train further with `--lora_r`, or else merged in for full
    finetuning."""
    path = model_args.model_name_or_path
    if not is_lora_folder(path):
        return MultimodalGPTForConditionalGeneration.from_pretrained(path)
    base_path = lora_base_model(path)
    base = MultimodalGPTForConditionalGeneration.from_pretrained(base_path)
    if model_args.lora_r:
        logger.info("Continuing the LoRA adapter of %s on %s (its saved rank and targets are kept).", path, base_path)
        return load_lora(base, path, is_trainable=True)
    return merge_lora(load_lora(base, path))


def prepare_lora(
    model: MultimodalGPTForConditionalGeneration,
    processor: Any,
    model_args: ModelArguments,
    training_args: TrainingArguments,
) -> torch.nn.Module:
    """Wrap `model` with LoRA (see `multimodal_gpt.training.lora`). The adapter records where its base model is: the
    checkpoint it continues from, or, for a new model from a preset (random weights no adapter can rebuild),
    `<output_dir>/base_model`, saved here with the processor."""
    if model_args.train_only_fusion or model_args.freeze_language_model:
        raise ValueError(
            "--lora_r trains GPT-2 through LoRA adapters; --train_only_fusion and --freeze_language_model train no "
            "GPT-2 weights. Drop one of them."
        )
    if model_args.model_name_or_path and os.path.isdir(model_args.model_name_or_path):
        model.name_or_path = str(Path(model_args.model_name_or_path).resolve())
    elif not model_args.model_name_or_path:
        base_dir = Path(training_args.output_dir) / "base_model"
        with training_args.main_process_first(desc="saving the LoRA base model"):
            if training_args.should_save:
                model.save_pretrained(base_dir)
                processor.save_pretrained(base_dir)
        model.name_or_path = str(base_dir.resolve())
    return apply_lora(
        model,
        r=model_args.lora_r,
        alpha=model_args.lora_alpha,
        dropout=model_args.lora_dropout,
        target="language_model+towers" if model_args.lora_target_towers else "language_model",
        train_new_tokens=model_args.lora_train_new_tokens,
    )


def save_merged_lora(adapter_dir: Path, merged_dir: Path, processor: Any) -> None:
    """Load the saved adapter onto a fresh copy of its base model, merge it and save a plain checkpoint: this also
    checks that the adapter on disk is complete."""
    base = MultimodalGPTForConditionalGeneration.from_pretrained(lora_base_model(adapter_dir))
    merge_lora(load_lora(base, adapter_dir)).save_pretrained(merged_dir)
    processor.save_pretrained(merged_dir)


def apply_freezing(model: MultimodalGPTForConditionalGeneration, model_args: ModelArguments) -> None:
    if model_args.train_only_fusion:
        model.freeze_all_but_fusion()
    if model_args.freeze_towers:
        model.freeze_towers()
    if model_args.freeze_language_model:
        model.freeze_language_model()


def parameter_counts(model: torch.nn.Module) -> tuple[float, float]:
    total = sum(parameter.numel() for parameter in model.parameters())
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    return total / 1e6, trainable / 1e6
