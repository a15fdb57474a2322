"""One training run with the standard `Trainer`, as `scripts/train.py` and the demo start it: data, model and
processor, collators, training with resume, generation-based evaluation of every requested split, model card.

A run owns its output folder (a second process on it is refused), continues from the most recently completed
checkpoint after a crash, and, rerun once finished, trains nothing more (see `multimodal_gpt.training.checkpoints`)."""

import contextlib
import dataclasses
import logging
import os
from collections.abc import Sized
from pathlib import Path
from typing import Any

import torch
from transformers import AutoProcessor, AutoTokenizer, TrainingArguments, set_seed

from ..configuration_multimodal_gpt import add_multimodal_tokens
from ..data.collators import COLLATORS, EpochCallback
from ..data.feature_cache import cache_media_features
from ..data.sources import AnyDataset, TaskData, load_task_data, training_texts
from ..modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from .arguments import (
    DEFAULT_PRESET,
    DEFAULT_VOCAB_SIZE,
    DataArguments,
    ModelArguments,
    check_data_arguments,
    check_generation_arguments,
    check_model_arguments,
)
from .checkpoints import (
    RunLock,
    finished_run,
    forget_finished_run,
    mark_run_finished,
    resumable_checkpoint,
    training_plan,
)
from .distributed import check_distributed_engine, check_distributed_launch
from .extras import check_optional_packages
from .lora import apply_lora, is_lora_folder, is_peft_model, load_lora, lora_base_model, merge_lora
from .model_card import run_card_kwargs
from .outputs import metric_prefix, plot_training_curves, write_predictions
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
    check_optional_packages(model_args, training_args)
    check_data_arguments(data_args, training=True)
    check_model_arguments(model_args, data_args)
    training_args.remove_unused_columns = False  # the collators read the raw media columns
    if training_args.ddp_find_unused_parameters is None:
        # Every trainable parameter is in the graph of every batch (absent modalities are anchored with 0 x their
        # parameters), so DDP needs no search for unused ones. Left at None, the Trainer would turn that search on
        # for any model without gradient checkpointing: an extra graph traversal per step that also hides bugs.
        training_args.ddp_find_unused_parameters = False
    check_distributed_launch(training_args)
    if not (training_args.do_train or training_args.do_eval):
        training_args.do_train = training_args.do_eval = True  # neither flag given: train, then evaluate
    if data_args.streaming and training_args.do_train and training_args.max_steps <= 0:
        raise ValueError("--streaming gives a training split of unknown length: set --max_steps.")
    set_seed(training_args.seed)
    is_main = training_args.process_index == 0
    with RunLock(training_args.output_dir) if is_main else contextlib.nullcontext():
        return _train_and_evaluate(model_args, data_args, training_args)


def _train_and_evaluate(
    model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments
) -> dict[str, Any]:
    # 2. Data (the training split and every evaluation split, checked against the task's columns), and whether this
    # command already ran to its end here
    evaluating = training_args.do_eval or training_args.eval_strategy != "no"
    data = load_task_data(data_args, train=training_args.do_train, evaluation=evaluating)
    logger.info("Data from %s: %s", data.source, data.sizes())
    output_dir = Path(training_args.output_dir)
    plan = training_plan(training_args, len(data.train) if isinstance(data.train, Sized) else None)
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

    # 3. Model and processor: the finished run's, continue a checkpoint, resume this run, or build the preset with an
    # offline tokenizer
    checkpoint = resume_checkpoint(training_args) if training_args.do_train else None
    model, processor = model_and_processor(model_args, data_args, data, checkpoint)
    check_generation_arguments(data_args, model.config)
    set_decoding_defaults(model, processor, data_args)
    apply_freezing(model, model_args)
    if model_args.lora_r and not is_peft_model(model):
        model = prepare_lora(model, processor, model_args, training_args)
    logger.info("Model: %.2fM parameters, %.2fM trainable", *parameter_counts(model))

    # 4. Collators and trainer (the first evaluation split is the one evaluated during training)
    task = data.task
    collator = COLLATORS[data_args.task](
        processor=processor, task=task, max_length=data_args.max_length, packing=data_args.packing
    )
    if data_args.cache_media_features and data.train is not None:  # frozen towers encode each medium once
        with training_args.main_process_first(desc="caching media features"):
            data.train = cache_media_features(data.train, model, collator, cache_dir=data_args.cache_dir)
    # A prompt may take the positions that max_new_tokens leaves (longer ones are dropped and counted)
    prompt_room = min(data_args.max_length, model.config.text_config.n_positions - data_args.max_new_tokens)
    generation_collator = COLLATORS[data_args.task](
        processor=processor, task=task, max_length=prompt_room, for_generation=True
    )
    trainer = MultimodalTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=next(iter(data.evaluation.values()), None),
        data_collator=collator,
        processing_class=processor,
        callbacks=[EpochCallback(collator)],
        generation_collator=generation_collator,
        generation_kwargs={"max_new_tokens": data_args.max_new_tokens, "num_beams": data_args.num_beams},
    )
    check_distributed_engine(trainer)
    check_evaluation_rows(trainer, data.evaluation)

    # 5. Train (resuming from the most recently completed checkpoint of the output folder, or the one given)
    results: dict[str, Any] = {}
    if training_args.do_train:
        if training_args.should_save:
            forget_finished_run(output_dir)  # a run of another plan: its final model is about to be rewritten
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        if training_args.should_save:  # the main process only: under DDP every rank gets here
            processor.save_pretrained(output_dir)
            if model_args.merge_lora and is_peft_model(trainer.model):
                save_merged_lora(output_dir, output_dir / "merged", processor)
        train_metrics = dict(train_result.metrics, world_size=training_args.world_size)
        if isinstance(data.train, Sized):
            train_metrics["train_samples"] = len(data.train)
        train_metrics.update({f"collator_{k}": v for k, v in vars(collator.stats).items()})
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()
        if training_args.should_save:
            mark_run_finished(output_dir, plan, trainer.state.global_step)
        results.update(train_metrics)

    # 6. Evaluate every requested split, with generation and its metrics; one predictions line per row
    if training_args.do_eval:
        for split_name, split in data.evaluation.items():
            prefix = metric_prefix(split_name)
            metrics = trainer.evaluate(split, metric_key_prefix=prefix)
            trainer.log_metrics(prefix, metrics)
            trainer.save_metrics(prefix, metrics)
            results.update(metrics)
            if prefix in trainer.last_predictions and trainer.is_world_process_zero():
                write_predictions(output_dir / f"predictions_{split_name}.jsonl", trainer.last_predictions[prefix])

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


def resume_checkpoint(training_args: TrainingArguments) -> str | None:
    """The checkpoint a training run resumes from: `--resume_from_checkpoint`, else the output folder's most recently
    completed one (incomplete ones, left by a crash, are named and skipped)."""
    if training_args.resume_from_checkpoint is not None:
        return training_args.resume_from_checkpoint
    with training_args.main_process_first(desc="choosing the checkpoint to resume from"):
        return resumable_checkpoint(training_args.output_dir, remove_interrupted=training_args.should_save)


def model_and_processor(
    model_args: ModelArguments, data_args: DataArguments, data: TaskData, checkpoint: str | None
) -> tuple[torch.nn.Module, Any]:
    """The model to train and its processor: `--model_name_or_path`'s, or a new one from the preset whose tokenizer
    is the resumed checkpoint's (its embeddings were trained with it), `--tokenizer_name_or_path`'s, or one trained
    here on the training split's text."""
    if model_args.model_name_or_path:
        return load_checkpoint(model_args), AutoProcessor.from_pretrained(model_args.model_name_or_path)
    if data.train is None:
        raise ValueError(
            "--do_eval without --do_train evaluates a trained model: pass --model_name_or_path (or run "
            "scripts/evaluate_model.py on it); a new model from --preset has nothing to evaluate."
        )
    tokenizer = model_args.tokenizer_name_or_path
    if checkpoint is not None:
        tokenizer = resumed_tokenizer(checkpoint, model_args.tokenizer_name_or_path)
    return build_model_and_processor(
        model_args.preset or DEFAULT_PRESET,
        texts=training_texts(data.train, data.task) if tokenizer is None else None,
        tokenizer_name_or_path=tokenizer,
        vocab_size=model_args.vocab_size or DEFAULT_VOCAB_SIZE,
        fusion=model_args.fusion,
        max_length=data_args.max_length,
    )


# What `save_pretrained` writes for the project's tokenizers; without them `AutoTokenizer` would load a 1-token one.
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


def resumed_tokenizer(checkpoint: str, tokenizer_name_or_path: str | None) -> str:
    """The tokenizer of a resumed run: the checkpoint's own, never one trained again on what may be other data (its
    ids would no longer match the checkpoint's embeddings). A `--tokenizer_name_or_path` must be that same one."""
    if not any((Path(checkpoint) / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(
            f"Resuming from {checkpoint}, which holds no tokenizer ({' or '.join(TOKENIZER_FILES)}): its embeddings "
            "belong to a tokenizer that is not there. Pass --resume_from_checkpoint with a complete checkpoint, or "
            "another --output_dir to start afresh."
        )
    if tokenizer_name_or_path is not None:
        given = AutoTokenizer.from_pretrained(tokenizer_name_or_path)
        add_multimodal_tokens(given)
        if given.get_vocab() != AutoTokenizer.from_pretrained(checkpoint).get_vocab():
            raise ValueError(
                f"--tokenizer_name_or_path {tokenizer_name_or_path} is not the tokenizer of the checkpoint resumed "
                f"({checkpoint}): drop it, or train in another --output_dir."
            )
    logger.info("Resuming from %s with its tokenizer.", checkpoint)
    return checkpoint


def check_evaluation_rows(trainer: MultimodalTrainer, evaluation: dict[str, AnyDataset]) -> None:
    """Before training: every evaluation split must have a row that evaluation can use, or the run would fail after
    its training. Rows that a collator cannot use (a bad medium or text, a prompt longer than the room left) are
    counted in a warning: the loss skips them, and the predictions file writes them as skipped, with the reason."""
    for name, split in evaluation.items():
        if not isinstance(split, Sized):
            continue  # a stream: its rows are checked as they come
        reasons = trainer.unusable_evaluation_rows(split)
        if not reasons:
            continue
        first = min(reasons)
        if len(reasons) == len(split):
            raise ValueError(f"No row of the {name!r} split is usable (row {first}: {reasons[first]}).")
        logger.warning(
            "%d of %d rows of the %r split cannot be evaluated (row %d: %s): the loss skips them and the predictions "
            "file writes them as skipped.",
            len(reasons),
            len(split),
            name,
            first,
            reasons[first],
        )


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


def set_decoding_defaults(model: torch.nn.Module, processor: Any, data_args: DataArguments) -> None:
    """The run's decoding settings go into the saved `generation_config.json`, so that a bare `generate()` and the
    pipelines decode the trained model as its evaluation did; prompts are padded on the left for batched generation
    (also for a checkpoint saved before processors did so)."""
    model.generation_config.max_new_tokens = data_args.max_new_tokens
    model.generation_config.num_beams = data_args.num_beams
    processor.tokenizer.padding_side = "left"


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
