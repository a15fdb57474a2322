"""One training run with the standard `Trainer`, as `multimodal-gpt train` (`scripts/train.py`) and the demo start it:
data, model and processor, collators, training with resume, generation-based evaluation of every requested split,
prediction, model card, and one push to the Hub at the end.

A run owns its output folder (a second process on it is refused), continues from the most recently completed
checkpoint after a crash, and, rerun once finished, trains nothing more (see `multimodal_gpt.training.checkpoints`)."""

import contextlib
import copy
import dataclasses
import logging
import os
from collections.abc import Sized
from pathlib import Path
from typing import Any

import torch
from transformers import AutoProcessor, AutoTokenizer, GenerationConfig, TrainingArguments, set_seed
from transformers.trainer_utils import HubStrategy, IntervalStrategy

from ..configuration_multimodal_gpt import add_multimodal_tokens
from ..data.augment import augmentation_from_arguments
from ..data.collators import COLLATORS, EpochCallback
from ..data.feature_cache import cache_media_features
from ..data.sources import AnyDataset, TaskData, load_task_data, training_references, training_texts
from ..modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from .arguments import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_PRESET,
    DEFAULT_VOCAB_SIZE,
    DataArguments,
    ModelArguments,
    check_data_arguments,
    check_generation_arguments,
    check_model_arguments,
)
from .averaging import average_checkpoints, last_checkpoints
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
from .optimization import StagedTrainingCallback
from .outputs import metric_prefix, plot_training_curves, write_predictions
from .presets import build_model_and_processor
from .recipes import check_training_options, media_loss_weight, module_learning_rates, write_recipe_record
from .run_card import run_card_kwargs
from .self_critical import SelfCritical, check_self_critical_arguments, task_reward
from .trainer import MultimodalTrainer, over_the_models_generation_config

logger = logging.getLogger(__name__)


def run(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict[str, Any]:
    """Train, evaluate and predict one task; returns the metrics. The output folder gets a Hub-ready model and
    processor, `all_results.json`, `train_results.json`, `eval_results.json` / `predict_results.json`,
    `predictions_<split>.jsonl` (one line per row) and `loss_curve.png`; with `--push_to_hub`, all of it goes to the
    Hub once, at the end, after evaluation.

    What runs: `--do_train`, `--do_eval` (every `--eval_split_name`) and `--do_predict` (`--predict_split_name`) as
    given; none of them: train, then evaluate. An `--eval_strategy` other than `no` evaluates during training, so it
    trains (the `Trainer` turns `--do_eval` on for it).

    Run state: the main process holds a lock on the output folder for the whole run ([`RunLock`]: a second run on it
    is refused; a crashed one leaves no lock behind). Training resumes from the most recently completed checkpoint
    of the output folder (or `--resume_from_checkpoint`). Once training has finished, `training_complete.json`
    records it: the same command run again trains nothing (it loads the finished model, says so, and evaluates);
    a command with another plan of steps (more epochs, say) goes on from the last checkpoint."""
    # 1. Checks and seed
    check_optional_packages(model_args, training_args)
    check_data_arguments(data_args, training=True)
    check_model_arguments(model_args, data_args)
    check_training_options(model_args, training_args)
    check_self_critical_arguments(model_args, data_args, training_args)
    given_generation_flags(data_args, training_args)
    training_args.remove_unused_columns = False  # the collators read the raw media columns
    if training_args.ddp_find_unused_parameters is None:
        # Every trainable parameter is in the graph of every batch (absent modalities are anchored with 0 x their
        # parameters), so DDP needs no search for unused ones. Left at None, the Trainer would turn that search on
        # for any model without gradient checkpointing: an extra graph traversal per step that also hides bugs.
        training_args.ddp_find_unused_parameters = False
    check_distributed_launch(training_args)
    choose_steps(training_args)
    if data_args.streaming and training_args.do_train and training_args.max_steps <= 0:
        raise ValueError("--streaming gives a training split of unknown length: set --max_steps.")
    pushing = take_over_hub_push(training_args)
    set_seed(training_args.seed)
    is_main = training_args.process_index == 0
    try:
        with RunLock(training_args.output_dir) if is_main else contextlib.nullcontext():
            return _train_and_evaluate(model_args, data_args, training_args, pushing)
    finally:
        training_args.push_to_hub = pushing or training_args.push_to_hub


def choose_steps(training_args: TrainingArguments) -> None:
    """Set `do_train` / `do_eval` / `do_predict` as [`run`] says: an `--eval_strategy` other than `no` trains (the
    `Trainer` turned `do_eval` on for it, which must not read as "evaluate only"), and no step given trains, then
    evaluates."""
    if training_args.eval_strategy != IntervalStrategy.NO and not training_args.do_train:
        logger.info("--eval_strategy %s evaluates during training: training.", training_args.eval_strategy.value)
        training_args.do_train = True
    if not (training_args.do_train or training_args.do_eval or training_args.do_predict):
        training_args.do_train = training_args.do_eval = True


def take_over_hub_push(training_args: TrainingArguments) -> bool:
    """`--push_to_hub` pushes once, at the end of the run, after evaluation (see [`run`]): the `Trainer`'s own pushes
    (at every save, and in `save_model()` right after training) would make a half-trained model, or one without
    its evaluation, the repo's first state. Returns whether to push; the `Trainer` gets `push_to_hub=False` until
    then."""
    if not training_args.push_to_hub:
        return False
    if training_args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
        raise ValueError(
            f"--hub_strategy {training_args.hub_strategy.value} pushes checkpoints during training, but this run "
            "pushes once, at the end, after evaluation (model, results, predictions, loss curve and card): drop "
            "--hub_strategy."
        )
    training_args.push_to_hub = False
    return True


def _train_and_evaluate(
    model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments, pushing: bool
) -> dict[str, Any]:
    # 2. Data (the training split, every evaluation split and the split to predict, checked against the task's
    # columns), and whether this command already ran to its end here
    evaluating = training_args.do_eval or training_args.eval_strategy != IntervalStrategy.NO
    data = load_task_data(
        data_args, train=training_args.do_train, evaluation=evaluating, prediction=training_args.do_predict
    )
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
    # offline tokenizer; then the one generation setting of evaluation
    checkpoint = resume_checkpoint(training_args) if training_args.do_train else None
    model, processor = model_and_processor(model_args, data_args, data, checkpoint)
    set_generation_config(model, data_args, training_args)
    check_generation_arguments(data_args, model.config)
    processor.tokenizer.padding_side = "left"  # batched generation (also for a checkpoint saved before it was set)
    apply_freezing(model, model_args)
    if model_args.lora_r and not is_peft_model(model):
        model = prepare_lora(model, processor, model_args, training_args)
    logger.info("Model: %.2fM parameters, %.2fM trainable", *parameter_counts(model))

    # 4. Collators and trainer (the first evaluation split is the one evaluated during training)
    trainer = build_trainer(model, processor, data, data_args, training_args, model_args)
    check_distributed_engine(trainer)
    check_evaluation_rows(trainer, _evaluated_splits(data, data_args))
    if pushing:
        trainer.init_hf_repo()  # the repo exists (and the token works) before any training

    # 5. Train (resuming from the most recently completed checkpoint of the output folder, or the one given)
    results: dict[str, Any] = {}
    if training_args.do_train:
        results.update(train(trainer, model_args, data, checkpoint, plan))
        if training_args.should_save:
            write_recipe_record(output_dir, model_args.recipe, model_args, data_args, training_args)

    # 6. Evaluate every requested split, with generation and its metrics; one predictions line per row
    if training_args.do_eval:
        for split_name, split in data.evaluation.items():
            prefix = metric_prefix(split_name)
            metrics = trainer.evaluate(split, metric_key_prefix=prefix)
            results.update(_record(trainer, prefix, metrics, output_dir / f"predictions_{split_name}.jsonl"))

    # 7. Predict the --predict_split_name split (trainer.predict(): generated ids, and the same metrics)
    if training_args.do_predict:
        prefix = metric_prefix(data_args.predict_split_name)
        metrics = trainer.predict(data.prediction, metric_key_prefix=prefix).metrics
        predictions = output_dir / f"predictions_{data_args.predict_split_name}.jsonl"
        results.update(_record(trainer, prefix, metrics, predictions, name="predict"))

    # 8. Model card (README.md, with the run's task, data, hyperparameters and results: the folder is a Hub repo) and
    # loss curve
    if training_args.do_train or pushing:
        trainer.model_card_kwargs = run_card_kwargs(
            model_args, data_args, trainer, task=data.task.name, results=results
        )
    if training_args.do_train:
        trainer.create_model_card()
    if trainer.is_world_process_zero() and not finished:  # a finished run's curve stays the one its training drew
        plot_training_curves(trainer.state.log_history, output_dir / "loss_curve.png", title=data_args.task)

    # 9. Push the output folder once, now that it holds the evaluation: model, processor, results, predictions, loss
    # curve and card (every process takes part: saving the model may need them all)
    if pushing:
        training_args.push_to_hub = True  # recorded so in training_args.json
        trainer.push_to_hub(commit_message="End of training, with evaluation")
    return results


def build_trainer(
    model: torch.nn.Module,
    processor: Any,
    data: TaskData,
    data_args: DataArguments,
    training_args: TrainingArguments,
    model_args: ModelArguments | None = None,
) -> MultimodalTrainer:
    """The trainer of a run: the task's training collator (the loss, with the media targets the model predicts and
    the augmentation flags) and generation collator (evaluation), whose prompts may take the positions that
    generation leaves (longer ones are skipped, and counted); with `model_args`, the recipe's staged training and
    per-module learning rates."""
    task = data.task
    collator = COLLATORS[data_args.task](
        processor=processor,
        task=task,
        max_length=data_args.max_length,
        media_targets=tuple(model.config.media_prediction_modalities),
        augmentation=augmentation_from_arguments(data_args, training_args.seed),
        packing=data_args.packing,
    )
    if data_args.cache_media_features and data.train is not None:  # frozen towers encode each medium once
        with training_args.main_process_first(desc="caching media features"):
            data.train = cache_media_features(data.train, model, collator, cache_dir=data_args.cache_dir)
    prompt_room = min(data_args.max_length, model.config.text_config.n_positions - data_args.max_new_tokens)
    generation_collator = COLLATORS[data_args.task](
        processor=processor, task=task, max_length=prompt_room, for_generation=True
    )
    staged = model_args.train_only_fusion_steps if model_args is not None else 0
    return MultimodalTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=next(iter(data.evaluation.values()), None),
        data_collator=collator,
        processing_class=processor,
        callbacks=[EpochCallback(collator)] + ([StagedTrainingCallback(staged)] if staged else []),
        generation_collator=generation_collator,
        module_learning_rates=module_learning_rates(model_args) if model_args is not None else None,
        self_critical=self_critical(model_args, data, data_args, collator, prompt_room),
    )


def self_critical(
    model_args: ModelArguments | None,
    data: TaskData,
    data_args: DataArguments,
    training_collator: Any,
    prompt_room: int,
) -> SelfCritical | None:
    """`--self_critical_samples`: its collator of prompts and references (one of its own, whose stats count the
    training rows), the task's reward, weighed for captioning by the training references, and the training collator
    for `--self_critical_cross_entropy_weight`."""
    if model_args is None or not model_args.self_critical_samples or data.train is None:
        return None
    task = data.task
    collator = COLLATORS[data_args.task](
        processor=training_collator.processor, task=task, max_length=prompt_room, for_generation=True
    )
    training_corpus = training_references(data.train, task) if task.name == "captioning" else ()
    return SelfCritical(
        collator=collator,
        reward=task_reward(task, training_corpus),
        samples=model_args.self_critical_samples,
        max_new_tokens=data_args.max_new_tokens,
        teacher_forced_collator=training_collator,
        cross_entropy_weight=model_args.self_critical_cross_entropy_weight,
    )


def train(
    trainer: MultimodalTrainer, model_args: ModelArguments, data: TaskData, checkpoint: str | None, plan: Any
) -> dict[str, Any]:
    """Train, save the model and processor (and a merged LoRA model if asked), the training metrics and state, and
    mark the run finished; returns the training metrics."""
    training_args, output_dir = trainer.args, Path(trainer.args.output_dir)
    if training_args.should_save:
        forget_finished_run(output_dir)  # a run of another plan: its final model is about to be rewritten
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    if model_args.average_checkpoints:
        average_checkpoints(trainer.model, last_checkpoints(output_dir, model_args.average_checkpoints))
    trainer.save_model()
    if training_args.should_save:  # the main process only: under DDP every rank gets here
        trainer.processing_class.save_pretrained(output_dir)
        if model_args.merge_lora and is_peft_model(trainer.model):
            save_merged_lora(output_dir, output_dir / "merged", trainer.processing_class)
    train_metrics = dict(train_result.metrics, world_size=training_args.world_size)
    if isinstance(data.train, Sized):
        train_metrics["train_samples"] = len(data.train)
    collator = trainer.self_critical.collator if trainer.self_critical is not None else trainer.data_collator
    train_metrics.update({f"collator_{k}": v for k, v in vars(collator.stats).items()})
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()
    if training_args.should_save:
        mark_run_finished(output_dir, plan, trainer.state.global_step)
    return train_metrics


def _record(
    trainer: MultimodalTrainer, prefix: str, metrics: dict[str, Any], predictions: Path, name: str | None = None
) -> dict[str, Any]:
    """Log and save one evaluation's (or the prediction's) metrics, and write its predictions file."""
    trainer.log_metrics(name or prefix, metrics)
    trainer.save_metrics(name or prefix, metrics)
    if prefix in trainer.last_predictions and trainer.is_world_process_zero():
        write_predictions(predictions, trainer.last_predictions[prefix])
    return metrics


def _evaluated_splits(data: TaskData, data_args: DataArguments) -> dict[str, AnyDataset]:
    splits = dict(data.evaluation)
    if data.prediction is not None:
        splits[data_args.predict_split_name] = data.prediction
    return splits


def set_generation_config(
    model: torch.nn.Module,
    data_args: DataArguments,
    training_args: TrainingArguments | None = None,
    generation_config: str | None = None,
) -> GenerationConfig:
    """The one generation setting of evaluation, made the model's `generation_config` (saved with it, so that a bare
    `generate()` and the pipelines decode the trained model as its evaluation did), and written back to every flag
    that names it, so that all read the same values.

    The settings, later ones winning: the model's `generation_config`; `--generation_config` (a file, a folder
    or a Hub id: training's, or `generation_config` for `multimodal-gpt evaluate`), over it: what the file leaves
    unset (beam width, output length, special token ids) stays the model's; then
    `--max_new_tokens` (or its synonym `--generation_max_length`: for this decoder-only model both count the new
    tokens only) and `--num_beams` (or `--generation_num_beams`). Unset: 48 new tokens, greedy.

    Raises:
        `ValueError`: a flag and its synonym given different values.
    """
    max_new_tokens, num_beams = given_generation_flags(data_args, training_args)
    given = generation_config or getattr(training_args, "generation_config", None)
    config = copy.deepcopy(model.generation_config)
    if given is not None:
        config = over_the_models_generation_config(given, model.generation_config)
    config.max_new_tokens = _first_set(max_new_tokens, config.max_new_tokens, DEFAULT_MAX_NEW_TOKENS)
    config.num_beams = _first_set(num_beams, config.num_beams, 1)
    data_args.max_new_tokens, data_args.num_beams = config.max_new_tokens, config.num_beams
    if training_args is not None and hasattr(training_args, "generation_max_length"):  # Seq2SeqTrainingArguments
        training_args.generation_max_length = config.max_new_tokens
        training_args.generation_num_beams = config.num_beams
        training_args.generation_config = config
    model.generation_config = config
    return config


def given_generation_flags(
    data_args: DataArguments, training_args: TrainingArguments | None = None
) -> tuple[int | None, int | None]:
    """The longest output (`--max_new_tokens` or `--generation_max_length`) and beam width (`--num_beams` or
    `--generation_num_beams`) the flags give (`None`: not given); checked before any work.

    Raises:
        `ValueError`: a flag and its synonym given different values.
    """
    max_new_tokens = _one_setting(
        ("--max_new_tokens", data_args.max_new_tokens),
        ("--generation_max_length", getattr(training_args, "generation_max_length", None)),
    )
    num_beams = _one_setting(
        ("--num_beams", data_args.num_beams),
        ("--generation_num_beams", getattr(training_args, "generation_num_beams", None)),
    )
    return max_new_tokens, num_beams


def _one_setting(flag: tuple[str, int | None], synonym: tuple[str, int | None]) -> int | None:
    (name, value), (other_name, other_value) = flag, synonym
    if value is not None and other_value is not None and value != other_value:
        raise ValueError(
            f"{name} {value} and {other_name} {other_value} are the same setting (for this decoder-only model, "
            f"{other_name} counts new tokens too) with different values: give one of them."
        )
    return value if value is not None else other_value


def _first_set(*values: Any) -> Any:
    return next(value for value in values if value is not None)


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
    overrides = {"media_loss_weight": media_loss_weight(model_args)} if model_args.media_loss_weight else {}
    if data.train is None:
        raise ValueError(
            "--do_eval or --do_predict without --do_train evaluates a trained model: pass --model_name_or_path (or "
            "run multimodal-gpt evaluate on it); a new model from --preset has nothing to evaluate."
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
        config_overrides=overrides,
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
    """Before training: every evaluation split (and the split to predict) must have a row that evaluation can use,
    or the run would fail after its training. Rows that a collator cannot use (a bad medium or text, a prompt longer
    than the room left) are counted in a warning: the loss skips them, and the predictions file writes them as
    skipped, with the reason."""
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
    overrides = {"media_loss_weight": media_loss_weight(model_args)} if model_args.media_loss_weight else {}
    if not is_lora_folder(path):
        return MultimodalGPTForConditionalGeneration.from_pretrained(path, **overrides)
    base_path = lora_base_model(path)
    base = MultimodalGPTForConditionalGeneration.from_pretrained(base_path, **overrides)
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
    if model_args.freeze_feature_encoder:
        model.freeze_feature_encoder()


def parameter_counts(model: torch.nn.Module) -> tuple[float, float]:
    total = sum(parameter.numel() for parameter in model.parameters())
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    return total / 1e6, trainable / 1e6
