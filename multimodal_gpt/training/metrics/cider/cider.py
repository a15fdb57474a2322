"""CIDEr-D (coco-caption) as an `evaluate` metric module shipped with multimodal_gpt.

Load it offline by path: `evaluate.load(multimodal_gpt.training.metrics.metric_path("cider"))`. The computation is
`multimodal_gpt.training.metrics.cider`, matching pycocoevalcap's `Cider()`.
"""

import evaluate

from multimodal_gpt.training.metrics.modules import metric_info
from multimodal_gpt.training.metrics.scores import cider

_DESCRIPTION = """\
CIDEr-D as the coco-caption toolkit computes it: per n-gram order (1..4) the tf-idf vectors of a caption and of each
reference (idf from the evaluated corpus's references), their cosine with the hypothesis counts clipped by the
reference's, a Gaussian penalty on the length difference (sigma 6), averaged over orders and references, x 10; the
corpus score is the mean over images. Because the idf comes from the evaluated set, a single image always scores 0.
Text is lowercased and stripped of punctuation.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one caption per image.
    references (`list[list[str]]`): the reference captions of each image.
    sigma (`float`, *optional*, defaults to 6.0): standard deviation of the length penalty, in tokens.
Returns:
    cider (`float`): corpus CIDEr-D (coco-caption's x10 scale).
Examples:
    >>> cider = evaluate.load(metric_path("cider"))
    >>> cider.compute(predictions=["a cat sits", "a dog runs"], references=[["a cat sits"], ["a dog runs"]])
    {'cider': 7.500000000000001}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CIDER(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info(
            _DESCRIPTION,
            _KWARGS_DESCRIPTION,
            citations=("vedantam2015",),
            codebase_urls=["https://github.com/tylin/coco-caption"],
            reference_urls=["https://arxiv.org/abs/1411.5726"],
        )

    def _compute(self, predictions: list[str], references: list, sigma: float = 6.0) -> dict[str, float]:
        return {"cider": cider(predictions, references, sigma=sigma)}
