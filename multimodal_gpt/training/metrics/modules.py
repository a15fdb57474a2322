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

# The BibTeX entries the modules cite (several cite the same papers).
CITATIONS = {
    "morris2004": """@inproceedings{morris2004wer,
  title = {From {WER} and {RIL} to {MER} and {WIL}: improved evaluation measures for connected speech recognition},
  author = {Morris, Andrew Cameron and Maier, Viktoria and Green, Phil},
  booktitle = {Interspeech},
  year = {2004}
}""",
    "papineni2002": """@inproceedings{papineni2002bleu,
  title = {{BLEU}: a Method for Automatic Evaluation of Machine Translation},
  author = {Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing},
  booktitle = {Proceedings of the 40th Annual Meeting of the Association for Computational Linguistics},
  pages = {311--318},
  year = {2002}
}""",
    "post2018": """@inproceedings{post2018call,
  title = {A Call for Clarity in Reporting {BLEU} Scores},
  author = {Post, Matt},
  booktitle = {Proceedings of the Third Conference on Machine Translation: Research Papers},
  pages = {186--191},
  year = {2018}
}""",
    "popovic2015": """@inproceedings{popovic2015chrf,
  title = {chr{F}: character n-gram {F}-score for automatic {MT} evaluation},
  author = {Popovi{\\'c}, Maja},
  booktitle = {Proceedings of the Tenth Workshop on Statistical Machine Translation},
  pages = {392--395},
  year = {2015}
}""",
    "chen2015": """@article{chen2015microsoft,
  title = {Microsoft {COCO} Captions: Data Collection and Evaluation Server},
  author = {Chen, Xinlei and Fang, Hao and Lin, Tsung-Yi and Vedantam, Ramakrishna and Gupta, Saurabh and
            Doll{\\'a}r, Piotr and Zitnick, C. Lawrence},
  journal = {arXiv preprint arXiv:1504.00325},
  year = {2015}
}""",
    "vedantam2015": """@inproceedings{vedantam2015cider,
  title = {{CIDEr}: Consensus-based Image Description Evaluation},
  author = {Vedantam, Ramakrishna and Zitnick, C. Lawrence and Parikh, Devi},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages = {4566--4575},
  year = {2015}
}""",
}


def metric_info(
    description: str,
    inputs_description: str,
    *,
    citations: tuple[str, ...],
    codebase_urls: list[str],
    reference_urls: list[str],
) -> evaluate.MetricInfo:
    """The `MetricInfo` of a module shipped here: its texts, the `CITATIONS` it names, and `TEXT_FEATURES`."""
    return evaluate.MetricInfo(
        description=description,
        citation="\n".join(CITATIONS[key] for key in citations) + "\n",
        inputs_description=inputs_description,
        features=TEXT_FEATURES,
        codebase_urls=codebase_urls,
        reference_urls=reference_urls,
    )


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


__all__ = [
    "CITATIONS",
    "METRIC_NAMES",
    "TASK_METRICS",
    "TEXT_FEATURES",
    "compute_metrics_for_task",
    "load_metric",
    "metric_info",
    "metric_path",
]
