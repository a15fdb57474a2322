"""Training and evaluation with the standard `Trainer`: task data sets, generation-based metrics for this
decoder-only model, the loss-curve plot, and the run itself (`scripts/train.py` and `scripts/demo.py` call `run`)."""

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import AutoProcessor, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from .collators import COLLATORS, EpochCallback, TaskCollator
from .distributed import check_distributed_engine, check_distributed_launch
from .lora import apply_lora, is_lora_folder, is_peft_model, load_lora, lora_base_model, merge_lora
from .metrics import compute_metrics_for_task
from .model_card import run_card_kwargs, write_model_card
from .modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from .presets import build_model_and_processor
from .task_data import load_task_splits, training_texts
from .tasks import get_task

logger = logging.getLogger(__name__)
GENERATION_TASKS = ("captioning", "translation", "asr", "mmt")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A checkpoint folder or Hub id to continue from (e.g. a pretraining run). Default: a new "
            "model from --preset."
        },
    )
    preset: str = field(
        default="small",
        metadata={
            "help": "Named configuration for a new model: 'tiny' (demo, seconds per step) or 'small' (real "
            "data on CPU), or a path to a preset JSON file (see multimodal_gpt/presets/)."
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A GPT-2 tokenizer (folder or Hub id) for a new model. Default: train a byte-level BPE "
            "tokenizer on the training text (offline)."
        },
    )
    vocab_size: int = field(default=8000, metadata={"help": "Vocabulary size of a tokenizer trained here."})
    fusion: str | None = field(
        default=None,
        metadata={"help": "Override the preset's fusion: linear, mlp, resampler or cross_attention."},
    )
    freeze_towers: bool = field(default=False, metadata={"help": "Freeze the vision and audio towers."})
    freeze_language_model: bool = field(default=False, metadata={"help": "Freeze GPT-2 (and its tied head)."})
    train_only_fusion: bool = field(default=False, metadata={"help": "Train only the fusion (LLaVA stage 1)."})
    lora_r: int = field(
        default=0,
        metadata={
            "help": "LoRA rank (0: off, full finetuning). With r > 0 GPT-2 trains through LoRA adapters on its "
            "attention and MLP layers (needs peft: pip install -e '.[peft]'), the fusion in full, the rest frozen; "
            "the output folder holds the adapter. Continuing a LoRA run's folder trains its adapter further."
        },
    )
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scale numerator: updates are scaled alpha / r."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_target_towers: bool = field(
        default=False, metadata={"help": "Also put LoRA on the vision and audio towers' linear layers."}
    )
    lora_train_new_tokens: bool = field(
        default=False,
        metadata={
            "help": "Also train the embedding rows of the tokens added to GPT-2 (<image>, <audio>, <|pad|>), tied "
            "input and output rows together: new and untrained when the base is a pretrained GPT-2."
        },
    )
    merge_lora: bool = field(
        default=False,
        metadata={"help": "After training, also save the model with the adapter merged in, in <output_dir>/merged."},
    )


@dataclass
class DataArguments:
    task: str = field(metadata={"help": "pretrain, captioning, translation, asr or mmt."})
    dataset: str = field(
        default="real",
        metadata={
            "help": "'real': the layouts of ../shared/data (see --data_dir); 'synthetic': the built-in "
            "generated data set (no files needed)."
        },
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "The data folder. Default: $MMGPT_DATA_DIR, else ../shared/data."}
    )
    asr_corpus: str = field(default="fsdd", metadata={"help": "For --task asr: 'fsdd' or 'read_speech'."})
    source_lang: str = field(default="en", metadata={"help": "Translation source language (Multi30k code)."})
    target_lang: str = field(default="de", metadata={"help": "Translation target language (Multi30k code)."})
    text_only: bool = field(
        default=False, metadata={"help": "For --task mmt: drop the images (the text-only baseline on the same rows)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many evaluation rows."})
    max_length: int = field(default=256, metadata={"help": "Longest training sequence, media tokens included."})
    max_new_tokens: int = field(default=48, metadata={"help": "Longest generated output in evaluation."})
    num_beams: int = field(default=1, metadata={"help": "Beam width of generation in evaluation (1: greedy)."})
    eval_splits: str = field(
        default="validation",
        metadata={"help": "Comma-separated splits scored after training (e.g. 'validation,test')."},
    )


# ----- generation-based evaluation ---------------------------------------------------------------------------


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
        """Write this package's model card (`multimodal_gpt.model_card`) into the output folder instead of the
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


# ----- outputs -------------------------------------------------------------------------------------------------


def plot_training_curves(log_history: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path | None:
    """Training and evaluation loss against the step, as a PNG (plus each generation metric, on a second axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry]
    evaluation = [(entry["step"], entry["eval_loss"]) for entry in log_history if "eval_loss" in entry]
    if not train and not evaluation:
        return None
    figure, axis = plt.subplots(figsize=(7, 4))
    for points, label in ((train, "train loss"), (evaluation, "eval loss")):
        if points:
            axis.plot(*zip(*points), marker="o" if len(points) < 30 else None, label=label)
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def write_predictions(
    path: str | os.PathLike, prompts: Sequence[str], predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> None:
    """One JSON object a line: the input, the prediction and its references."""
    with open(path, "w", encoding="utf-8") as file:
        for prompt, prediction, reference in zip(prompts, predictions, references):
            record = {"input": prompt, "prediction": prediction, "references": list(reference)}
            file.write(json.dumps(record, ensure_ascii=False) + "\n")


def describe_inputs(dataset: Dataset, task_name: str) -> list[str]:
    """A short readable description of each row's input, for the predictions file."""
    columns = dataset.column_names
    descriptions = []
    for index in range(len(dataset)):
        row = dataset[index]
        parts = []
        for column in ("source", "image", "audio"):
            if column in columns and row[column] is not None:
                value = row[column]
                parts.append(value if isinstance(value, str) else f"<{column}>")
        descriptions.append(" | ".join(parts) or task_name)
    return descriptions


# ----- the run -------------------------------------------------------------------------------------------------


def run(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict[str, Any]:
    """Train and evaluate one task; returns the metrics. The output folder gets a Hub-ready model and processor,
    `all_results.json`, `eval_results.json`, `predictions_<split>.jsonl` and `loss_curve.png`."""
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

    # 2. Data
    splits = load_task_splits(data_args)
    logger.info("Data: %s", {name: len(split) for name, split in splits.items()})

    # 3. Model and processor: continue a checkpoint, or build the preset with an offline tokenizer
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
    apply_freezing(model, model_args)
    if model_args.lora_r and not is_peft_model(model):
        model = prepare_lora(model, processor, model_args, training_args)
    logger.info("Model: %.2fM parameters, %.2fM trainable", *parameter_counts(model))

    # 4. Collators and trainer
    task = task_for(data_args)
    collator = COLLATORS[data_args.task](processor=processor, task=task, max_length=data_args.max_length)
    generation_collator = COLLATORS[data_args.task](
        processor=processor, task=task, max_length=data_args.max_length, for_generation=True
    )
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

    # 5. Train (resuming from the last checkpoint of the output folder, or the one given)
    results: dict[str, Any] = {}
    output_dir = Path(training_args.output_dir)
    if training_args.do_train:
        checkpoint = training_args.resume_from_checkpoint
        if checkpoint is None and output_dir.is_dir():
            checkpoint = get_last_checkpoint(str(output_dir))
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
        results.update(train_metrics)

    # 6. Evaluate every requested split, with generation and its metrics
    if training_args.do_eval:
        for split_name in [name.strip() for name in data_args.eval_splits.split(",") if name.strip()]:
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
    if trainer.is_world_process_zero():
        plot_training_curves(trainer.state.log_history, output_dir / "loss_curve.png", title=data_args.task)
    return results


def task_for(data_args: DataArguments):
    """The task with the data's language pair, and for `--text_only` mmt the text-only prompt on the same rows."""
    name = data_args.task
    if name == "mmt" and data_args.text_only:
        return get_task("translation")
    return get_task(name)


# ----- LoRA (peft is optional: `multimodal_gpt.lora` imports it only when a LoRA option is used) ----------------


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
    """Wrap `model` with LoRA (see `multimodal_gpt.lora`). The adapter records where its base model is: the
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


__all__ = [
    "DataArguments",
    "ModelArguments",
    "MultimodalTrainer",
    "generate_predictions",
    "plot_training_curves",
    "run",
    "write_predictions",
]
