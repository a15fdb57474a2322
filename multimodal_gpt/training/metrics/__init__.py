"""Offline metrics for generation-based evaluation, as `evaluate` modules shipped in the package.

- `scores.py`: the computations (WER/CER with jiwer, BLEU/chrF with sacreBLEU, coco-caption BLEU-4 and CIDEr-D);
- `<name>/<name>.py`: one `evaluate.Metric` per metric (`wer`, `cer`, `bleu`, `chrf`, `bleu4`, `cider`), calling
  `scores.py`; `evaluate.load(metric_path(name))` loads one offline, and `evaluate.combine` takes them;
- `modules.py`: `metric_path`, `load_metric`, and `compute_metrics_for_task` (the task's modules, combined).
"""

from .modules import METRIC_NAMES, TASK_METRICS, compute_metrics_for_task, load_metric, metric_path
from .scores import (
    bleu4,
    character_error_rate,
    cider,
    corpus_bleu,
    corpus_chrf,
    normalize_transcript,
    word_error_rate,
)

__all__ = [
    "METRIC_NAMES",
    "TASK_METRICS",
    "bleu4",
    "character_error_rate",
    "cider",
    "compute_metrics_for_task",
    "corpus_bleu",
    "corpus_chrf",
    "load_metric",
    "metric_path",
    "normalize_transcript",
    "word_error_rate",
]
