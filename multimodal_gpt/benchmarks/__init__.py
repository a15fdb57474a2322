"""Benchmarks that ship with the package: `peers` measures MultimodalGPT against the Transformers models it replaces
(VisionEncoderDecoder, LLaVA-HF, SpeechEncoderDecoder) and GPT-2 alone; `scripts/benchmark_peers.py` runs it."""

from .measure import PRECISIONS, benchmark_settings, measure_systems
from .peers import ISSUE_SHAPES, SYSTEM_NAMES, TINY_SHAPES, PeerShapes, System, benchmark_tokenizer, build_systems
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
