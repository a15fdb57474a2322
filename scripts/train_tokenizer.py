#!/usr/bin/env python
"""Train the project's byte-level BPE tokenizer offline and save it as a GPT-2 tokenizer.

For machines that cannot reach the Hugging Face Hub (so no pretrained GPT-2 tokenizer): the saved folder loads with
`AutoTokenizer.from_pretrained(output_dir)` and already holds the `<image>`, `<audio>` and `<|pad|>` special tokens.

Example (Multi30k English and German, and the Flickr8k captions):

    python scripts/train_tokenizer.py \
        --train_files ../shared/data/multi30k/train.en.gz ../shared/data/multi30k/train.de.gz \
            ../shared/data/flickr8k/train.jsonl \
        --text_field flickr8k_captions --vocab_size 8000 --output_dir tokenizers/bpe-8k
"""

import gzip
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoTokenizer, HfArgumentParser

from multimodal_gpt.training.tokenizer import IMAGE_TOKEN, train_bpe_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class TokenizerTrainingArguments:
    """What to train the tokenizer on, how big to make it, and where to save it."""

    train_files: list[str] = field(
        metadata={
            "help": "Text files to train on: plain text (one text a line), or JSON Lines (.jsonl, one object a line, "
            "text in --text_field); any of them may be gzip-compressed (.gz)."
        }
    )
    output_dir: str = field(metadata={"help": "Folder to save the tokenizer to (created if missing)."})
    text_field: str | None = field(
        default=None,
        metadata={
            "help": "For .jsonl files: the field holding the text, a string or a list of strings (e.g. "
            "'flickr8k_captions'). Required when a .jsonl file is given."
        },
    )
    vocab_size: int = field(
        default=8000, metadata={"help": "Vocabulary size, special tokens and the 256 byte symbols included."}
    )
    min_frequency: int = field(default=2, metadata={"help": "A pair must occur this many times to be merged."})
    max_lines_per_file: int | None = field(
        default=None, metadata={"help": "Read at most this many lines of each file (for quick runs); all by default."}
    )
    example_text: str = field(
        default=f"{IMAGE_TOKEN} A little girl climbing into a wooden playhouse.",
        metadata={"help": "A text to tokenise and print once training is done, as a check."},
    )


def _is_jsonl(path: Path) -> bool:
    return path.name.removesuffix(".gz").endswith((".jsonl", ".json"))


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def _texts_of_record(record: dict, text_field: str, path: Path, line_number: int) -> list[str]:
    if text_field not in record:
        raise ValueError(
            f"--text_field '{text_field}' not found in {path} line {line_number}; its fields are {sorted(record)}."
        )
    value = record[text_field]
    return [value] if isinstance(value, str) else list(value)


def read_texts(path: Path, text_field: str | None, max_lines: int | None) -> Iterator[str]:
    """Yield the non-empty texts of one file: each line of a text file, or `text_field` of each JSON line."""
    if _is_jsonl(path) and text_field is None:
        raise ValueError(f"{path} is JSON Lines: pass --text_field to say which field holds the text.")
    with _open_text(path) as lines:
        for line_number, line in enumerate(lines, start=1):
            if max_lines is not None and line_number > max_lines:
                break
            line = line.strip()
            if not line:
                continue
            if _is_jsonl(path):
                yield from _texts_of_record(json.loads(line), text_field, path, line_number)
            else:
                yield line


def read_all_texts(args: TokenizerTrainingArguments) -> list[str]:
    texts = []
    for name in args.train_files:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"--train_files: {path} does not exist or is not a file.")
        file_texts = list(read_texts(path, args.text_field, args.max_lines_per_file))
        logger.info(f"Read {len(file_texts):,} texts from {path}")
        texts.extend(file_texts)
    if not texts:
        raise ValueError(f"No text found in {args.train_files}: check the files and --text_field.")
    return texts


def main() -> None:
    # 1. Parse input arguments
    parser = HfArgumentParser(TokenizerTrainingArguments)
    if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        (args,) = parser.parse_json_file(json_file=sys.argv[1])
    else:
        (args,) = parser.parse_args_into_dataclasses()

    # 2. Set up logging
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
        level=logging.INFO,
    )

    # 3. Read the training text
    texts = read_all_texts(args)
    logger.info(f"Training on {len(texts):,} texts, {sum(len(text) for text in texts):,} characters")

    # 4. Train the byte-level BPE tokenizer
    tokenizer = train_bpe_tokenizer(texts, args.vocab_size, min_frequency=args.min_frequency, show_progress=True)

    # 5. Save it, and check that it reloads as a GPT-2 tokenizer with the same ids
    tokenizer.save_pretrained(args.output_dir)
    reloaded = AutoTokenizer.from_pretrained(args.output_dir)
    example_ids = tokenizer(args.example_text)["input_ids"]
    if reloaded(args.example_text)["input_ids"] != example_ids:
        raise RuntimeError(f"The tokenizer saved to {args.output_dir} gives other ids once reloaded.")
    logger.info(f"Saved a {type(reloaded).__name__} to {args.output_dir}")

    # 6. Show the vocabulary and a tokenised example
    print(f"vocab size: {len(tokenizer)} (asked for {args.vocab_size})")
    print(f"special tokens: {tokenizer.all_special_tokens} -> ids {tokenizer.all_special_ids}")
    print(f"example: {args.example_text!r}")
    print(f"tokens: {tokenizer.convert_ids_to_tokens(example_ids)}")
    print(f"ids: {example_ids}")


if __name__ == "__main__":
    main()
