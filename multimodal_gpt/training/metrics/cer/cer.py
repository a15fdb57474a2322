"""Character error rate (CER), corpus level, as an `evaluate` metric module shipped with multimodal_gpt.

Load it offline by path: `evaluate.load(multimodal_gpt.training.metrics.metric_path("cer"))`. The computation is
`multimodal_gpt.training.metrics.character_error_rate` (jiwer).
"""

import evaluate

from multimodal_gpt.training.metrics.modules import metric_info
from multimodal_gpt.training.metrics.scores import character_error_rate

_DESCRIPTION = """\
Character error rate: character edit operations / number of reference characters (spaces included), summed over
the whole corpus before dividing. Both sides are normalised first (NFKC, lowercase, apostrophes deleted, other
punctuation replaced by spaces). 0 is perfect. Computed with jiwer.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one transcript per sample.
    references (`list[str]`): one reference transcript per sample (a one-element list per sample is accepted too).
    normalize (`bool`, *optional*, defaults to `True`): normalise both sides first.
Returns:
    cer (`float`): the corpus character error rate, as a fraction.
Examples:
    >>> cer = evaluate.load(metric_path("cer"))
    >>> cer.compute(predictions=["a cat"], references=["a bat"])  # 1 substitution over 5 characters
    {'cer': 0.2}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CER(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info(
            _DESCRIPTION,
            _KWARGS_DESCRIPTION,
            citations=("morris2004",),
            codebase_urls=["https://github.com/jitsi/jiwer"],
            reference_urls=["https://en.wikipedia.org/wiki/Word_error_rate"],
        )

    def _compute(self, predictions: list[str], references: list, normalize: bool = True) -> dict[str, float]:
        return {"cer": character_error_rate(predictions, references, normalize=normalize)}
