"""Benchmarks that ship with the package, each a module with `main(argv)` that `multimodal-gpt benchmark <name>` runs:
`model` (parameters and step time per fusion), `data` (the data path's samples/s), `generation` (this package
against a git ref), `long_form_asr` (chunked ASR's WER beyond the window) and `peers` (MultimodalGPT against the
Transformers models it replaces: VisionEncoderDecoder, LLaVA-HF, SpeechEncoderDecoder, and GPT-2 alone; its systems
are built in `peer_systems`, timed in `measure`, reported by `report`)."""

from .measure import PRECISIONS, benchmark_settings, measure_systems
from .peer_systems import (
    ISSUE_SHAPES,
    SYSTEM_NAMES,
    TINY_SHAPES,
    PeerShapes,
    System,
    benchmark_tokenizer,
    build_systems,
)
from .report import write_results

__all__ = [
    "ISSUE_SHAPES",
    "PRECISIONS",
    "SYSTEM_NAMES",
    "TINY_SHAPES",
    "PeerShapes",
    "System",
    "benchmark_settings",
    "benchmark_tokenizer",
    "build_systems",
    "measure_systems",
    "write_results",
]
