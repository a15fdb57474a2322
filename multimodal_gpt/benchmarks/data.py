"""Measure the data path's throughput: samples per second through loader + processor + collator, per task.

Each task runs on the real data in `../shared/data` (or `$MMGPT_DATA_DIR`): the rows are read by a
`torch.utils.data.DataLoader` over the `datasets.Dataset` that the project's loaders return (media as file paths),
and collated by the task's collator, which decodes the media, runs the processor and builds the batch, exactly as
`Trainer` does with `remove_unused_columns=False`. No model runs. The figure is the median of several timed passes
over the same rows, after one warm-up pass.

Default setup: CLIP's image processor at 224 px and a CLIP-ViT/32 token count (49 tokens an image), wav2vec2's
feature extractor at 16 kHz with wav2vec2's 320x downsampling and a 4x frame reduction (12.5 tokens a second),
and a byte-level BPE tokenizer trained on the training text. Example:

    multimodal-gpt benchmark data --batch_size 16 --num_batches 8 --passes 5
"""

import logging
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    GPT2Config,
    HfArgumentParser,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
)

from ..configuration_multimodal_gpt import MultimodalGPTConfig
from ..data.collators import COLLATORS, TaskCollator
from ..data.corpora import (
    default_data_dir,
    keep_multi30k_rows,
    load_flickr8k,
    load_fsdd,
    load_multi30k,
    load_read_speech,
)
from ..data.tasks import get_task
from ..processing_multimodal_gpt import MultimodalGPTProcessor
from ..training.tokenizer import train_bpe_tokenizer

logger = logging.getLogger(__name__)

BENCHMARKS = (
    "fsdd_asr",
    "read_speech_asr",
    "multi30k_translation",
    "flickr8k_captioning",
    "flickr8k_mmt",
    "pretrain_mix",
)


@dataclass
class BenchmarkArguments:
    """Which benchmarks to run, on how many rows, and the processor's sizes."""

    data_dir: str | None = field(
        default=None, metadata={"help": "The shared data folder; defaults to $MMGPT_DATA_DIR or ../shared/data."}
    )
    benchmarks: list[str] = field(
        default_factory=lambda: list(BENCHMARKS), metadata={"help": f"Benchmarks to run, among {BENCHMARKS}."}
    )
    batch_size: int = field(default=16, metadata={"help": "Rows per batch."})
    num_batches: int = field(
        default=8, metadata={"help": "Batches per timed pass (fewer when a data set is smaller)."}
    )
    passes: int = field(default=5, metadata={"help": "Timed passes; the table shows their median."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes (0: in the main process)."})
    torch_threads: int = field(
        default=1,
        metadata={
            "help": "Torch intra-op threads of the main process. 1, as PyTorch sets in DataLoader workers: the data "
            "path's small tensor ops only lose to thread hand-offs, badly so when other processes load the CPUs."
        },
    )
    image_size: int = field(default=224, metadata={"help": "Image side after CLIP's resize and crop, in pixels."})
    patch_size: int = field(default=32, metadata={"help": "Vision tower patch size: (image_size / patch)^2 tokens."})
    audio_frame_reduction: int = field(default=4, metadata={"help": "Audio frames merged into one token."})
    max_length: int = field(default=1024, metadata={"help": "Longest sequence, media tokens included."})
    vocab_size: int = field(default=8000, metadata={"help": "Vocabulary size of the trained BPE tokenizer."})


@dataclass
class Result:
    name: str
    samples: int
    samples_per_second: float
    slowest_fastest: tuple[float, float]
    ms_per_batch: float
    tokens_per_sample: float
    media_tokens_per_sample: float
    target_tokens_per_sample: float


def training_texts(data_dir: Path) -> list[str]:
    """The training text that the tokenizer learns from: Multi30k en + de, Flickr8k captions, the transcripts."""
    multi30k = load_multi30k(data_dir, split="train")
    texts = list(multi30k["source"]) + list(multi30k["target"])
    texts += [caption for captions in load_flickr8k(data_dir, split="train")["captions"] for caption in captions]
    return texts + list(load_fsdd(data_dir)["text"]) + list(load_read_speech(data_dir)["text"])


def build_processor(args: BenchmarkArguments, tokenizer) -> MultimodalGPTProcessor:
    """A processor whose media token counts are those of a CLIP-ViT + wav2vec2 model of the chosen sizes."""
    config = MultimodalGPTConfig(
        text_config=GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=args.max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=CLIPVisionConfig(image_size=args.image_size, patch_size=args.patch_size),
        audio_config=Wav2Vec2Config(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        audio_token_id=tokenizer.convert_tokens_to_ids("<audio>"),
        audio_frame_reduction=args.audio_frame_reduction,
    )
    size = args.image_size
    return MultimodalGPTProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
        feature_extractor=Wav2Vec2FeatureExtractor(return_attention_mask=True),
        tokenizer=tokenizer,
        media_token_spec=config.media_token_spec(),
    )


def pretraining_mix(data_dir: Path, num_rows: int) -> Dataset:
    """Audio-text (FSDD), image-text (Flickr8k, first caption) and text-only (Multi30k English) rows, interleaved."""
    third = -(-num_rows // 3)
    fsdd = load_fsdd(data_dir).shuffle(seed=0).select(range(third))
    flickr8k = load_flickr8k(data_dir).select(range(third))
    multi30k = load_multi30k(data_dir).select(range(third))
    groups = [
        [{"text": row["text"], "image": None, "audio": row["audio"]} for row in fsdd],
        [{"text": row["captions"][0], "image": row["image"], "audio": None} for row in flickr8k],
        [{"text": row["source"], "image": None, "audio": None} for row in multi30k],
    ]
    rows = [group[index] for index in range(third) for group in groups]
    return Dataset.from_list(rows[:num_rows])


def benchmark_data(name: str, data_dir: Path, num_rows: int) -> tuple[Dataset, str, dict]:
    """The rows of a benchmark (at most `num_rows`), its task name, and task overrides."""
    if name == "fsdd_asr":
        return load_fsdd(data_dir).shuffle(seed=0).select(range(num_rows)), "asr", {}
    if name == "read_speech_asr":
        dataset = load_read_speech(data_dir)
        return dataset.select(range(min(num_rows, len(dataset)))), "asr", {}
    if name == "multi30k_translation":
        return load_multi30k(data_dir).select(range(num_rows)), "translation", {}
    if name == "flickr8k_captioning":
        return load_flickr8k(data_dir).select(range(num_rows)), "captioning", {}
    if name == "flickr8k_mmt":
        dataset = keep_multi30k_rows(load_flickr8k(data_dir))
        return (
            dataset.select(range(min(num_rows, len(dataset)))),
            "mmt",
            dict(source_column="m30_en", target_column="m30_de"),
        )
    if name == "pretrain_mix":
        return pretraining_mix(data_dir, num_rows), "pretrain", {}
    raise ValueError(f"Unknown benchmark {name!r}: choose among {BENCHMARKS}.")


def timed_pass(loader: DataLoader, media_token_ids: list[int]) -> tuple[float, dict[str, int]]:
    """Seconds for one pass over `loader`, and how many samples, tokens, media tokens and target tokens it gave."""
    start = time.perf_counter()
    batches = list(loader)
    elapsed = time.perf_counter() - start
    counts = dict(samples=0, tokens=0, media_tokens=0, target_tokens=0)
    for batch in batches:  # counted outside the timed part
        counts["samples"] += batch["input_ids"].shape[0]
        counts["tokens"] += int(batch["attention_mask"].sum())
        counts["media_tokens"] += int(torch.isin(batch["input_ids"], torch.tensor(media_token_ids)).sum())
        counts["target_tokens"] += int((batch["labels"] != -100).sum())
    return elapsed, counts


def run_benchmark(name: str, args: BenchmarkArguments, data_dir: Path, processor: MultimodalGPTProcessor) -> Result:
    dataset, task_name, overrides = benchmark_data(name, data_dir, args.batch_size * args.num_batches)
    collator: TaskCollator = COLLATORS[task_name](
        processor, task=get_task(task_name, **overrides), max_length=args.max_length
    )
    loader = DataLoader(dataset, batch_size=args.batch_size, collate_fn=collator, num_workers=args.num_workers)
    media_token_ids = [processor.image_token_id, processor.audio_token_id]
    timed_pass(loader, media_token_ids)  # warm-up: file cache, lazy imports, allocator
    passes = [timed_pass(loader, media_token_ids) for _ in range(args.passes)]
    times = [elapsed for elapsed, _ in passes]
    seconds = statistics.median(times)
    counts = passes[0][1]
    if collator.stats.bad_rows or collator.stats.dropped_too_long or collator.stats.truncated:
        logger.warning(f"{name}: {collator.stats}")
    return Result(
        name=f"{name} ({task_name})",
        samples=counts["samples"],
        samples_per_second=counts["samples"] / seconds,
        slowest_fastest=(counts["samples"] / max(times), counts["samples"] / min(times)),
        ms_per_batch=1000 * seconds / len(loader),
        tokens_per_sample=counts["tokens"] / counts["samples"],
        media_tokens_per_sample=counts["media_tokens"] / counts["samples"],
        target_tokens_per_sample=counts["target_tokens"] / counts["samples"],
    )


def print_table(results: list[Result], args: BenchmarkArguments) -> None:
    header = [
        "benchmark (task)",
        "samples/pass",
        "samples/s",
        "min-max",
        "ms/batch",
        "tokens",
        "media tokens",
        "target tokens",
    ]
    rows = [
        [
            result.name,
            str(result.samples),
            f"{result.samples_per_second:.1f}",
            "{:.0f}-{:.0f}".format(*result.slowest_fastest),
            f"{result.ms_per_batch:.1f}",
            f"{result.tokens_per_sample:.1f}",
            f"{result.media_tokens_per_sample:.1f}",
            f"{result.target_tokens_per_sample:.1f}",
        ]
        for result in results
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    print(
        f"\nbatch {args.batch_size}, median of {args.passes} passes, {args.num_workers} workers, "
        f"{args.torch_threads} torch threads, images "
        f"{args.image_size} px / patch {args.patch_size}, audio 16 kHz / frame reduction "
        f"{args.audio_frame_reduction}; token columns are means per sample"
    )
    for row in [header, ["-" * width for width in widths], *rows]:
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |")


def main(argv: list[str] | None = None) -> None:
    # 1. Parse input arguments
    parser = HfArgumentParser(BenchmarkArguments, prog="multimodal-gpt benchmark data", description=__doc__)
    (args,) = parser.parse_args_into_dataclasses(sys.argv[1:] if argv is None else argv)
    unknown = sorted(set(args.benchmarks) - set(BENCHMARKS))
    if unknown:
        raise ValueError(f"Unknown --benchmarks {unknown}: choose among {BENCHMARKS}.")

    # 2. Set up logging and torch's threads
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
        level=logging.INFO,
    )
    torch.set_num_threads(args.torch_threads)

    # 3. Locate the real data
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if not data_dir.is_dir():
        raise FileNotFoundError(f"No data folder at {data_dir}: pass --data_dir or set MMGPT_DATA_DIR.")

    # 4. Train the byte-level BPE tokenizer on the training text
    started = time.perf_counter()
    texts = training_texts(data_dir)
    tokenizer = train_bpe_tokenizer(texts, args.vocab_size, model_max_length=args.max_length)
    logger.info(
        f"Trained a {len(tokenizer)}-token BPE on {len(texts):,} texts in {time.perf_counter() - started:.1f} s"
    )

    # 5. Build the processor
    processor = build_processor(args, tokenizer)

    # 6. Time each benchmark
    results = []
    for name in args.benchmarks:
        results.append(run_benchmark(name, args, data_dir, processor))
        logger.info(f"{results[-1].name}: {results[-1].samples_per_second:.1f} samples/s")

    # 7. Print the table
    print_table(results, args)


if __name__ == "__main__":
    main()
