#!/usr/bin/env python
"""Train (pretrain or finetune) a multimodal GPT-2 with the standard Trainer, then score it with generation.

    python scripts/train.py --task asr --output_dir runs/asr --num_train_epochs 5
    python scripts/train.py --task captioning --model_name_or_path runs/pretrain --output_dir runs/captioning
    python scripts/train.py --task asr --dataset_name my_speech --text_column_name transcription \
        --eval_split_name test --output_dir runs/my_asr     # your own data: any datasets source, split, columns
    python scripts/train.py config.json      # or config.yaml: the same arguments as a file
    python scripts/train.py --recipe asr --output_dir runs/asr     # a recipe (--recipe pretrain, translation, ...)

Every TrainingArguments flag works too (--learning_rate, --per_device_train_batch_size, --gradient_accumulation_steps,
--resume_from_checkpoint, ...). The output folder holds a Hub-ready model and processor, all_results.json,
eval_results.json, predictions_<split>.jsonl and loss_curve.png.
"""

import logging
import sys

import transformers
from transformers import HfArgumentParser, TrainingArguments

from multimodal_gpt.training import DataArguments, ModelArguments, run
from multimodal_gpt.training.recipes import parse_arguments, parse_config_file


def main(argv: list[str] | None = None) -> dict:
    # 1. Parse input arguments (command line, or one .json / .yaml file)
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        model_args, data_args, training_args = parse_config_file(parser, argv[0])
    else:  # --recipe (multimodal_gpt/training/recipes/): its values are defaults, the flags given win
        model_args, data_args, training_args = parse_arguments(parser, argv)

    # 2. Logging
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()

    # 3. Train and evaluate (see multimodal_gpt.training.run for the steps)
    return run(model_args, data_args, training_args)


if __name__ == "__main__":
    main()
