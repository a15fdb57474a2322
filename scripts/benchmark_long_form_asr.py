#!/usr/bin/env python
"""`multimodal-gpt benchmark long_form_asr` (see multimodal_gpt.benchmarks.long_form_asr), for a checkout."""

from multimodal_gpt.benchmarks.long_form_asr import main

if __name__ == "__main__":
    main()
