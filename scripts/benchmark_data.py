#!/usr/bin/env python
"""`multimodal-gpt benchmark data` (see multimodal_gpt.benchmarks.data), for a checkout."""

from multimodal_gpt.benchmarks.data import main

if __name__ == "__main__":
    main()
