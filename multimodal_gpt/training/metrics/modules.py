"""The metrics as `evaluate` modules shipped inside the package, loaded offline by path.

`evaluate.load("wer")` fetches its script from the Hub. This package ships its own modules instead, one folder each
beside this file (`wer/wer.py`, `cer/cer.py`, `bleu/bleu.py`, `chrf/chrf.py`, `bleu4/bleu4.py`, `cider/cider.py`),
each an `evaluate.Metric` that calls the computation in `scores.py`. `evaluate.load` reads a local path without
touching the network:

```python
import evaluate
from multimodal_gpt.training.metrics import metric_path

wer = evaluate.load(metric_path("wer"))
wer.compute(predictions=["a x c d"], references=["a b c"])            # {'wer': 0.666...}
asr_metrics = evaluate.combine([metric_path("wer"), metric_path("cer")])
```
"""

import functools
from collections.abc import Sequence
from pathlib import Path

import datasets
import evaluate

from .scores import check_predictions

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("wer", "cer", "bleu", "chrf", "bleu4", "cider")
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "asr": ("wer", "cer"),
    "translation": ("bleu", "chrf"),
    "mmt": ("bleu", "chrf"),
    "captioning": ("bleu4", "cider"),
}

# The inputs every module takes: one prediction string per sample, and per sample either one reference string or a
# list of references. `evaluate` picks the first feature set an input matches, so a bare string is never taken for
# a list of characters.
TEXT_FEATURES = [
    datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
    datasets.Features(
        {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
    ),
]


def metric_path(name: str) -> str:
    """The folder of the metric module `name` inside the installed package, for `evaluate.load(path)`.

    Args:
        name (`str`): one of `wer`, `cer`, `bleu`, `chrf`, `bleu4`, `cider`.

    Returns:
        `str`: an absolute folder path holding `<name>.py`.
    """
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}: this package ships {', '.join(METRIC_NAMES)}.")
    return str(METRICS_DIR / name)


@functools.cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    """The module `name` loaded once per process (`evaluate.load(metric_path(name), keep_in_memory=True)`: no cache
    files, so every rank of a distributed run can compute alone)."""
    return evaluate.load(metric_path(name), keep_in_memory=True)


def compute_metrics_for_task(
    task: str, predictions: Sequence[str], references: Sequence[str | Sequence[str]]
) -> dict[str, float]:
    """Score decoded generations with the metric modules of a task, combined (`evaluate.combine`); un-prefixed keys,
    the `Trainer` adds `eval_`.

    Args:
        task (`str`): `"asr"` -> `wer`, `cer`; `"translation"` and `"mmt"` -> `bleu`, `chrf`; `"captioning"` ->
            `bleu4`, `cider`.
        predictions (`Sequence[str]`): one decoded generation per sample.
        references (`Sequence[str] | Sequence[Sequence[str]]`): one reference string per sample for ASR; one or more
            per sample for translation; the list of reference captions of each image for captioning.

    Returns:
        `dict[str, float]`: the metric values, keyed as above.
    """
    if task not in TASK_METRICS:
        raise ValueError(f"Unknown task {task!r}: choose one of {sorted(TASK_METRICS)}.")
    # evaluate's own format check would name feature schemas; this one says what is wrong and how to fix it
    check_predictions(predictions, references)
    metrics = evaluate.combine([load_metric(name) for name in TASK_METRICS[task]])
    return metrics.compute(predictions=list(predictions), references=list(references))


__all__ = ["METRIC_NAMES", "TASK_METRICS", "TEXT_FEATURES", "compute_metrics_for_task", "load_metric", "metric_path"]
