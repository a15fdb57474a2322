"""Metrics checked against hand-computed values (the arithmetic is in the comments) and against coco-caption; the
same values through the `evaluate` modules the package ships, loaded offline by path."""

import json
import math
import os
import socket
import subprocess
import sys
import textwrap

import evaluate
import pytest

from multimodal_gpt.training.metrics import (
    METRIC_NAMES,
    bleu4,
    character_error_rate,
    cider,
    compute_metrics_for_task,
    corpus_bleu,
    corpus_chrf,
    metric_path,
    normalize_transcript,
    word_error_rate,
)


def test_normalize_transcript():
    assert normalize_transcript("  Hello,   World! ") == "hello world"
    # apostrophes are deleted (one word stays one word); other punctuation becomes a space
    assert normalize_transcript("Don’t stop: well-known 3.5") == "dont stop well known 3 5"
    assert normalize_transcript("ÄRGER über $5") == "ärger über $5"


def test_word_error_rate_by_hand():
    # reference "a b c", prediction "a x c d": 1 substitution (b -> x) + 1 insertion (d), 3 reference words -> 2/3
    assert word_error_rate(["a x c d"], ["a b c"]) == pytest.approx(2 / 3)
    # Corpus level sums the errors and the reference words: "hello world" vs "hello there world" adds 1 deletion
    # over 3 words, "one" vs "one two three four five six" 5 deletions over 6 words:
    # (2 + 1 + 5) / (3 + 3 + 6) = 8/12, not the mean of the sentence rates (2/3 + 1/3 + 5/6) / 3 = 11/18.
    predictions = ["a x c d", "hello world", "one"]
    references = ["a b c", "hello there world", "one two three four five six"]
    assert word_error_rate(predictions, references) == pytest.approx(8 / 12)
    assert word_error_rate(references, references) == 0.0


def test_error_rates_normalisation_switch():
    # normalised: "hello world" vs "hello world" -> 0; raw: "Hello," != "hello" and "World!" != "world" -> 2 subs / 2
    assert word_error_rate(["Hello, World!"], ["hello world"]) == 0.0
    assert word_error_rate(["Hello, World!"], ["hello world"], normalize=False) == 1.0
    # one-element reference lists are accepted as single references
    assert word_error_rate(["hello world"], [["hello world"]]) == 0.0


def test_character_error_rate_by_hand():
    # "a cat" vs reference "a bat": 1 substitution over 5 characters (the space counts) -> 1/5
    assert character_error_rate(["a cat"], ["a bat"]) == pytest.approx(1 / 5)
    # corpus level: + "dog" vs "dogs" (1 deletion, 4 chars) -> (1 + 1) / (5 + 4) = 2/9
    assert character_error_rate(["a cat", "dog"], ["a bat", "dogs"]) == pytest.approx(2 / 9)
    assert character_error_rate(["Same text."], ["same text"]) == 0.0


def test_corpus_bleu_by_hand_with_brevity_penalty():
    # hypothesis "the cat sat on the mat" (c = 6 words), reference "the cat sat on the red mat" (r = 7 words):
    #   1-grams: the, cat, sat, on, the, mat all found (reference has "the" twice)    -> 6/6
    #   2-grams: the cat, cat sat, sat on, on the found; "the mat" not               -> 4/5
    #   3-grams: the cat sat, cat sat on, sat on the found; "on the mat" not          -> 3/4
    #   4-grams: the cat sat on, cat sat on the found; "sat on the mat" not           -> 2/3
    #   geometric mean = (1 * 4/5 * 3/4 * 2/3) ** (1/4) = 0.4 ** 0.25 = 0.795271
    #   brevity penalty = exp(1 - r/c) = exp(1 - 7/6) = exp(-1/6) = 0.846482
    #   BLEU = 100 * 0.846482 * 0.795271 = 67.3182
    expected = 100 * math.exp(-1 / 6) * 0.4**0.25
    assert expected == pytest.approx(67.3182, abs=1e-4)
    assert corpus_bleu(["the cat sat on the mat"], [["the cat sat on the red mat"]]) == pytest.approx(expected)
    # A second reference "a cat sat on the mat" holds "the mat", "on the mat" and "sat on the mat", so every
    # precision is 1, and its length 6 is the closest to c = 6, so no brevity penalty: 100.
    two_references = [["the cat sat on the red mat", "a cat sat on the mat"]]
    assert corpus_bleu(["the cat sat on the mat"], two_references) == pytest.approx(100.0)


def test_corpus_bleu_variable_number_of_references_and_perfect():
    predictions = ["the cat sat on the mat", "a dog barks"]
    references = [["the cat sat on the mat", "a cat sat"], ["a dog barks"]]
    assert corpus_bleu(predictions, references) == pytest.approx(100.0)
    assert corpus_bleu(["completely different words here"], [["the cat sat on the mat"]]) < 5.0


def test_corpus_chrf_by_hand():
    # chrF2 (sacrebleu default): "abc" vs "abd", character n-grams with both sides non-empty for n = 1..3 only:
    #   n=1: {a, b, c} vs {a, b, d}: 2 matches -> P = R = 2/3;  n=2: {ab, bc} vs {ab, bd}: P = R = 1/2;
    #   n=3: {abc} vs {abd}: P = R = 0.  Averages: P = R = (2/3 + 1/2 + 0) / 3 = 7/18.
    #   F_beta = (1 + 4) P R / (4 P + R) = P when P = R  ->  100 * 7/18 = 38.889
    assert corpus_chrf(["abc"], [["abd"]]) == pytest.approx(100 * 7 / 18)
    assert corpus_chrf(["the same sentence"], ["the same sentence"]) == pytest.approx(100.0)


def test_bleu4_coco_style_by_hand():
    # Same n-gram arithmetic as the sacrebleu example, after coco-style tokenisation (lowercase, punctuation out),
    # so capitals and the final "." do not matter: 100 * exp(-1/6) * 0.4 ** 0.25 = 67.3182 (coco's epsilons,
    # 1e-15 and 1e-9, move it by less than 1e-6).
    expected = 100 * math.exp(-1 / 6) * 0.4**0.25
    assert bleu4(["The cat sat on the mat."], [["the cat sat on the red mat"]]) == pytest.approx(expected, rel=1e-8)
    # sacrebleu (13a, case-sensitive) sees "The" != "the" and "." as a token, so it scores lower.
    assert corpus_bleu(["The cat sat on the mat."], [["the cat sat on the red mat"]]) < expected
    # closest reference length: refs of 7 and 5 words for a 6-word hypothesis are equally close; coco takes the
    # shorter (5), so c = 6 >= r = 5 and there is no brevity penalty: 100 * 0.4 ** 0.25 = 79.5271
    tie = [["the cat sat on the red mat", "x x x x x"]]
    assert bleu4(["the cat sat on the mat"], tie) == pytest.approx(100 * 0.4**0.25, rel=1e-8)
    assert bleu4(["a dog runs", "two cats sleep here"], [["a dog runs"], ["two cats sleep here"]]) == pytest.approx(
        100.0
    )


def test_cider_by_hand_perfect_and_partial():
    # Two images, one reference each: A "a cat sits", B "a dog runs".  N = 2 images, so idf(g) = log 2 - log df(g).
    # "a" is in both images' references: df = 2, idf = 0; every other n-gram has df = 1, idf = log 2 =: L.
    # Perfect predictions: per order n the tf-idf vectors are equal, so the clipped cosine is 1 for n = 1, 2, 3
    # (n=1: {a: 0, cat: L, sits: L}; n=2: {a cat: L, cat sits: L}; n=3: {a cat sits: L}) and 0 for n = 4 (a
    # 3-word caption has no 4-gram, zero norm). Image score = 10 * (1 + 1 + 1 + 0) / 4 = 7.5; corpus = 7.5.
    references = [["a cat sits"], ["a dog runs"]]
    assert cider(["a cat sits", "a dog runs"], references) == pytest.approx(7.5)
    # Prediction "a cat runs" for A ("runs" is only in B's references, df = 1, idf = L):
    #   n=1: hyp {a: 0, cat: L, runs: L}, ref {a: 0, cat: L, sits: L}: clipped dot = min(L, L) * L = L^2,
    #        norms sqrt(2) L each -> 1/2
    #   n=2: hyp {a cat: L, cat runs: L}, ref {a cat: L, cat sits: L} -> L^2 / (2 L^2) = 1/2
    #   n=3: {a cat runs} vs {a cat sits} -> 0;  n=4: none -> 0
    #   A = 10 * (1/2 + 1/2 + 0 + 0) / 4 = 2.5;  B = 7.5 as above;  corpus = (2.5 + 7.5) / 2 = 5.0
    assert cider(["a cat runs", "a dog runs"], references) == pytest.approx(5.0)


def test_cider_by_hand_length_penalty():
    # Prediction "a cat" for A: n=1: hyp {a: 0, cat: L} (norm L) vs ref {a: 0, cat: L, sits: L} (norm sqrt(2) L):
    #   dot L^2 -> 1/sqrt(2); n=2: {a cat: L} vs {a cat: L, cat sits: L} -> 1/sqrt(2); n=3, 4: 0.
    #   Length (coco counts bigrams): 1 vs 2, delta = -1 -> Gaussian penalty exp(-1 / (2 * 6^2)) = exp(-1/72).
    #   A = 10 * (2 / sqrt(2)) / 4 * exp(-1/72) = 3.5355 * 0.98620 = 3.48677; corpus = (3.48677 + 7.5) / 2 = 5.49338
    expected = (10 * math.sqrt(2) / 4 * math.exp(-1 / 72) + 7.5) / 2
    assert expected == pytest.approx(5.49338, abs=1e-5)
    assert cider(["a cat", "a dog runs"], [["a cat sits"], ["a dog runs"]]) == pytest.approx(expected)


def test_cider_properties():
    # One image: idf = log 1 - log 1 = 0 for every n-gram, so CIDEr is 0 whatever the prediction.
    assert cider(["a cat sits"], [["a cat sits"]]) == 0.0
    # Normalisation: case and punctuation do not matter.
    assert cider(["A cat sits.", "A DOG runs!"], [["a cat sits"], ["a dog runs"]]) == pytest.approx(7.5)
    # Monotone: more matching n-grams score higher.
    references = [["a black cat sits on the mat"], ["a brown dog runs in the park"]]
    scores = [
        cider([prediction, "a brown dog runs in the park"], references)
        for prediction in ("a tree", "a black cat", "a black cat sits", "a black cat sits on the mat")
    ]
    assert scores == sorted(scores) and scores[0] < scores[-1]


def test_captioning_metrics_match_pycocoevalcap():
    # Reference values from pycocoevalcap 1.2 (`Cider().compute_score`, `Bleu(4).compute_score`, Bleu_4 x 100) on
    # these captions after this module's tokenisation (lowercase, punctuation removed).
    predictions = [
        "A dog runs across the grass.",
        "two men are playing football",
        "a child in a red shirt",
        "a woman walks on the street",
    ]
    references = [
        [
            "A brown dog is running through the grass.",
            "A dog runs across a field.",
            "The dog is running on green grass.",
        ],
        ["Two men play soccer on a field.", "Two football players are running.", "Men playing football."],
        ["A little girl in a pink dress.", "A child wearing a red shirt is smiling.", "A kid in red."],
        ["A woman is walking down the street.", "A lady walks on the sidewalk.", "A woman with a bag."],
    ]
    assert cider(predictions, references) == pytest.approx(2.21152736304318, rel=1e-9)
    assert bleu4(predictions, references) == pytest.approx(35.00299868132466, rel=1e-9)


def test_compute_metrics_for_task_keys():
    # CER of "a x c d" vs "a b c": 1 substitution (b -> x) + 2 insertions (" d") over 5 characters = 3/5
    assert compute_metrics_for_task("asr", ["a x c d"], ["a b c"]) == pytest.approx({"wer": 2 / 3, "cer": 3 / 5})
    sentence = "ein hund rennt über die wiese"
    expected = {"bleu": 100.0, "chrf": 100.0}
    assert compute_metrics_for_task("translation", [sentence], [[sentence]]) == pytest.approx(expected)
    assert compute_metrics_for_task("mmt", [sentence], [sentence]) == pytest.approx(expected)
    # Perfect captions of 4+ words: every BLEU precision is 1; every CIDEr order has cosine 1, so 10 * 4/4 = 10.
    # (With 3-word captions BLEU-4 has no 4-gram to count and coco's epsilons give (1e-6) ** (1/4) * 100 = 3.16.)
    captions = ["a cat sits on a mat", "a dog runs in the park"]
    captioning = compute_metrics_for_task("captioning", captions, [[caption] for caption in captions])
    assert captioning == pytest.approx({"bleu4": 100.0, "cider": 10.0})
    with pytest.raises(ValueError, match="Unknown task 'vqa'"):
        compute_metrics_for_task("vqa", ["x"], ["x"])


@pytest.mark.parametrize(
    "metric", [word_error_rate, character_error_rate, corpus_bleu, corpus_chrf, bleu4, cider], ids=lambda f: f.__name__
)
def test_input_errors(metric):
    with pytest.raises(ValueError, match="2 predictions but 1"):
        metric(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="no predictions"):
        metric([], [])
    with pytest.raises(ValueError, match="bare str"):
        metric("a b", ["a b"])
    with pytest.raises(ValueError, match="decode generated ids"):
        metric([[1, 2]], [["a"]])


def test_error_rate_with_only_empty_references():
    with pytest.raises(ValueError, match="Every reference is empty after normalisation"):
        word_error_rate(["something"], ["..."])


# ----- the `evaluate` modules ---------------------------------------------------------------------------------------

COCO_PREDICTIONS = [
    "A dog runs across the grass.",
    "two men are playing football",
    "a child in a red shirt",
    "a woman walks on the street",
]
COCO_REFERENCES = [
    ["A brown dog is running through the grass.", "A dog runs across a field.", "The dog is running on green grass."],
    ["Two men play soccer on a field.", "Two football players are running.", "Men playing football."],
    ["A little girl in a pink dress.", "A child wearing a red shirt is smiling.", "A kid in red."],
    ["A woman is walking down the street.", "A lady walks on the sidewalk.", "A woman with a bag."],
]
# (module, predictions, references, keyword arguments, expected value): the hand-computed values of the tests above
HAND_COMPUTED = [
    ("wer", ["a x c d"], ["a b c"], {}, 2 / 3),
    ("wer", ["a x c d", "hello world", "one"], ["a b c", "hello there world", "one two three four five six"], {},
     8 / 12),
    ("wer", ["Hello, World!"], [["hello world"]], {}, 0.0),
    ("wer", ["Hello, World!"], ["hello world"], {"normalize": False}, 1.0),
    ("cer", ["a cat", "dog"], ["a bat", "dogs"], {}, 2 / 9),
    ("bleu", ["the cat sat on the mat"], [["the cat sat on the red mat"]], {}, 100 * math.exp(-1 / 6) * 0.4**0.25),
    ("bleu", ["the cat sat on the mat"], [["the cat sat on the red mat", "a cat sat on the mat"]], {}, 100.0),
    ("bleu", ["The cat sat on the mat"], ["the cat sat on the mat"], {"lowercase": True}, 100.0),
    ("chrf", ["abc"], [["abd"]], {}, 100 * 7 / 18),
    ("chrf", ["the same sentence"], ["the same sentence"], {}, 100.0),
    ("bleu4", ["the cat sat on the mat"], [["the cat sat on the red mat", "x x x x x"]], {}, 100 * 0.4**0.25),
    ("bleu4", COCO_PREDICTIONS, COCO_REFERENCES, {}, 35.00299868132466),
    ("cider", ["a cat runs", "a dog runs"], [["a cat sits"], ["a dog runs"]], {}, 5.0),
    ("cider", ["a cat", "a dog runs"], [["a cat sits"], ["a dog runs"]], {},
     (10 * math.sqrt(2) / 4 * math.exp(-1 / 72) + 7.5) / 2),
    ("cider", COCO_PREDICTIONS, COCO_REFERENCES, {}, 2.21152736304318),
]  # fmt: skip


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize(
    ("name", "predictions", "references", "kwargs", "expected"),
    HAND_COMPUTED,
    ids=[f"{case[0]}-{index}" for index, case in enumerate(HAND_COMPUTED)],
)
def test_metric_modules_by_path_give_the_hand_computed_values(
    no_network, name, predictions, references, kwargs, expected
):
    module = evaluate.load(metric_path(name))
    assert isinstance(module, evaluate.Metric) and module.name == name
    assert module.compute(predictions=predictions, references=references, **kwargs) == {
        name: pytest.approx(expected, rel=1e-9, abs=1e-12)
    }


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_metric_modules_describe_themselves(name):
    info = evaluate.load(metric_path(name)).info
    assert info.description.strip() and "@" in info.citation and "Args:" in info.inputs_description
    assert [set(features) for features in info.features] == [{"predictions", "references"}] * 2


def test_metric_modules_combine(no_network):
    # the two ASR metrics as one module: "a x c d" vs "a b c" is WER 2/3, CER 3/5 (see test_compute_metrics_for_task)
    asr = evaluate.combine([metric_path("wer"), metric_path("cer")])
    assert asr.compute(predictions=["a x c d"], references=["a b c"]) == pytest.approx({"wer": 2 / 3, "cer": 3 / 5})
    captioning = evaluate.combine([evaluate.load(metric_path("bleu4")), evaluate.load(metric_path("cider"))])
    expected = {"bleu4": 35.00299868132466, "cider": 2.21152736304318}
    assert captioning.compute(predictions=COCO_PREDICTIONS, references=COCO_REFERENCES) == pytest.approx(expected)


def test_metric_path_names_what_is_shipped():
    with pytest.raises(ValueError, match="Unknown metric 'rouge'.*wer, cer, bleu, chrf, bleu4, cider"):
        metric_path("rouge")


OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys

    def refuse(*args, **kwargs):
        raise ConnectionError(f"network access attempted: {args}")

    socket.socket.connect = refuse
    socket.create_connection = refuse
    import evaluate
    from multimodal_gpt.training.metrics import METRIC_NAMES, metric_path

    scores = {}
    for name in METRIC_NAMES:
        scores.update(evaluate.load(metric_path(name)).compute(predictions=["a b c d"], references=[["a b c d"]]))
    json.dump(scores, sys.stdout)
    """
)


def test_metric_modules_load_offline_in_a_fresh_interpreter(tmp_path):
    """Hub offline, the network cut and an empty module cache: `evaluate.load` by path still works."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_EVALUATE_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    scores = json.loads(completed.stdout)
    # one 4-word perfect match: both error rates 0, both BLEUs and chrF 100; CIDEr of one image is 0 (idf log 1 = 0)
    expected = {"wer": 0.0, "cer": 0.0, "bleu": 100.0, "chrf": 100.0, "bleu4": 100.0, "cider": 0.0}
    assert scores == pytest.approx(expected, abs=1e-6)
