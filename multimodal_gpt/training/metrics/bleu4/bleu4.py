"""COCO-caption BLEU-4 as an `evaluate` metric module shipped with multimodal_gpt.

Load it offline by path: `evaluate.load(multimodal_gpt.training.metrics.metric_path("bleu4"))`. The computation is
`multimodal_gpt.training.metrics.bleu4`, matching pycocoevalcap's `Bleu(4)`.
"""

import evaluate

from multimodal_gpt.training.metrics.modules import TEXT_FEATURES
from multimodal_gpt.training.metrics.scores import bleu4

_CITATION = """\
@inproceedings{papineni2002bleu,
  title = {{BLEU}: a Method for Automatic Evaluation of Machine Translation},
  author = {Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing},
  booktitle = {Proceedings of the 40th Annual Meeting of the Association for Computational Linguistics},
  pages = {311--318},
  year = {2002}
}
@article{chen2015microsoft,
  title = {Microsoft {COCO} Captions: Data Collection and Evaluation Server},
  author = {Chen, Xinlei and Fang, Hao and Lin, Tsung-Yi and Vedantam, Ramakrishna and Gupta, Saurabh and
            Doll{\\'a}r, Piotr and Zitnick, C. Lawrence},
  journal = {arXiv preprint arXiv:1504.00325},
  year = {2015}
}
"""

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
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=TEXT_FEATURES,
            codebase_urls=["https://github.com/tylin/coco-caption"],
            reference_urls=["https://arxiv.org/abs/1504.00325"],
        )

    def _compute(self, predictions: list[str], references: list) -> dict[str, float]:
        return {"bleu4": bleu4(predictions, references)}
