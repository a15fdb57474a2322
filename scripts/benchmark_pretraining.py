#!/usr/bin/env python
"""Does pretraining pay? See `multimodal_gpt.benchmarks.pretraining` (`--help` for the flags, `--quick` to try it)."""

from multimodal_gpt.benchmarks.pretraining import main

if __name__ == "__main__":
    main()
