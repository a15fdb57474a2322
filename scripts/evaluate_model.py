#!/usr/bin/env python
"""`multimodal-gpt evaluate` (see `multimodal-gpt evaluate --help` and multimodal_gpt.training.cli), for a checkout:
python scripts/evaluate_model.py --model_name_or_path runs/asr --task asr --eval_split_name test"""

from multimodal_gpt.training.cli import evaluate_main

if __name__ == "__main__":
    evaluate_main()
