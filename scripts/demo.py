#!/usr/bin/env python
"""`multimodal-gpt demo` (see `multimodal-gpt demo --help` and multimodal_gpt.training.demo), for a checkout:
python scripts/demo.py --asr_steps 3000"""

from multimodal_gpt.training.cli import demo_main

if __name__ == "__main__":
    demo_main()
