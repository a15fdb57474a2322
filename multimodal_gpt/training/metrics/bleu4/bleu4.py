"""COCO-caption BLEU-4 as an `evaluate` metric module shipped with multimodal_gpt.

Load it offline by path: `evaluate.load(multimodal_gpt.training.metrics.metric_path("bleu4"))`. The computation is
`multimodal_gpt.training.metrics.bleu4`, matching pycocoevalcap's `Bleu(4)`.
"""

import evaluate

from multimodal_gpt.training.metrics.modules import metric_info
from multimodal_gpt.training.metrics.scores import bleu4

_DESCRIPTION = """\
BLEU-4 as the coco-caption toolkit computes it for image captioning (pycocoevalcap's BleuScorer, option "closest"):
clipped n-gram matches and totals summed over the corpus for n = 1..4, geometric mean of the four precisions with
coco's epsilons and no other smoothing, brevity penalty against the reference length closest to each hypothesis
(ties: the shorter). Text is lowercased and stripped of punctuation, standing in for coco's Java PTB tokenizer.
Reported x 100, the scale captioning papers use.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one caption per image.
    references (`list[list[str]]`): the reference captions of each image.
Returns:
    bleu4 (`float`): coco-caption BLEU-4 x 100.
Examples:
    >>> bleu4 = evaluate.load(metric_path("bleu4"))
    >>> bleu4.compute(predictions=["a dog runs in the park"], references=[["a dog runs in the park", "a dog"]])
    {'bleu4': 99.99999995958336}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BLEU4(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info(
            _DESCRIPTION,
            _KWARGS_DESCRIPTION,
            citations=("papineni2002", "chen2015"),
            codebase_urls=["https://github.com/tylin/coco-caption"],
            reference_urls=["https://arxiv.org/abs/1504.00325"],
        )

    def _compute(self, predictions: list[str], references: list) -> dict[str, float]:
        return {"bleu4": bleu4(predictions, references)}
