"""The computations behind the metric modules: WER/CER (ASR), BLEU/chrF (translation), BLEU-4/CIDEr-D (captions).

Offline, with no metric script fetched from the Hub: WER and CER come from `jiwer`, BLEU and chrF from `sacrebleu`,
and the captioning metrics are implemented here, following the coco-caption toolkit (pycocoevalcap) without its Java
tokenizer. The `evaluate` modules in the sibling folders (`wer/wer.py`, `cer/cer.py`, `bleu/bleu.py`,
`chrf/chrf.py`, `bleu4/bleu4.py`, `cider/cider.py`) call these functions: this file is the one implementation.

| function | task | scale | text processing |
| --- | --- | --- | --- |
| `word_error_rate`, `character_error_rate` | asr | fraction, 0 is perfect (can exceed 1) | `normalize_transcript` |
| `corpus_bleu`, `corpus_chrf` | translation, mmt | 0-100 | sacrebleu defaults (13a tokeniser, case-sensitive) |
| `bleu4` | captioning | 0-100 (coco-caption's 0-1 value x 100) | `normalize_transcript`, whitespace split |
| `cider`, `CiderD` | captioning | coco-caption's CIDEr-D (x10) | `normalize_transcript`, whitespace split |
"""

import math
import unicodedata
from collections import Counter
from collections.abc import Sequence

import jiwer
from sacrebleu.metrics import BLEU, CHRF

# Both kinds of apostrophe are deleted rather than turned into a space, so that "don't" stays one word ("dont").
_APOSTROPHES = frozenset("'\u2019")

# coco-caption's BleuScorer adds these so that a zero count gives a (tiny) score instead of a log(0).
_COCO_TINY = 1e-15
_COCO_SMALL = 1e-9

_CAPTION_MAX_ORDER = 4

# CIDEr's view of a caption: per n-gram order its tf-idf weights and their L2 norm, and the caption's "length".
_TfIdf = tuple[list[dict[tuple[str, ...], float]], list[float], int]


def normalize_transcript(text: str) -> str:
    """Normalise a transcript or caption before scoring.

    Steps: Unicode NFKC; lowercase; delete apostrophes (`'` and `’`, so "Don't" -> "dont"); replace every other
    Unicode punctuation character (categories P*) with a space (so "well-known" -> "well known" and "3.5" -> "3 5");
    collapse runs of whitespace into one space and strip the ends. Symbols (`$`, `%`, `+`, emoji) and digits are kept.

    Args:
        text (`str`): the text to normalise.

    Returns:
        `str`: the normalised text, e.g. `"Hello, World!"` -> `"hello world"`.
    """
    characters = []
    for character in unicodedata.normalize("NFKC", text).lower():
        if character in _APOSTROPHES:
            continue
        characters.append(" " if unicodedata.category(character).startswith("P") else character)
    return " ".join("".join(characters).split())


def check_predictions(predictions: Sequence[str], references: Sequence, argument: str = "references") -> None:
    """Fail fast on the usual mistakes: a bare string, no samples, or a count mismatch."""
    if isinstance(predictions, str) or isinstance(references, str):
        raise ValueError(f"predictions and {argument} must be lists of strings, got a bare str: wrap it in a list.")
    if len(predictions) == 0:
        raise ValueError("Got no predictions: pass at least one (prediction, reference) pair.")
    if len(predictions) != len(references):
        raise ValueError(
            f"Got {len(predictions)} predictions but {len(references)} {argument}: pass exactly one entry of "
            f"{argument} per prediction, in the same order."
        )
    for index, prediction in enumerate(predictions):
        if not isinstance(prediction, str):
            raise ValueError(
                f"predictions[{index}] is a {type(prediction).__name__}, not a str: decode generated ids first "
                "(`tokenizer.batch_decode(ids, skip_special_tokens=True)`)."
            )


def _single_references(references: Sequence[str | Sequence[str]]) -> list[str]:
    """One reference string per sample; a list holding exactly one string is unwrapped."""
    single = []
    for index, reference in enumerate(references):
        if not isinstance(reference, str):
            if len(reference) != 1 or not isinstance(reference[0], str):
                raise ValueError(
                    f"references[{index}] holds {len(reference)} entries, but WER/CER take exactly one reference "
                    "string per sample."
                )
            reference = reference[0]
        single.append(reference)
    return single


def _multi_references(references: Sequence[str | Sequence[str]], argument: str = "references") -> list[list[str]]:
    """A list of reference strings per sample; a bare string counts as one reference."""
    multi = []
    for index, sample_references in enumerate(references):
        sample_references = [sample_references] if isinstance(sample_references, str) else list(sample_references)
        if not sample_references or not all(isinstance(reference, str) for reference in sample_references):
            raise ValueError(
                f"{argument}[{index}] must be a non-empty list of reference strings, got {sample_references!r}."
            )
        multi.append(sample_references)
    return multi


def _error_rate(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]], *, normalize: bool, unit: str
) -> float:
    check_predictions(predictions, references)
    references = _single_references(references)
    if normalize:
        predictions = [normalize_transcript(prediction) for prediction in predictions]
        references = [normalize_transcript(reference) for reference in references]
    if not any(reference.strip() for reference in references):
        raise ValueError(
            f"Every reference is empty{' after normalisation' if normalize else ''}: the {unit} error rate divides "
            f"by the number of reference {unit}s and is undefined. Check the reference column."
        )
    compute = jiwer.wer if unit == "word" else jiwer.cer
    # jiwer takes the reference first; with lists it sums the edit operations over the corpus before dividing.
    return float(compute(list(references), list(predictions)))


def word_error_rate(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]], *, normalize: bool = True
) -> float:
    """Corpus-level word error rate: (substitutions + deletions + insertions) / reference words, summed over samples.

    Args:
        predictions (`Sequence[str]`): one transcript per sample.
        references (`Sequence[str]`): one reference transcript per sample (a one-element list is accepted too).
        normalize (`bool`, *optional*, defaults to `True`): apply `normalize_transcript` to both sides first; with
            `False` only surrounding and repeated whitespace is ignored (jiwer's default).

    Returns:
        `float`: the WER as a fraction (0.0 is perfect; insertions can take it above 1.0).

    Example: reference "a b c", prediction "a x c d": 1 substitution (b -> x) + 1 insertion (d) over 3 reference
    words = 2/3.
    """
    return _error_rate(predictions, references, normalize=normalize, unit="word")


def character_error_rate(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]], *, normalize: bool = True
) -> float:
    """Corpus-level character error rate: character edit operations / reference characters, spaces included.

    Args:
        predictions (`Sequence[str]`): one transcript per sample.
        references (`Sequence[str]`): one reference transcript per sample (a one-element list is accepted too).
        normalize (`bool`, *optional*, defaults to `True`): apply `normalize_transcript` to both sides first.

    Returns:
        `float`: the CER as a fraction (0.0 is perfect).
    """
    return _error_rate(predictions, references, normalize=normalize, unit="character")


def _reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    """Transpose per-sample reference lists into sacrebleu's reference streams; `None` pads missing references."""
    num_streams = max(len(sample_references) for sample_references in references)
    return [
        [sample_references[k] if k < len(sample_references) else None for sample_references in references]
        for k in range(num_streams)
    ]


def corpus_bleu(
    predictions: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    tokenize: str = "13a",
    lowercase: bool = False,
) -> float:
    """Corpus BLEU (sacrebleu, 0-100) with sacrebleu's defaults: 4-grams, exponential smoothing, closest-reference
    brevity penalty, 13a tokenisation, case-sensitive.

    Args:
        predictions (`Sequence[str]`): one detokenised hypothesis per sample.
        references (`Sequence[Sequence[str]]`): per sample, a list of one or more references (a bare string counts
            as one reference; samples may have different numbers of references).
        tokenize (`str`, *optional*, defaults to `"13a"`): sacrebleu tokeniser (`"13a"`, `"intl"`, `"none"`, ...).
        lowercase (`bool`, *optional*, defaults to `False`): case-insensitive BLEU.

    Returns:
        `float`: BLEU between 0 and 100.
    """
    check_predictions(predictions, references)
    streams = _reference_streams(_multi_references(references))
    return float(BLEU(tokenize=tokenize, lowercase=lowercase).corpus_score(list(predictions), streams).score)


def corpus_chrf(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> float:
    """Corpus chrF (sacrebleu's default chrF2: character 6-grams, no word n-grams, beta 2, whitespace ignored), 0-100.

    Args:
        predictions (`Sequence[str]`): one hypothesis per sample.
        references (`Sequence[Sequence[str]]`): per sample, a list of one or more references (a bare string counts
            as one reference); with several, each sample is scored against its best-matching reference.

    Returns:
        `float`: chrF between 0 and 100.
    """
    check_predictions(predictions, references)
    streams = _reference_streams(_multi_references(references))
    return float(CHRF().corpus_score(list(predictions), streams).score)


def _caption_tokens(text: str) -> list[str]:
    """Captioning tokenisation: `normalize_transcript` (lowercase, punctuation out), then a whitespace split."""
    return normalize_transcript(text).split()


def _ngram_counts(tokens: list[str], max_order: int = _CAPTION_MAX_ORDER) -> Counter[tuple[str, ...]]:
    return Counter(
        tuple(tokens[i : i + order]) for order in range(1, max_order + 1) for i in range(len(tokens) - order + 1)
    )


def _closest_length(hypothesis_length: int, reference_lengths: list[int]) -> int:
    # coco-caption's "closest" option: ties go to the shorter reference.
    return min(reference_lengths, key=lambda length: (abs(length - hypothesis_length), length))


def _clipped_matches(hypothesis: list[str], references: list[str]) -> tuple[list[int], int]:
    """Per n-gram order, the hypothesis n-grams found in the references (each clipped by its largest count in any
    one reference), and the reference length closest to the hypothesis length."""
    tokenized_references = [_caption_tokens(reference) for reference in references]
    max_reference_counts = Counter()
    for tokens in tokenized_references:
        max_reference_counts |= _ngram_counts(tokens)  # `|` keeps the larger count of each n-gram
    matches = [0] * _CAPTION_MAX_ORDER
    for ngram, count in _ngram_counts(hypothesis).items():
        matches[len(ngram) - 1] += min(count, max_reference_counts[ngram])
    return matches, _closest_length(len(hypothesis), [len(tokens) for tokens in tokenized_references])


def bleu4(predictions: Sequence[str], references_list: Sequence[Sequence[str]]) -> float:
    """COCO-caption BLEU-4, implemented here to match pycocoevalcap's `Bleu(4)` (its `BleuScorer`, option "closest").

    Corpus level: the clipped n-gram matches (clipped by the largest count in any one reference) and the hypothesis
    n-gram totals are summed over all samples for n = 1..4; the score is the geometric mean of the four precisions
    `(matches + 1e-15) / (totals + 1e-9)` (coco's epsilons, no other smoothing) times the brevity penalty
    `exp(1 - r / c)` when `c < r`, where `c` is the total hypothesis length and `r` the sum over samples of the
    reference length closest to each hypothesis (ties: the shorter). Text is tokenised by `normalize_transcript` and a
    whitespace split, standing in for coco's Java PTB tokenizer (which lowercases and drops punctuation).

    Args:
        predictions (`Sequence[str]`): one caption per image.
        references_list (`Sequence[Sequence[str]]`): the reference captions of each image.

    Returns:
        `float`: BLEU-4 on a 0-100 scale (coco-caption's value x 100, the scale papers report).
    """
    check_predictions(predictions, references_list, "references_list")
    references_list = _multi_references(references_list, "references_list")
    matches, totals = [0] * _CAPTION_MAX_ORDER, [0] * _CAPTION_MAX_ORDER
    hypothesis_length = reference_length = 0
    for prediction, references in zip(predictions, references_list):
        hypothesis = _caption_tokens(prediction)
        sample_matches, sample_reference_length = _clipped_matches(hypothesis, references)
        for order in range(1, _CAPTION_MAX_ORDER + 1):
            matches[order - 1] += sample_matches[order - 1]
            totals[order - 1] += max(0, len(hypothesis) - order + 1)
        hypothesis_length += len(hypothesis)
        reference_length += sample_reference_length
    log_precision = (
        sum(math.log((match + _COCO_TINY) / (total + _COCO_SMALL)) for match, total in zip(matches, totals))
        / _CAPTION_MAX_ORDER
    )
    length_ratio = (hypothesis_length + _COCO_TINY) / (reference_length + _COCO_SMALL)
    brevity_penalty = math.exp(1 - 1 / length_ratio) if length_ratio < 1 else 1.0
    return 100.0 * brevity_penalty * math.exp(log_precision)


def _tfidf_vectors(
    counts: Counter[tuple[str, ...]], document_frequency: Counter[tuple[str, ...]], log_num_images: float
) -> _TfIdf:
    """CIDEr's tf-idf vectors, one per n-gram order, their L2 norms, and the sentence "length".

    The idf of an n-gram is log(number of images) - log(max(1, images whose references contain it)); the tf is the
    raw count. The length is the number of bigrams, as in coco-caption (for sentences of two words or more, the
    difference of two such lengths equals the difference of their word counts).
    """
    vectors: list[dict[tuple[str, ...], float]] = [{} for _ in range(_CAPTION_MAX_ORDER)]
    for ngram, term_frequency in counts.items():
        idf = log_num_images - math.log(max(1.0, document_frequency[ngram]))
        vectors[len(ngram) - 1][ngram] = term_frequency * idf
    norms = [math.sqrt(sum(weight * weight for weight in vector.values())) for vector in vectors]
    length = sum(count for ngram, count in counts.items() if len(ngram) == 2)
    return vectors, norms, length


def _cider_similarity(hypothesis: _TfIdf, reference: _TfIdf, sigma: float) -> float:
    """Mean over n-gram orders of the clipped cosine similarity, times the Gaussian length penalty (CIDEr-D)."""
    hypothesis_vectors, hypothesis_norms, hypothesis_length = hypothesis
    reference_vectors, reference_norms, reference_length = reference
    similarities = []
    for order in range(_CAPTION_MAX_ORDER):
        reference_vector = reference_vectors[order]
        # Clipping: a hypothesis n-gram weighs at most what it weighs in the reference (CIDEr-D's anti-gaming rule).
        dot = sum(
            min(weight, reference_vector.get(ngram, 0.0)) * reference_vector.get(ngram, 0.0)
            for ngram, weight in hypothesis_vectors[order].items()
        )
        norm_product = hypothesis_norms[order] * reference_norms[order]
        # A zero norm (no n-gram of this order, or only n-grams found for every image) means no similarity.
        similarities.append(dot / norm_product if norm_product > 0 else 0.0)
    length_penalty = math.exp(-((hypothesis_length - reference_length) ** 2) / (2 * sigma**2))
    return length_penalty * sum(similarities) / _CAPTION_MAX_ORDER


class CiderD:
    """CIDEr-D scores of single captions, with the document frequencies of a fixed corpus of references: what
    self-critical training rewards (the training split's references, as coco-caption's `CiderD(df="coco-train")`),
    and what [`cider`] averages (the evaluated split's own references).

    Args:
        references_list (`Sequence[Sequence[str]]`): the reference captions of each image of the corpus whose document
            frequencies count (an n-gram counts once per image); at least two images, else every idf is 0.
        sigma (`float`, *optional*, defaults to 6.0): standard deviation of the length penalty, in tokens.
    """

    def __init__(self, references_list: Sequence[Sequence[str]], *, sigma: float = 6.0):
        references_list = _multi_references(references_list, "references_list")
        self.document_frequency = Counter(
            ngram
            for references in references_list
            for ngram in set().union(*(_ngram_counts(_caption_tokens(reference)) for reference in references))
        )
        self.log_num_images = math.log(max(len(references_list), 1))
        self.sigma = sigma

    def scores(self, predictions: Sequence[str], references_list: Sequence[Sequence[str]]) -> list[float]:
        """The CIDEr-D of each prediction against its own references (coco-caption scale: x10), with this corpus's
        document frequencies."""
        check_predictions(predictions, references_list, "references_list")
        references_list = _multi_references(references_list, "references_list")
        return [self._score(prediction, references) for prediction, references in zip(predictions, references_list)]

    def _score(self, prediction: str, references: Sequence[str]) -> float:
        hypothesis = self._vectors(_ngram_counts(_caption_tokens(prediction)))
        similarities = [
            _cider_similarity(hypothesis, self._vectors(_ngram_counts(_caption_tokens(reference))), self.sigma)
            for reference in references
        ]
        return 10.0 * sum(similarities) / len(similarities)

    def _vectors(self, counts: Counter[tuple[str, ...]]) -> _TfIdf:
        return _tfidf_vectors(counts, self.document_frequency, self.log_num_images)


def cider(predictions: Sequence[str], references_list: Sequence[Sequence[str]], *, sigma: float = 6.0) -> float:
    """CIDEr-D as computed by coco-caption's `Cider` scorer (pycocoevalcap `CiderScorer`), reimplemented in Python.

    For each image, every caption becomes tf-idf vectors for n = 1..4, with document frequencies counted over the
    reference captions of all images (an n-gram counts once per image) and idf = log(#images) - log(max(1, df)).
    The similarity of the prediction to each reference is the mean over n of the clipped cosine
    `sum_g min(h_g, r_g) * r_g / (|h| |r|)`, times the Gaussian length penalty `exp(-delta^2 / (2 sigma^2))`; the
    image's score is 10 x its mean over references, and the corpus score the mean over images. Because the idf comes
    from the evaluated corpus, the score depends on the whole set: a single image always scores 0 (log 1 = 0), and an
    n-gram found in the references of every image carries no weight. [`CiderD`] scores single captions against
    another corpus's document frequencies.

    Args:
        predictions (`Sequence[str]`): one caption per image.
        references_list (`Sequence[Sequence[str]]`): the reference captions of each image.
        sigma (`float`, *optional*, defaults to 6.0): standard deviation of the length penalty, in tokens.

    Returns:
        `float`: the corpus CIDEr-D (coco-caption scale: x10, so a perfect 4-gram match of every reference gives 10).
    """
    check_predictions(predictions, references_list, "references_list")
    scores = CiderD(references_list, sigma=sigma).scores(predictions, references_list)
    return sum(scores) / len(scores)


__all__ = [
    "CiderD",
    "bleu4",
    "character_error_rate",
    "check_predictions",
    "cider",
    "corpus_bleu",
    "corpus_chrf",
    "normalize_transcript",
    "word_error_rate",
]
