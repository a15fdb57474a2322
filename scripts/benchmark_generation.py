#!/usr/bin/env python
"""`multimodal-gpt benchmark generation` (see multimodal_gpt.benchmarks.generation), for a checkout."""

from multimodal_gpt.benchmarks.generation import main

if __name__ == "__main__":
    main()
