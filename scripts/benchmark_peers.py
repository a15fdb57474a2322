#!/usr/bin/env python
"""`multimodal-gpt benchmark peers` (see multimodal_gpt.benchmarks.peers), for a checkout."""

from multimodal_gpt.benchmarks.peers import main

if __name__ == "__main__":
    main()
