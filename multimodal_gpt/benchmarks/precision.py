"""Does bf16 autocast learn as fp32 does? The `Trainer`'s `--bf16` against fp32 on a short run, every fusion.

    python -m multimodal_gpt.benchmarks.precision                         # captioning, tiny preset, 100 steps
    python -m multimodal_gpt.benchmarks.precision --task asr --steps 200 --fusions mlp,cross_attention

For each fusion, three runs of the same `Trainer` on the built-in synthetic data of `--task` (a new model from
`--preset`, the tokenizer trained on the training text as `train.py` does): fp32 with seed 0, fp32 with seed 1 and
bf16 autocast with seed 0. "Within noise" means that bf16's loss curve stays as close to fp32's (same seed: same
initial weights, same batches) as fp32 with another seed does: over the last `--window` steps, the mean absolute
difference of the losses, bf16 against fp32, is at most that of fp32 seed 1 against fp32 seed 0. Writes
precision.md and precision.json to `--output_dir`.
"""

import argparse
import json
import logging
import shlex
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainingArguments, set_seed

from ..configuration_multimodal_gpt import FUSION_TYPES
from ..data.collators import COLLATORS
from ..data.sources import load_task_data, training_texts
from ..training.arguments import DataArguments
from ..training.presets import build_model_and_processor

logger = logging.getLogger(__name__)

RUNS = {"fp32, seed 0": (False, 0), "fp32, seed 1": (False, 1), "bf16, seed 0": (True, 0)}


def loss_curve(task: str, fusion: str, *, preset: str, steps: int, bf16: bool, seed: int, batch_size: int) -> list:
    """The per-step training losses of one run (see the module docstring)."""
    data = load_task_data(DataArguments(task=task, dataset_name="synthetic"), evaluation=False)
    set_seed(seed)  # the initial weights too: fp32 and bf16 with one seed start from the same model
    model, processor = build_model_and_processor(
        preset, texts=training_texts(data.train, data.task), vocab_size=300, fusion=fusion, max_length=256
    )
    with tempfile.TemporaryDirectory() as output_dir:
        arguments = TrainingArguments(
            output_dir=output_dir,
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            learning_rate=1e-3,
            warmup_steps=steps // 10,
            bf16=bf16,
            use_cpu=True,
            seed=seed,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            remove_unused_columns=False,
            disable_tqdm=True,
        )
        collator = COLLATORS[task](processor=processor, task=data.task, max_length=256)
        trainer = Trainer(model=model, args=arguments, train_dataset=data.train, data_collator=collator)
        trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def compare(curves: dict[str, list[float]], window: int) -> dict[str, Any]:
    """Mean absolute loss differences over the last `window` steps: bf16 and fp32 seed 1, each against fp32 seed 0."""
    reference = curves["fp32, seed 0"][-window:]

    def distance(name: str) -> float:
        return statistics.fmean(abs(a - b) for a, b in zip(curves[name][-window:], reference))

    bf16, noise = distance("bf16, seed 0"), distance("fp32, seed 1")
    return {
        "final_loss": {name: statistics.fmean(curve[-window:]) for name, curve in curves.items()},
        "bf16_vs_fp32": bf16,
        "seed_noise": noise,
        "within_noise": bf16 <= noise,
    }


def markdown(task: str, results: dict[str, Any], command: str, window: int) -> str:
    lines = [
        f"# bf16 autocast against fp32: {task}",
        "",
        f"`{command}`",
        "",
        f"Mean loss over the last {window} steps, and the mean absolute difference of the loss curves there.",
        "",
        "| fusion | fp32 seed 0 | fp32 seed 1 | bf16 seed 0 | bf16 vs fp32 | fp32 seed 1 vs seed 0 | within noise |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for fusion, result in results.items():
        final = result["final_loss"]
        lines.append(
            f"| {fusion} | {final['fp32, seed 0']:.4f} | {final['fp32, seed 1']:.4f} | {final['bf16, seed 0']:.4f} "
            f"| {result['bf16_vs_fp32']:.4f} | {result['seed_noise']:.4f} "
            f"| {'yes' if result['within_noise'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    # 1. Arguments
    parser = argparse.ArgumentParser(
        prog="multimodal-gpt benchmark precision",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", default="captioning", choices=["captioning", "asr", "pretrain"])
    parser.add_argument("--preset", default="tiny", help="The model preset (tiny, small, or a JSON file).")
    parser.add_argument("--fusions", default=",".join(FUSION_TYPES), help="Comma-separated fusions to compare.")
    parser.add_argument("--steps", type=int, default=100, help="Training steps of each run.")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--window", type=int, default=20, help="The last steps compared.")
    parser.add_argument("--output_dir", default="runs/benchmark_precision")
    args = parser.parse_args(argv)
    fusions = [fusion.strip() for fusion in args.fusions.split(",") if fusion.strip()]
    unknown = [fusion for fusion in fusions if fusion not in FUSION_TYPES]
    if unknown or args.window > args.steps or args.steps < 1:
        raise ValueError(f"Check --fusions ({unknown} unknown; choose among {FUSION_TYPES}), --steps and --window.")
    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.INFO)

    # 2. Three runs per fusion
    results = {}
    for fusion in fusions:
        curves = {}
        for name, (bf16, seed) in RUNS.items():
            logger.info("%s: %s", fusion, name)
            curves[name] = loss_curve(
                args.task,
                fusion,
                preset=args.preset,
                steps=args.steps,
                bf16=bf16,
                seed=seed,
                batch_size=args.batch_size,
            )
        results[fusion] = {**compare(curves, args.window), "curves": curves}

    # 3. precision.md and precision.json
    command = shlex.join(
        ["python", "-m", "multimodal_gpt.benchmarks.precision", *(argv if argv is not None else sys.argv[1:])]
    )
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "precision.json").write_text(json.dumps({"command": command, "results": results}, indent=2) + "\n")
    table = markdown(args.task, results, command, args.window)
    (output_dir / "precision.md").write_text(table)
    print(table)
    return results


if __name__ == "__main__":
    main()
