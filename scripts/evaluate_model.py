#!/usr/bin/env python
"""Score any checkpoint on any split of the data layout, with generation, and write the metrics as JSON.

    python scripts/evaluate_model.py --model_name_or_path runs/asr --task asr --split validation
    python scripts/evaluate_model.py --model_name_or_path runs/translation --task translation --split test \
        --output_file results/translation_test.json

Metric keys: eval_wer / eval_cer (asr), eval_bleu / eval_chrf (translation, mmt), eval_bleu4 / eval_cider
(captioning). The predictions go next to the JSON file, one JSON object a line (<output_file stem>.jsonl).
"""

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from transformers import AutoProcessor, HfArgumentParser

from multimodal_gpt import MultimodalGPTForConditionalGeneration
from multimodal_gpt.data.collators import COLLATORS
from multimodal_gpt.data.sources import load_task_splits
from multimodal_gpt.training import DataArguments, generate_predictions
from multimodal_gpt.training.metrics import compute_metrics_for_task
from multimodal_gpt.training.outputs import describe_inputs, write_predictions
from multimodal_gpt.training.run import task_for


@dataclass
class EvaluateArguments:
    model_name_or_path: str = field(metadata={"help": "The checkpoint folder (or Hub id) to score."})
    split: str = field(default="validation", metadata={"help": "The split to score: train, validation or test."})
    # --task, --dataset, --data_dir, --max_eval_samples, --max_new_tokens, --num_beams...: see DataArguments
    output_file: str | None = field(
        default=None, metadata={"help": "Where the metrics JSON goes. Default: <checkpoint>/eval_<task>_<split>.json."}
    )
    batch_size: int = field(default=16, metadata={"help": "Generation batch size."})
    device: str = field(default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "cpu or cuda."})


def main(argv: list[str] | None = None) -> dict[str, float]:
    # 1. Parse input arguments: the checkpoint, and the data arguments shared with train.py
    parser = HfArgumentParser((EvaluateArguments, DataArguments))
    argv = sys.argv[1:] if argv is None else argv
    evaluate_args, data_args = parser.parse_args_into_dataclasses(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    if data_args.task not in ("captioning", "translation", "asr", "mmt"):
        raise ValueError(f"--task must be captioning, translation, asr or mmt, got {data_args.task!r}.")

    # 2. Load the model, its processor and the split
    model = MultimodalGPTForConditionalGeneration.from_pretrained(evaluate_args.model_name_or_path)
    model.to(evaluate_args.device)
    processor = AutoProcessor.from_pretrained(evaluate_args.model_name_or_path)
    splits = load_task_splits(data_args)
    if evaluate_args.split not in splits:
        raise ValueError(f"No split {evaluate_args.split!r} for task {data_args.task}: choose one of {list(splits)}.")
    dataset = splits[evaluate_args.split]

    # 3. Generate, strip the prompts, score
    collator = COLLATORS[data_args.task](
        processor=processor, task=task_for(data_args), max_length=data_args.max_length, for_generation=True
    )
    predictions, references = generate_predictions(
        model,
        collator,
        dataset,
        batch_size=evaluate_args.batch_size,
        max_new_tokens=data_args.max_new_tokens,
        num_beams=data_args.num_beams,
    )
    metrics = {
        f"eval_{name}": value
        for name, value in compute_metrics_for_task(data_args.task, predictions, references).items()
    }
    metrics["eval_samples"] = len(predictions)

    # 4. Write the metrics and the predictions
    output_file = Path(
        evaluate_args.output_file
        or Path(evaluate_args.model_name_or_path) / f"eval_{data_args.task}_{evaluate_args.split}.json"
    )
    output_file.parent.mkdir(parents=True, exist_ok=True)
    output_file.write_text(json.dumps(metrics, indent=2) + "\n")
    write_predictions(
        output_file.with_suffix(".jsonl"), describe_inputs(dataset, data_args.task), predictions, references
    )
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
