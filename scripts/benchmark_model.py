#!/usr/bin/env python
"""`multimodal-gpt benchmark model` (see multimodal_gpt.benchmarks.model), for a checkout."""

from multimodal_gpt.benchmarks.model import main

if __name__ == "__main__":
    main()
