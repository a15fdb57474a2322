"""Word error rate (WER), corpus level, as an `evaluate` metric module shipped with multimodal_gpt.

Load it offline by path: `evaluate.load(multimodal_gpt.training.metrics.metric_path("wer"))`. The computation is
`multimodal_gpt.training.metrics.word_error_rate` (jiwer).
"""

import evaluate

from multimodal_gpt.training.metrics.modules import metric_info
from multimodal_gpt.training.metrics.scores import word_error_rate

_DESCRIPTION = """\
Word error rate: (substitutions + deletions + insertions) / number of reference words, with the edit operations and
the reference words summed over the whole corpus before dividing (not a mean of sentence rates). Both sides are
normalised first (NFKC, lowercase, apostrophes deleted, other punctuation replaced by spaces). 0 is perfect;
insertions can take it above 1. Computed with jiwer.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one transcript per sample.
    references (`list[str]`): one reference transcript per sample (a one-element list per sample is accepted too).
    normalize (`bool`, *optional*, defaults to `True`): normalise both sides first; with `False` only surrounding and
        repeated whitespace is ignored.
Returns:
    wer (`float`): the corpus word error rate, as a fraction.
Examples:
    >>> wer = evaluate.load(metric_path("wer"))
    >>> wer.compute(predictions=["a x c d"], references=["a b c"])  # 1 substitution + 1 insertion over 3 words
    {'wer': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WER(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info(
            _DESCRIPTION,
            _KWARGS_DESCRIPTION,
            citations=("morris2004",),
            codebase_urls=["https://github.com/jitsi/jiwer"],
            reference_urls=["https://en.wikipedia.org/wiki/Word_error_rate"],
        )

    def _compute(self, predictions: list[str], references: list, normalize: bool = True) -> dict[str, float]:
        return {"wer": word_error_rate(predictions, references, normalize=normalize)}
