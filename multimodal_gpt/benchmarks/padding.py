"""How much of a training batch is padding, before and after packing (`--packing`), on the real corpora.

    python -m multimodal_gpt.benchmarks.padding                              # FSDD, Multi30k, Flickr8k; small preset
    python -m multimodal_gpt.benchmarks.padding --batch_size 64 --num_batches 50 --max_length 512

For each corpus (FSDD for ASR, Multi30k for translation, Flickr8k for captioning, under `--data_dir`), a model's
processor from `--preset` (its tokenizer trained on the training text as `train.py` does, so the token counts are a
real run's), and `--num_batches` random batches of `--batch_size` training rows, collated as training collates them:
one row per sample padded to the longest (`padded`), and packed into rows of at most `--max_length` tokens
(`packed`). A batch's padding is its positions that hold no token of a sample, as a fraction of all its positions
(the decoder runs over every position); the table gives the mean over batches, with the rows and positions per
batch. Media tokens count as tokens. Writes padding.md and padding.json to `--output_dir`.
"""

import argparse
import json
import logging
import random
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

from ..data.collators import COLLATORS
from ..data.sources import load_task_data, training_texts
from ..training.arguments import DataArguments
from ..training.presets import build_model_and_processor

logger = logging.getLogger(__name__)

CORPORA = {"fsdd": "asr", "multi30k": "translation", "flickr8k": "captioning"}


def batch_padding(batch: dict[str, Any], pad_token_id: int) -> dict[str, float]:
    """Rows, positions and the fraction of positions that are padding (the pad token: no sample holds it, since
    `add_multimodal_tokens` gives the tokenizer a pad token of its own), for a padded or a packed batch."""
    positions = batch["input_ids"].numel()
    tokens = int((batch["input_ids"] != pad_token_id).sum())
    return {"rows": len(batch["input_ids"]), "positions": positions, "padding": 1 - tokens / positions}


def corpus_padding(
    corpus: str, *, data_dir: str | None, preset: str, batch_size: int, num_batches: int, max_length: int, seed: int
) -> dict[str, Any]:
    """Padding of `num_batches` random training batches of `corpus`, padded and packed."""
    task = CORPORA[corpus]
    data = load_task_data(DataArguments(task=task, dataset_name=corpus, data_dir=data_dir), evaluation=False)
    _, processor = build_model_and_processor(
        preset, texts=training_texts(data.train, data.task), max_length=max_length
    )
    collators = {
        packed: COLLATORS[task](processor=processor, task=data.task, max_length=max_length, packing=packed)
        for packed in (False, True)
    }
    picker = random.Random(seed)
    measured: dict[str, list[dict[str, float]]] = {"padded": [], "packed": []}
    for _ in range(num_batches):
        rows = [data.train[index] for index in picker.sample(range(len(data.train)), batch_size)]
        for packed, collator in collators.items():
            batch = collator(rows)
            measured["packed" if packed else "padded"].append(batch_padding(batch, processor.tokenizer.pad_token_id))
    summary = {
        layout: {key: statistics.fmean(batch[key] for batch in batches) for key in ("rows", "positions", "padding")}
        for layout, batches in measured.items()
    }
    return {"task": task, "rows_in_split": len(data.train), **summary}


def markdown(results: dict[str, Any], settings: dict[str, Any]) -> str:
    lines = [
        "# Padding in training batches, padded and packed",
        "",
        f"`{settings['command']}`",
        "",
        f"{settings['num_batches']} random training batches of {settings['batch_size']} rows per corpus; preset "
        f"{settings['preset']}; packed rows of at most {settings['max_length']} tokens; means over batches.",
        "",
        "| corpus (task) | padding, padded | padding, packed | rows per batch, padded / packed "
        "| positions per batch, padded / packed | positions saved |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for corpus, result in results.items():
        padded, packed = result["padded"], result["packed"]
        lines.append(
            f"| {corpus} ({result['task']}) | {padded['padding']:.1%} | {packed['padding']:.1%} "
            f"| {padded['rows']:.1f} / {packed['rows']:.1f} | {padded['positions']:,.0f} / {packed['positions']:,.0f} "
            f"| {1 - packed['positions'] / padded['positions']:.1%} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    # 1. Arguments
    parser = argparse.ArgumentParser(
        prog="multimodal-gpt benchmark padding",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--corpora", default=",".join(CORPORA), help=f"Comma-separated, among {list(CORPORA)}.")
    parser.add_argument(
        "--data_dir", help="The folder of the built-in corpora (default: $MMGPT_DATA_DIR, else ../shared/data)."
    )
    parser.add_argument("--preset", default="small", help="The model preset whose processor counts the tokens.")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_batches", type=int, default=20)
    parser.add_argument("--max_length", type=int, default=256, help="Longest row (as train.py's --max_length).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default="runs/benchmark_padding")
    args = parser.parse_args(argv)
    corpora = [corpus.strip() for corpus in args.corpora.split(",") if corpus.strip()]
    if any(corpus not in CORPORA for corpus in corpora):
        raise ValueError(f"--corpora must name some of {list(CORPORA)}, got {corpora}.")
    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.INFO)

    # 2. Each corpus, padded and packed
    results = {}
    for corpus in corpora:
        logger.info("corpus %s", corpus)
        results[corpus] = corpus_padding(
            corpus,
            data_dir=args.data_dir,
            preset=args.preset,
            batch_size=args.batch_size,
            num_batches=args.num_batches,
            max_length=args.max_length,
            seed=args.seed,
        )

    # 3. padding.md and padding.json
    command = shlex.join(
        ["python", "-m", "multimodal_gpt.benchmarks.padding", *(argv if argv is not None else sys.argv[1:])]
    )
    settings = {"command": command, **{key: value for key, value in vars(args).items() if key != "output_dir"}}
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "padding.json").write_text(json.dumps({"settings": settings, "results": results}, indent=2) + "\n")
    table = markdown(results, settings)
    (output_dir / "padding.md").write_text(table)
    print(table)
    return results


if __name__ == "__main__":
    main()
