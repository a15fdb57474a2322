"""The offline byte-level BPE tokenizer and the multimodal special tokens, on real Multi30k sentences."""

import gzip
import importlib.util
import itertools
import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, GPT2Tokenizer, GPT2TokenizerFast, PreTrainedTokenizerFast

from multimodal_gpt.training.tokenizer import (
    AUDIO_TOKEN,
    ENDOFTEXT_TOKEN,
    IMAGE_TOKEN,
    PAD_TOKEN,
    add_multimodal_tokens,
    load_or_train_tokenizer,
    train_bpe_tokenizer,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("MMGPT_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
MULTI30K = DATA_DIR / "multi30k"


def read_lines(path: Path, count: int) -> list[str]:
    if not path.is_file():
        pytest.skip(f"{path} is absent: set MMGPT_DATA_DIR to the shared data folder to run this test.")
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [line.strip() for line in itertools.islice(lines, count)]


@pytest.fixture(scope="module")
def train_sentences() -> list[str]:
    return read_lines(MULTI30K / "train.en.gz", 300) + read_lines(MULTI30K / "train.de.gz", 300)


@pytest.fixture(scope="module")
def tokenizer(train_sentences) -> GPT2Tokenizer:
    return train_bpe_tokenizer(train_sentences, vocab_size=1000)


@pytest.fixture(scope="module")
def check_sentences() -> list[str]:
    # Unseen sentences (validation split), plus placeholders, German umlauts, an emoji and odd spacing.
    return (
        read_lines(MULTI30K / "val.en.gz", 20)
        + read_lines(MULTI30K / "val.de.gz", 20)
        + [
            f"{IMAGE_TOKEN} Describe the picture.",
            f"Transcribe:{AUDIO_TOKEN}{IMAGE_TOKEN}  two  spaces\tand a tab\n",
            "Ein Mädchen fährt Fahrrad 🚲 über die Straße.",
        ]
    )


def test_trained_tokenizer_is_gpt2_style(tokenizer):
    assert isinstance(tokenizer, GPT2Tokenizer) and isinstance(tokenizer, PreTrainedTokenizerFast)
    assert len(tokenizer) == 1000
    assert tokenizer.bos_token == tokenizer.eos_token == tokenizer.unk_token == ENDOFTEXT_TOKEN
    assert tokenizer.pad_token == PAD_TOKEN and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.extra_special_tokens == [IMAGE_TOKEN, AUDIO_TOKEN]
    # Like GPT-2: no bos/eos added, a leading space is part of the next token.
    assert tokenizer.tokenize("a man") == ["a", "Ġman"]
    assert tokenizer("a man")["input_ids"] == tokenizer.convert_tokens_to_ids(["a", "Ġman"])


def test_save_and_reload_offline_gives_identical_ids(tokenizer, check_sentences, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    tokenizer_config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "GPT2Tokenizer"
    expected_ids = tokenizer(check_sentences)["input_ids"]
    for reloaded in (AutoTokenizer.from_pretrained(tmp_path), GPT2TokenizerFast.from_pretrained(tmp_path)):
        assert isinstance(reloaded, GPT2Tokenizer)
        assert reloaded(check_sentences)["input_ids"] == expected_ids
        assert len(reloaded) == len(tokenizer)
        assert reloaded.pad_token_id == tokenizer.pad_token_id
        assert reloaded.extra_special_tokens == [IMAGE_TOKEN, AUDIO_TOKEN]
        assert add_multimodal_tokens(reloaded) == add_multimodal_tokens(tokenizer)


def test_media_placeholders_are_single_unsplit_tokens(tokenizer):
    image_id, audio_id = tokenizer.convert_tokens_to_ids([IMAGE_TOKEN, AUDIO_TOKEN])
    text = f"x{IMAGE_TOKEN}y {IMAGE_TOKEN}<image{AUDIO_TOKEN}>{IMAGE_TOKEN}"
    ids = tokenizer(text)["input_ids"]
    assert ids.count(image_id) == 3 and ids.count(audio_id) == 1
    assert tokenizer.tokenize(IMAGE_TOKEN) == [IMAGE_TOKEN]
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(ids, skip_special_tokens=True) == "xy <image>"


def test_decode_inverts_encode_on_real_sentences(tokenizer, check_sentences):
    for sentence in check_sentences:
        assert tokenizer.decode(tokenizer(sentence)["input_ids"]) == sentence


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=100))
def test_byte_level_encodes_any_unicode(tokenizer, text):
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in ids or ENDOFTEXT_TOKEN in text
    assert tokenizer.decode(ids) == text


def plain_gpt2_like_tokenizer(trained: GPT2Tokenizer) -> GPT2Tokenizer:
    """A tokenizer shaped like the real GPT-2 one: `<|endoftext|>` last, no pad, no media tokens."""
    bpe_state = json.loads(trained.backend_tokenizer.to_str())["model"]
    byte_and_merged = [token for token in sorted(bpe_state["vocab"], key=bpe_state["vocab"].get)[4:]]
    vocab = {token: index for index, token in enumerate([*byte_and_merged, ENDOFTEXT_TOKEN])}
    return GPT2Tokenizer(vocab=vocab, merges=[tuple(merge) for merge in bpe_state["merges"]])


def test_add_multimodal_tokens_to_a_gpt2_like_tokenizer_from_a_folder(tokenizer, check_sentences, tmp_path):
    plain = plain_gpt2_like_tokenizer(tokenizer)
    assert plain.pad_token is None and plain.eos_token_id == len(plain) - 1
    plain.save_pretrained(tmp_path / "gpt2")
    plain_ids = plain(check_sentences[:5])["input_ids"]

    extended = load_or_train_tokenizer(str(tmp_path / "gpt2"))
    size = len(plain)
    expected = {"image_token_id": size + 1, "audio_token_id": size + 2, "pad_token_id": size}
    assert add_multimodal_tokens(extended) == expected
    assert add_multimodal_tokens(extended) == expected and len(extended) == size + 3  # idempotent
    assert extended.pad_token == PAD_TOKEN
    assert extended(check_sentences[:5])["input_ids"] == plain_ids  # ordinary text keeps its ids
    assert extended(f"a{IMAGE_TOKEN}b")["input_ids"].count(size + 1) == 1

    extended.save_pretrained(tmp_path / "extended")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "extended")
    assert add_multimodal_tokens(reloaded) == expected and len(reloaded) == size + 3


def test_add_multimodal_tokens_keeps_a_tokenizers_own_pad_and_special_tokens():
    vocab = {"[UNK]": 0, "[PAD]": 1, "<sep2>": 2, "hello": 3, "world": 4}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    word_level = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", extra_special_tokens=["<sep2>"]
    )
    ids = add_multimodal_tokens(word_level)
    assert ids == {"image_token_id": 5, "audio_token_id": 6, "pad_token_id": 1}
    assert word_level.extra_special_tokens == ["<sep2>", IMAGE_TOKEN, AUDIO_TOKEN]
    assert word_level(f"hello{IMAGE_TOKEN}world")["input_ids"] == [3, 5, 4]


def test_load_or_train_tokenizer_trains_or_explains(train_sentences, tmp_path):
    trained = load_or_train_tokenizer(None, texts=iter(train_sentences), vocab_size=600)
    assert isinstance(trained, GPT2Tokenizer) and len(trained) == 600
    with pytest.raises(ValueError, match="neither a tokenizer nor training text"):
        load_or_train_tokenizer(None)
    with pytest.raises(OSError, match="Could not load a tokenizer"):
        load_or_train_tokenizer(str(tmp_path / "missing"), local_files_only=True)
    with pytest.raises(ValueError, match="vocab_size >= 261"):
        train_bpe_tokenizer(train_sentences, vocab_size=100)


def test_train_tokenizer_script(train_sentences, tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("train_tokenizer", REPO_ROOT / "scripts" / "train_tokenizer.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with gzip.open(tmp_path / "text.txt.gz", "wt", encoding="utf-8") as text_file:
        text_file.write("\n".join(train_sentences[:200]))
    with (tmp_path / "captions.jsonl").open("w", encoding="utf-8") as jsonl_file:
        for sentence in train_sentences[200:400]:
            jsonl_file.write(json.dumps({"captions": [sentence, sentence.lower()]}) + "\n")
    arguments = ["--train_files", str(tmp_path / "text.txt.gz"), str(tmp_path / "captions.jsonl")]
    arguments += ["--text_field", "captions", "--vocab_size", "500", "--output_dir", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", ["train_tokenizer.py", *arguments])
    script.main()
    printed = capsys.readouterr().out
    assert "vocab size: 500" in printed and "'<image>'" in printed
    assert len(AutoTokenizer.from_pretrained(tmp_path / "out")) == 500

    monkeypatch.setattr(sys, "argv", ["train_tokenizer.py", *arguments[:3], "--output_dir", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="pass --text_field"):
        script.main()
