#!/usr/bin/env python
"""`multimodal-gpt train` (see `multimodal-gpt train --help` and multimodal_gpt.training.cli), for a checkout:
python scripts/train.py --task asr --output_dir runs/asr"""

from multimodal_gpt.training.cli import train_main

if __name__ == "__main__":
    train_main()
