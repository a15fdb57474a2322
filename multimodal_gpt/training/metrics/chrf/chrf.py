"""Corpus chrF (sacreBLEU's chrF2) as an `evaluate` metric module shipped with multimodal_gpt.

Load it offline by path: `evaluate.load(multimodal_gpt.training.metrics.metric_path("chrf"))`. The computation is
`multimodal_gpt.training.metrics.corpus_chrf` (sacrebleu).
"""

import evaluate

from multimodal_gpt.training.metrics.modules import metric_info
from multimodal_gpt.training.metrics.scores import corpus_chrf

_DESCRIPTION = """\
Corpus chrF with sacreBLEU's defaults (chrF2): character n-grams up to 6, no word n-grams, beta 2 (recall weighs
twice precision), whitespace ignored; with several references each sample is scored against its best one. 0-100.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one hypothesis per sample.
    references (`list[list[str]]`): per sample, one or more references (a bare string counts as one reference).
Returns:
    chrf (`float`): corpus chrF, 0-100.
Examples:
    >>> chrf = evaluate.load(metric_path("chrf"))
    >>> chrf.compute(predictions=["abc"], references=[["abd"]])  # P = R = (2/3 + 1/2 + 0) / 3
    {'chrf': 38.888888888888886}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CHRF(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info(
            _DESCRIPTION,
            _KWARGS_DESCRIPTION,
            citations=("popovic2015", "post2018"),
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
            reference_urls=["https://aclanthology.org/W15-3049/"],
        )

    def _compute(self, predictions: list[str], references: list) -> dict[str, float]:
        return {"chrf": corpus_chrf(predictions, references)}
