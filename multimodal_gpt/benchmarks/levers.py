"""Each speed lever measured alone: the same system with the lever in each of its settings, side by side in one
process (the peer benchmark's shapes, models and batches, see `peers`).

    python -m multimodal_gpt.benchmarks.levers --lever labelled_logits_only
    python -m multimodal_gpt.benchmarks.levers --lever vision_token_merge --fusion mlp --rounds 7
    python -m multimodal_gpt.benchmarks.levers --lever all --tiny          # the machinery, in seconds

| lever                               | system (default)              | settings compared                            |
| ----------------------------------- | ----------------------------- | -------------------------------------------- |
| `labelled_logits_only`              | captioning, linear            | on (default), off                            |
| `vision_token_merge`                | captioning, linear            | 1 (default), 2 stack, 2 mean                 |
| `audio_frame_reduction`             | ASR, linear                   | 2, 4 (default), 8 stack; 4 mean              |
| `cross_attention_interval`          | captioning, cross_attention   | 1 (default), 2, 3                            |
| `cross_attention_feed_forward_mult` | captioning, cross_attention   | 4 (default), 2, 0                            |
| `media_feature_cache`               | captioning, resampler         | tower frozen: media; cached features         |
| `freeze_feature_encoder`            | ASR, resampler                | wav2vec2 front end trained; frozen           |
| `bf16`                              | captioning, linear            | fp32; bf16 autocast                          |
| `packing`                           | captioning, linear            | padded rows; packed rows (`max_length` 256)  |
| `torch_compile`                     | captioning, linear            | eager; compiled (see [`compile_system`])     |

How: every setting is its own model (same seed, same weights where the shapes agree) with its own AdamW; one untimed
warm-up round (compilation happens there: compile time is excluded and reported apart), then `--rounds` interleaved
rounds (each times one training step, and one greedy generation where the lever can change it, of every setting),
medians with min and max, and each setting's speed relative to the first. `--task` / `--fusion` pick another system
where the lever applies to it. The `packing` lever's captions have varied lengths (4 to 2 x `text_tokens` words,
a fixed draw): with the benchmark's equal lengths there is no padding to remove. Time nothing while other heavy jobs
share the machine.
"""

import argparse
import dataclasses
import functools
import json
import logging
import random
import shlex
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.collators import CaptioningCollator
from ..modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from ..processing_multimodal_gpt import MultimodalGPTProcessor
from .measure import _timed, compile_system, generate, train_step
from .peer_systems import (
    ISSUE_SHAPES,
    TINY_SHAPES,
    BenchmarkData,
    PeerShapes,
    System,
    benchmark_tokenizer,
    build_ours,
    ours_config,
)

logger = logging.getLogger(__name__)

PACKING_MAX_LENGTH = 256


@dataclass
class Setting:
    """One setting of a lever: how to build its system, and how to run it."""

    label: str
    build: Callable[[], System]
    precision: str = "fp32"
    compiled: bool = False


@dataclass(frozen=True)
class Lever:
    """A lever: its default system (task, fusion), whether it can change generation, and its settings."""

    task: str
    fusion: str
    times_generation: bool
    settings: Callable[..., list[tuple[str, dict[str, Any]]]]


def _config_settings(field: str, values: list[Any], labels: list[str] | None = None) -> Callable[..., list]:
    labels = labels or [f"{field}={value}" for value in values]
    return lambda: [(label, {"config": {field: value}}) for label, value in zip(labels, values)]


LEVERS: dict[str, Lever] = {
    "labelled_logits_only": Lever(
        "captioning", "linear", False, _config_settings("labelled_logits_only", [True, False], ["on", "off"])
    ),
    "vision_token_merge": Lever(
        "captioning",
        "linear",
        True,
        lambda: [
            ("1 (no merge)", {"config": {"vision_token_merge": 1}}),
            ("2 x 2, stack", {"config": {"vision_token_merge": 2, "vision_token_merge_mode": "stack"}}),
            ("2 x 2, mean", {"config": {"vision_token_merge": 2, "vision_token_merge_mode": "mean"}}),
        ],
    ),
    "audio_frame_reduction": Lever(
        "asr",
        "linear",
        True,
        lambda: [
            *[(f"{factor}, stack", {"config": {"audio_frame_reduction": factor}}) for factor in (2, 4, 8)],
            ("4, mean", {"config": {"audio_frame_reduction": 4, "audio_frame_reduction_mode": "mean"}}),
        ],
    ),
    "cross_attention_interval": Lever(
        "captioning", "cross_attention", True, _config_settings("cross_attention_interval", [1, 2, 3])
    ),
    "cross_attention_feed_forward_mult": Lever(
        "captioning", "cross_attention", True, _config_settings("cross_attention_feed_forward_mult", [4, 2, 0])
    ),
    "media_feature_cache": Lever(
        "captioning",
        "resampler",
        True,
        lambda: [("tower frozen, media", {"frozen_tower": True}), ("cached features", {"cached_features": True})],
    ),
    "freeze_feature_encoder": Lever(
        "asr",
        "resampler",
        False,
        lambda: [("front end trained", {}), ("front end frozen", {"frozen_front_end": True})],
    ),
    "bf16": Lever("captioning", "linear", True, lambda: [("fp32", {}), ("bf16 autocast", {"precision": "bf16"})]),
    "packing": Lever("captioning", "linear", False, lambda: [("padded", {}), ("packed", {"packing": True})]),
    "torch_compile": Lever("captioning", "linear", True, lambda: [("eager", {}), ("compiled", {"compiled": True})]),
}


# ----- building the settings --------------------------------------------------------------------------------------


def build_settings(lever: str, task: str, fusion: str, shapes: PeerShapes, seed: int = 0) -> list[Setting]:
    """The settings of `lever` on our `task` model with `fusion`, each building its own system from `seed`."""
    tokenizer = benchmark_tokenizer(shapes.vocab_size)
    data = BenchmarkData.make(tokenizer, shapes, seed)
    settings = []
    for label, options in LEVERS[lever].settings():
        options = dict(options)
        precision, compiled, packing = (
            options.pop("precision", "fp32"),
            options.pop("compiled", False),
            options.pop("packing", None),
        )
        if lever == "packing":
            build = functools.partial(packing_system, fusion, shapes, tokenizer, seed, packed=bool(packing))
        else:
            build = functools.partial(_seeded_ours, seed, task, fusion, shapes, tokenizer, data, options)
        settings.append(Setting(label, build, precision, compiled))
    return settings


def _seeded_ours(seed: int, task: str, fusion: str, shapes: PeerShapes, tokenizer, data, options: dict) -> System:
    torch.manual_seed(seed)
    return build_ours(task, fusion, shapes, tokenizer, data, **options.get("config", {}), **_flags(options))


def _flags(options: dict[str, Any]) -> dict[str, bool]:
    return {key: options[key] for key in ("frozen_tower", "cached_features", "frozen_front_end") if key in options}


def packing_system(fusion: str, shapes: PeerShapes, tokenizer, seed: int, *, packed: bool) -> System:
    """Captioning with captions of varied lengths (4 to 2 x `text_tokens` words, drawn with `seed`), collated into
    padded rows or packed ones (`max_length` 256); the same rows and weights either way."""
    torch.manual_seed(seed)
    config = ours_config("captioning", fusion, shapes, tokenizer)
    model = MultimodalGPTForConditionalGeneration(config)
    processor = MultimodalGPTProcessor.from_config(config, tokenizer)
    data = BenchmarkData.make(tokenizer, shapes, seed)
    words = sorted(token for token in tokenizer.get_vocab() if token.startswith("Ġ") and token[1:].isalpha())
    picker = random.Random(seed)
    rows = [
        {"image": image, "captions": [tokenizer.convert_tokens_to_string(picker.choices(words, k=length)).strip()]}
        for image, length in zip(data.images, [picker.randint(4, 2 * shapes.text_tokens) for _ in data.images])
    ]
    collator = CaptioningCollator(processor, max_length=PACKING_MAX_LENGTH, packing=packed)
    return System(
        name=f"ours_captioning_{fusion}_{'packed' if packed else 'padded'}",
        label="packed" if packed else "padded",
        group="vision",
        model=model,
        train_batch=dict(collator(rows)),
        generation_inputs={},
        processor=processor,
        rows=rows,
    )


# ----- running ----------------------------------------------------------------------------------------------------


def measure_lever(
    settings: list[Setting], *, rounds: int, new_tokens: int, times_generation: bool, device: str = "cpu"
) -> list[dict[str, Any]]:
    """Build each setting's system, warm up (timing the warm-up: compilation), then `rounds` interleaved rounds;
    medians with min and max, and ratios to the first setting."""
    systems = []
    for setting in settings:
        system = setting.build().to(device)
        if setting.compiled:
            compile_system(system)
        seconds, _ = _timed(
            device, functools.partial(_one_round, system, setting, device, new_tokens, times_generation)
        )
        systems.append((setting, system, seconds))
        logger.info("warm-up: %s (%.1f s)", setting.label, seconds)
    times: dict[str, dict[str, list[float]]] = {setting.label: {"train": [], "generation": []} for setting in settings}
    for round_index in range(1, rounds + 1):
        for setting, system, _ in systems:
            train_seconds, loss = _timed(device, functools.partial(train_step, system, device, setting.precision))
            if not torch.isfinite(loss):
                raise RuntimeError(f"{setting.label}: the training loss is {loss.item()}.")
            times[setting.label]["train"].append(train_seconds)
            if times_generation:
                seconds, _ = _timed(device, functools.partial(generate, system, device, setting.precision, new_tokens))
                times[setting.label]["generation"].append(seconds)
        logger.info("round %d/%d done", round_index, rounds)
    return _rows(systems, times, new_tokens)


def _one_round(system: System, setting: Setting, device: str, new_tokens: int, times_generation: bool) -> None:
    train_step(system, device, setting.precision)
    if times_generation:
        generate(system, device, setting.precision, new_tokens)


def _rows(systems: list, times: dict, new_tokens: int) -> list[dict[str, Any]]:
    rows = []
    for setting, system, warm_up in systems:
        train = times[setting.label]["train"]
        samples = len(system.rows) if system.rows is not None else len(system.train_batch["labels"])
        row = {
            "setting": setting.label,
            "warm_up_s": warm_up,
            "decoder_positions": int(system.train_batch["input_ids"].numel()),
            "train_step_s": _spread(train),
            "train_samples_per_s": samples / statistics.median(train),
        }
        generation = times[setting.label]["generation"]
        if generation:
            tokens = new_tokens * len(system.generation_inputs["input_ids"])
            row["generation_s"] = _spread(generation)
            row["generation_tokens_per_s"] = tokens / statistics.median(generation)
        rows.append(row)
    for row in rows:
        row["train_speedup"] = row["train_samples_per_s"] / rows[0]["train_samples_per_s"]
        if "generation_tokens_per_s" in row:
            row["generation_speedup"] = row["generation_tokens_per_s"] / rows[0]["generation_tokens_per_s"]
    return rows


def _spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def markdown(lever: str, task: str, fusion: str, rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        f"## {lever} ({task}, {fusion})",
        "",
        f"`{command}`",
        "",
        "| setting | train step s (min-max) | train samples/s | vs first | generation tokens/s | vs first "
        "| decoder positions per batch | warm-up s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        step = row["train_step_s"]
        generation = (
            f"{row['generation_tokens_per_s']:.0f} | {row['generation_speedup']:.2f}"
            if "generation_tokens_per_s" in row
            else "- | -"
        )
        lines.append(
            f"| {row['setting']} | {step['median']:.3f} ({step['min']:.3f}-{step['max']:.3f}) "
            f"| {row['train_samples_per_s']:.2f} | {row['train_speedup']:.2f} | {generation} "
            f"| {row['decoder_positions']} | {row['warm_up_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="multimodal-gpt benchmark levers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--lever", required=True, choices=[*LEVERS, "all"], help="The lever to measure, or all.")
    parser.add_argument("--task", choices=["captioning", "asr"], help="Our system's task (default: the lever's).")
    parser.add_argument("--fusion", help="Our system's fusion (default: the lever's).")
    parser.add_argument("--rounds", type=int, default=5, help="Timed rounds after the warm-up round.")
    parser.add_argument(
        "--tiny", action="store_true", help="Tiny shapes: checks the machinery; the figures mean nothing."
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--output_dir", default="runs/benchmark_levers", help="Where levers.md and levers.json go.")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    # 1. Arguments and logging
    args = parse_args(argv)
    if args.rounds < 1:
        raise ValueError(f"--rounds must be at least 1, got {args.rounds}.")
    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = TINY_SHAPES if args.tiny else ISSUE_SHAPES
    command = shlex.join(
        ["python", "-m", "multimodal_gpt.benchmarks.levers", *(argv if argv is not None else sys.argv[1:])]
    )

    # 2. Each lever alone: its settings side by side
    results: dict[str, Any] = {"shapes": dataclasses.asdict(shapes), "threads": torch.get_num_threads(), "levers": {}}
    sections = []
    for lever in LEVERS if args.lever == "all" else [args.lever]:
        spec = LEVERS[lever]
        task, fusion = args.task or spec.task, args.fusion or spec.fusion
        logger.info("lever %s: %s, %s", lever, task, fusion)
        settings = build_settings(lever, task, fusion, shapes, args.seed)
        rows = measure_lever(
            settings, rounds=args.rounds, new_tokens=shapes.new_tokens, times_generation=spec.times_generation
        )
        results["levers"][lever] = {"task": task, "fusion": fusion, "settings": rows}
        sections.append(markdown(lever, task, fusion, rows, command))

    # 3. levers.md and levers.json
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "levers.json").write_text(json.dumps(results, indent=2) + "\n")
    (output_dir / "levers.md").write_text("\n".join(sections))
    print("\n".join(sections))
    return results


if __name__ == "__main__":
    main()
