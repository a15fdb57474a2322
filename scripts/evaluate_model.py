#!/usr/bin/env python
"""Score any checkpoint on any split of any data source, with generation, and write the metrics as JSON.

    python scripts/evaluate_model.py --model_name_or_path runs/asr --task asr --eval_split_name validation
    python scripts/evaluate_model.py --model_name_or_path runs/asr --task asr --dataset_name my_speech \
        --text_column_name transcription --eval_split_name test --output_file results/asr_test.json

The data flags are train.py's (--dataset_name, --train_file..., --eval_split_name, the column and language flags,
--streaming...). Metric keys: <prefix>_wer / _cer (asr), _bleu / _chrf (translation, mmt), _bleu4 / _cider
(captioning), with <prefix> 'eval' for the validation split and the split's name otherwise, plus <prefix>_samples
(rows scored) and <prefix>_skipped_rows. Each split's predictions go next to the JSON file, one line per row
(<output_file stem>_predictions_<split>.jsonl). See multimodal_gpt.training.evaluation for the steps.
"""

import json
import logging
import sys

import transformers
from transformers import HfArgumentParser

from multimodal_gpt.training import DataArguments
from multimodal_gpt.training.evaluation import EvaluationArguments, evaluate_checkpoint


def main(argv: list[str] | None = None) -> dict[str, float]:
    # 1. Parse input arguments: the checkpoint, and the data arguments shared with train.py
    parser = HfArgumentParser((EvaluationArguments, DataArguments))
    evaluation_args, data_args = parser.parse_args_into_dataclasses(sys.argv[1:] if argv is None else argv)

    # 2. Logging
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()

    # 3. Generate and score every evaluation split
    metrics = evaluate_checkpoint(evaluation_args, data_args)
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
