"""Corpus BLEU (sacreBLEU) as an `evaluate` metric module shipped with multimodal_gpt.

Load it offline by path: `evaluate.load(multimodal_gpt.training.metrics.metric_path("bleu"))`. The computation is
`multimodal_gpt.training.metrics.corpus_bleu` (sacrebleu).
"""

import evaluate

from multimodal_gpt.training.metrics.modules import metric_info
from multimodal_gpt.training.metrics.scores import corpus_bleu

_DESCRIPTION = """\
Corpus BLEU with sacreBLEU's defaults: n-grams up to 4, exponential smoothing, the closest reference length for the
brevity penalty, 13a tokenisation, case-sensitive. The translation score papers report, 0-100.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one detokenised hypothesis per sample.
    references (`list[list[str]]`): per sample, one or more references (a bare string counts as one reference;
        samples may have different numbers of references).
    tokenize (`str`, *optional*, defaults to `"13a"`): sacreBLEU's tokeniser (`"13a"`, `"intl"`, `"none"`, ...).
    lowercase (`bool`, *optional*, defaults to `False`): case-insensitive BLEU.
Returns:
    bleu (`float`): corpus BLEU, 0-100.
Examples:
    >>> bleu = evaluate.load(metric_path("bleu"))
    >>> bleu.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on the mat"]])
    {'bleu': 100.00000000000004}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BLEU(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info(
            _DESCRIPTION,
            _KWARGS_DESCRIPTION,
            citations=("papineni2002", "post2018"),
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
            reference_urls=["https://aclanthology.org/P02-1040/", "https://aclanthology.org/W18-6319/"],
        )

    def _compute(
        self, predictions: list[str], references: list, tokenize: str = "13a", lowercase: bool = False
    ) -> dict[str, float]:
        return {"bleu": corpus_bleu(predictions, references, tokenize=tokenize, lowercase=lowercase)}
