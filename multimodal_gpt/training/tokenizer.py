"""The project's tokenizer: the real GPT-2 one where it can be loaded, else a byte-level BPE trained offline.

Either way the tokenizer ends up with the two media placeholders `<image>` and `<audio>` as special tokens (never
split, one id each) and a pad token. The trained tokenizer is a `GPT2Tokenizer` (in transformers 5.x that class is
the `tokenizers`-backed one; `GPT2TokenizerFast` is an alias of it), so `save_pretrained` writes
`"tokenizer_class": "GPT2Tokenizer"` and the folder reloads offline with `AutoTokenizer` or `GPT2TokenizerFast`.
"""

import json
from collections.abc import Iterable, Sequence
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, GPT2Tokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from ..configuration_multimodal_gpt import AUDIO_TOKEN, IMAGE_TOKEN, PAD_TOKEN, add_multimodal_tokens

# GPT-2's only special token: bos, eos and unk at once.
ENDOFTEXT_TOKEN = "<|endoftext|>"

# Every trained byte-level BPE holds the 256 byte symbols before its first merge.
_NUM_BYTE_SYMBOLS = 256


def _train_backend(
    texts: Iterable[str], vocab_size: int, min_frequency: int, special_tokens: list[str], show_progress: bool
) -> Tokenizer:
    """Train a `tokenizers` byte-level BPE laid out exactly as `GPT2Tokenizer` rebuilds one on load."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special_tokens,
        # All 256 bytes from the start, so that any text encodes, including characters unseen in training.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    backend.train_from_iterator(texts, trainer=trainer, length=len(texts) if isinstance(texts, Sequence) else None)
    return backend


def train_bpe_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 8000,
    *,
    min_frequency: int = 2,
    special_tokens: Sequence[str] = (),
    model_max_length: int = 1024,
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a GPT-2-style byte-level BPE tokenizer on `texts`, for when no pretrained tokenizer is reachable.

    The vocabulary starts with the special tokens (`<|endoftext|>` = 0, `<|pad|>` = 1, `<image>` = 2, `<audio>` = 3,
    then `special_tokens`), then the 256 byte symbols, then the learned merges. Like GPT-2: no prefix space, no
    bos/eos added when encoding, and `decode(encode(text)) == text` for any Unicode text.

    Args:
        texts (`Iterable[str]`): the training text, e.g. one sentence per item; an iterator is consumed once.
        vocab_size (`int`, *optional*, defaults to 8000): the largest vocabulary size, special tokens and bytes
            included (a small corpus may run out of merges before reaching it).
        min_frequency (`int`, *optional*, defaults to 2): a pair must occur this often to be merged.
        special_tokens (`Sequence[str]`, *optional*): more special tokens, besides the four above.
        model_max_length (`int`, *optional*, defaults to 1024): the longest input the model takes (GPT-2's
            `n_positions`), stored for truncation.
        show_progress (`bool`, *optional*, defaults to `False`): show the `tokenizers` trainer's progress bars.

    Returns:
        [`GPT2Tokenizer`]: bos = eos = unk = `<|endoftext|>`, pad = `<|pad|>`, and `<image>` / `<audio>` among its
        `extra_special_tokens`; it pads on the left, as batched generation needs.
    """
    if isinstance(texts, str):
        raise ValueError("`texts` is a single str: pass an iterable of strings (for example a list of sentences).")
    extra_special_tokens = [IMAGE_TOKEN, AUDIO_TOKEN] + [
        token for token in special_tokens if token not in (ENDOFTEXT_TOKEN, PAD_TOKEN, IMAGE_TOKEN, AUDIO_TOKEN)
    ]
    all_special_tokens = [ENDOFTEXT_TOKEN, PAD_TOKEN, *extra_special_tokens]
    smallest = len(all_special_tokens) + _NUM_BYTE_SYMBOLS + 1
    if vocab_size < smallest:
        raise ValueError(
            f"vocab_size={vocab_size} leaves no room for merges: {len(all_special_tokens)} special tokens and "
            f"{_NUM_BYTE_SYMBOLS} byte symbols come first. Use vocab_size >= {smallest} (8000 is a good default)."
        )
    backend = _train_backend(texts, vocab_size, min_frequency, all_special_tokens, show_progress)
    # Build the GPT-2 class from the learned vocabulary and merges (not from the trained backend object): that is
    # exactly how `GPT2Tokenizer.from_pretrained` rebuilds it from tokenizer.json, so ids match after a reload.
    bpe_state = json.loads(backend.to_str())["model"]
    return GPT2Tokenizer(
        vocab=bpe_state["vocab"],
        merges=[tuple(merge) for merge in bpe_state["merges"]],
        unk_token=ENDOFTEXT_TOKEN,
        bos_token=ENDOFTEXT_TOKEN,
        eos_token=ENDOFTEXT_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=extra_special_tokens,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        padding_side="left",  # batched generation continues every prompt at its end; collators pad explicitly
    )


def load_or_train_tokenizer(
    name_or_path: str | None,
    texts: Iterable[str] | None = None,
    *,
    vocab_size: int = 8000,
    min_frequency: int = 2,
    **from_pretrained_kwargs: Any,
) -> PreTrainedTokenizerBase:
    """Load a pretrained tokenizer (then add the multimodal tokens), or train a byte-level BPE one on `texts`.

    Args:
        name_or_path (`str`, *optional*): a Hub id (`"openai-community/gpt2"`) or a local tokenizer folder. When
            given, `texts` is not read. `None` trains a tokenizer on `texts`.
        texts (`Iterable[str]`, *optional*): training text, used only when `name_or_path` is `None`.
        vocab_size (`int`, *optional*, defaults to 8000): vocabulary size of a trained tokenizer.
        min_frequency (`int`, *optional*, defaults to 2): minimum pair frequency of a trained tokenizer.
        from_pretrained_kwargs: passed to `AutoTokenizer.from_pretrained` (e.g. `revision`, `local_files_only`).

    Returns:
        [`PreTrainedTokenizerBase`]: a tokenizer with `<image>`, `<audio>` and a pad token, padding on the left.
    """
    if name_or_path is None:
        if texts is None:
            raise ValueError(
                "Got neither a tokenizer nor training text: pass `name_or_path` (a Hub id or a local tokenizer "
                "folder) or `texts` to train a byte-level BPE tokenizer on."
            )
        return train_bpe_tokenizer(texts, vocab_size, min_frequency=min_frequency)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **from_pretrained_kwargs)
    except OSError as error:
        raise OSError(
            f"Could not load a tokenizer from {name_or_path!r}. Offline, pass a local folder that holds one, or "
            f"pass `name_or_path=None` with `texts` to train a byte-level BPE tokenizer instead. Cause: {error}"
        ) from error
    add_multimodal_tokens(tokenizer)
    tokenizer.padding_side = "left"  # saved with the processor: batched generation pads prompts on the left
    return tokenizer


__all__ = [
    "AUDIO_TOKEN",
    "ENDOFTEXT_TOKEN",
    "IMAGE_TOKEN",
    "PAD_TOKEN",
    "add_multimodal_tokens",
    "load_or_train_tokenizer",
    "train_bpe_tokenizer",
]
