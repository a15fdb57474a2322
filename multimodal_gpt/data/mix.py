"""The rows of the built-in pretraining mix (columns `text`, `image`, `audio`: file paths, `None` where absent) and
their weighting (`--pretrain_mix`).

Kinds of rows ([`MIX_KINDS`]), from the training (or validation) splits of the built-in corpora:

- `text`: each Multi30k sentence, English and German, alone;
- `text_pair`: an English sentence and its German translation in one row, written as the translation task prompts
  and answers (`tasks.translation_text`: XLM's translation language modelling, a bilingual stream whose next-token
  prediction aligns the two languages, in the format finetuning uses, as the image-text and audio-text rows are in
  the captioning and ASR formats);
- `image_text`: a Flickr8k image with one of its captions (one row per caption);
- `audio_text`: an FSDD or read-speech clip with its transcript;
- `image`, `audio`: the images and clips alone, for next-element prediction of media (`media_loss_weight`).

With weights, each kind makes that share of the rows: the mix keeps the size of its parts together and draws every
kind from its part in a seeded order, repeating a small part as often as its weight asks (one epoch of the mix then
shows a 2,400-clip part many times over); without weights, `text`, `image_text` and `audio_text` are simply joined.
"""

import math
from collections.abc import Callable, Iterable

import numpy as np
from datasets import Dataset, Features, Value, concatenate_datasets

# Media are file paths, `None` where a row has none.
PRETRAIN_FEATURES = Features({"text": Value("string"), "image": Value("string"), "audio": Value("string")})
MIX_KINDS = ("text", "text_pair", "image_text", "audio_text", "image", "audio")
DEFAULT_MIX_KINDS = ("text", "image_text", "audio_text")


def text_rows(texts: Iterable[str]) -> Dataset:
    texts = [text.strip() for text in texts if text.strip()]
    empty = [None] * len(texts)
    return Dataset.from_dict({"text": texts, "image": empty, "audio": empty}, features=PRETRAIN_FEATURES)


def media_rows(column: str, pairs: Iterable[tuple[str, str | None]]) -> Dataset:
    """Rows with a medium in `column` ("image" or "audio") and its text (`None`: a media-only row)."""
    media, texts = zip(*pairs)
    other = "audio" if column == "image" else "image"
    rows = {"text": list(texts), column: list(media), other: [None] * len(texts)}
    return Dataset.from_dict(rows, features=PRETRAIN_FEATURES)


def parse_mix_weights(spec: str) -> dict[str, float]:
    """`"text=1,image_text=2,audio=0.5"` as `{kind: weight}`; kinds not named get 0.

    Raises:
        `ValueError`: an unknown kind, a malformed entry, a negative weight or no positive weight.
    """
    weights = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        kind, separator, value = entry.partition("=")
        kind = kind.strip()
        if not separator or kind not in MIX_KINDS:
            raise ValueError(f"--pretrain_mix entry {entry!r}: write kind=weight with a kind among {list(MIX_KINDS)}.")
        try:
            weights[kind] = float(value)
        except ValueError:
            raise ValueError(f"--pretrain_mix entry {entry!r}: the weight must be a number.") from None
        if not weights[kind] >= 0:
            raise ValueError(f"--pretrain_mix entry {entry!r}: weights must be >= 0.")
    if not any(weight > 0 for weight in weights.values()):
        raise ValueError(f"--pretrain_mix {spec!r} gives no kind a weight above 0.")
    return weights


def weighted_mix(parts: dict[str, Callable[[], Dataset]], weights: dict[str, float] | None, seed: int = 0) -> Dataset:
    """The mix of `parts` (loaders of each kind's rows) with `weights` (`None`: the default kinds joined as they
    are), shuffled with `seed`."""
    if weights is None:
        return concatenate_datasets([parts[kind]() for kind in DEFAULT_MIX_KINDS]).shuffle(seed=seed)
    loaded = {kind: parts[kind]() for kind, weight in weights.items() if weight > 0}
    empty = [kind for kind, rows in loaded.items() if len(rows) == 0]
    if empty:
        raise ValueError(f"--pretrain_mix weights {empty}, which have no rows in this split.")
    total_rows = sum(len(rows) for rows in loaded.values())
    total_weight = sum(weights[kind] for kind in loaded)
    generator = np.random.default_rng(seed)
    drawn = []
    for kind, rows in loaded.items():
        count = max(1, round(total_rows * weights[kind] / total_weight))
        order = np.concatenate([generator.permutation(len(rows)) for _ in range(math.ceil(count / len(rows)))])
        drawn.append(rows.select(order[:count].tolist()))
    return concatenate_datasets(drawn).shuffle(seed=seed)


__all__ = ["MIX_KINDS", "PRETRAIN_FEATURES", "media_rows", "parse_mix_weights", "text_rows", "weighted_mix"]
