"""Scoring a checkpoint on any split of any data source with generation: what `multimodal-gpt evaluate` (and
`scripts/evaluate_model.py`) runs, through [`MultimodalTrainer.predict`].

The data flags are `multimodal-gpt train`'s ([`DataArguments`]): a built-in corpus, a `datasets` data set or data
files, any split names (`--eval_split_name`, several), any columns. No training split is read, and a stream
(`--streaming`) works.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoProcessor

from ..data.sources import load_task_data
from ..modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from .arguments import DataArguments, MultimodalTrainingArguments, check_data_arguments, check_generation_arguments
from .outputs import metric_prefix, write_predictions
from .run import build_trainer, set_generation_config
from .trainer import GENERATION_TASKS

logger = logging.getLogger(__name__)


@dataclass
class EvaluationArguments:
    """The checkpoint to score and where the scores go (the data is given by [`DataArguments`])."""

    model_name_or_path: str = field(metadata={"help": "The checkpoint folder (or Hub id, or LoRA adapter) to score."})
    output_file: str | None = field(
        default=None,
        metadata={
            "help": "Where the metrics JSON goes. Default: <checkpoint>/eval_<task>_<splits>.json (in the working "
            "directory for a Hub id). Each split's predictions go beside it, one line per row: "
            "<output_file stem>_predictions_<split>.jsonl."
        },
    )
    batch_size: int = field(default=16, metadata={"help": "Generation batch size."})
    generation_config: str | None = field(
        default=None,
        metadata={
            "help": "Decode with these generation settings over the checkpoint's: a generation_config.json file "
            "(num_beams, length_penalty, no_repeat_ngram_size...), a folder holding one, or a Hub id; what it leaves "
            "unset (beam width, output length, special token ids) stays the checkpoint's, and --max_new_tokens and "
            "--num_beams still win."
        },
    )
    device: str = field(default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "cpu or cuda."})


def evaluate_checkpoint(evaluation_args: EvaluationArguments, data_args: DataArguments) -> dict[str, float]:
    """Generate for every row of every `--eval_split_name` split and score it with the task's metrics.

    Metric keys are prefixed `eval_` for the `validation` split and with the split's name for the others
    (`test_wer`, `test_2016_flickr_bleu`); `<prefix>_samples` counts the rows scored and `<prefix>_skipped_rows` the
    rows skipped, and the two add up to the lines of that split's predictions file.

    Returns:
        `dict[str, float]`: the metrics of every split, also written to the output file.
    """
    # 1. Checks: the flags, before anything is loaded
    check_data_arguments(data_args, training=False)
    if data_args.task not in GENERATION_TASKS:
        raise ValueError(f"--task must be one of {list(GENERATION_TASKS)} to evaluate, got {data_args.task!r}.")

    # 2. The evaluation splits only (no training split is needed), then the model, its processor and the one
    # generation setting (--generation_config and the flags over the checkpoint's generation_config)
    data = load_task_data(data_args, train=False)
    logger.info("Data from %s: %s", data.source, data.sizes())
    model = MultimodalGPTForConditionalGeneration.from_pretrained(evaluation_args.model_name_or_path)
    processor = AutoProcessor.from_pretrained(evaluation_args.model_name_or_path)
    processor.tokenizer.padding_side = "left"
    set_generation_config(model, data_args, generation_config=evaluation_args.generation_config)
    check_generation_arguments(data_args, model.config)

    # 3. Predict every split with the Trainer (generation, prompts stripped, the task's metrics and the loss); one
    # predictions line per row, skipped rows with their reason
    output_file = Path(evaluation_args.output_file or default_output_file(evaluation_args, data_args))
    output_file.parent.mkdir(parents=True, exist_ok=True)
    arguments = MultimodalTrainingArguments(
        output_dir=str(output_file.parent),
        per_device_eval_batch_size=evaluation_args.batch_size,
        use_cpu=evaluation_args.device == "cpu",
        report_to=[],
        remove_unused_columns=False,
    )
    trainer = build_trainer(model, processor, data, data_args, arguments)
    metrics: dict[str, float] = {}
    for split_name, split in data.evaluation.items():
        prefix = metric_prefix(split_name)
        metrics.update(trainer.predict(split, metric_key_prefix=prefix).metrics)
        predictions = output_file.with_name(f"{output_file.stem}_predictions_{split_name}.jsonl")
        write_predictions(predictions, trainer.last_predictions[prefix])

    # 4. Write the metrics
    output_file.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def default_output_file(evaluation_args: EvaluationArguments, data_args: DataArguments) -> Path:
    """`<checkpoint>/eval_<task>_<split>[_<split>...].json`, in the working directory for a Hub id."""
    checkpoint = Path(evaluation_args.model_name_or_path)
    folder = checkpoint if checkpoint.is_dir() else Path.cwd()
    return folder / f"eval_{data_args.task}_{'_'.join(data_args.eval_split_name)}.json"


__all__ = ["EvaluationArguments", "default_output_file", "evaluate_checkpoint"]
