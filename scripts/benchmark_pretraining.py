#!/usr/bin/env python
"""Does pretraining help? Pretrain on the real mix (text, image-text, audio-text), finetune each task from it, and
compare with the same task trained from scratch for the same total number of steps (pretraining + finetuning), with
the same tokenizer, batch size and learning-rate schedule.

    python scripts/benchmark_pretraining.py                                   # all three tasks, about an hour
    python scripts/benchmark_pretraining.py --tasks asr --pretrain_steps 50 --finetune_steps 20   # a quick look

Writes `results.json`, `results.md` and `pretraining_gain.png` to --output_dir, and every run's folder beside them.
Two comparisons per task: at equal total compute (the pretrained model's advantage is what its steps on the mixed
data bought over the same number of steps on the task's own data) and at the same finetuning budget (from scratch
for --finetune_steps only). A run whose folder already holds its results is reused, so an interrupted benchmark
picks up where it stopped (--rerun to train everything again).
"""

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import transformers
from transformers import HfArgumentParser, TrainingArguments

from multimodal_gpt.training import DataArguments, ModelArguments, run

HEADLINE = {"asr": ("wer", False), "translation": ("bleu", True), "captioning": ("bleu4", True)}
MAX_NEW_TOKENS = {"asr": 8, "translation": 48, "captioning": 32}


@dataclass
class BenchmarkArguments:
    output_dir: str = field(default="runs/pretraining_gain", metadata={"help": "Where every run and the table go."})
    data_dir: str | None = field(default=None, metadata={"help": "Default: $MMGPT_DATA_DIR, else ../shared/data."})
    tasks: str = field(default="asr,captioning,translation", metadata={"help": "Comma-separated finetuning tasks."})
    preset: str = field(default="small", metadata={"help": "Model preset of every run."})
    pretrain_steps: int = field(default=600, metadata={"help": "Optimizer steps of pretraining."})
    finetune_steps: int = field(default=300, metadata={"help": "Optimizer steps of each finetuning."})
    batch_size: int = field(default=32, metadata={"help": "Training batch size of every run."})
    learning_rate: float = field(
        default=1e-3, metadata={"help": "Peak learning rate (warmup over a tenth of the steps, then linear decay)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of every run."})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's choice)."})
    rerun: bool = field(default=False, metadata={"help": "Train again even where a run's results already exist."})


def training_arguments(args: BenchmarkArguments, output_dir: Path, steps: int) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=32,
        learning_rate=args.learning_rate,
        warmup_steps=max(steps // 10, 1),
        weight_decay=0.01,
        logging_steps=25,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        seed=args.seed,
        do_train=True,
        do_eval=True,
    )


def timed_run(
    model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments, rerun: bool = False
) -> dict:
    """`run()` with its wall time; a finished run (its `benchmark_run.json` written) is read back unless `rerun`."""
    record = Path(training_args.output_dir) / "benchmark_run.json"
    if record.is_file() and not rerun:
        print(f"Reusing {training_args.output_dir} (--rerun to train it again).")
        return json.loads(record.read_text())
    started = time.perf_counter()
    results = run(model_args, data_args, training_args)
    results["wall_seconds"] = time.perf_counter() - started
    record.write_text(json.dumps(results, indent=2))
    return results


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(rows), figsize=(3.6 * len(rows), 3.6), squeeze=False)
    for axis, row in zip(axes[0], rows):
        labels = ["scratch,\nfinetune steps", "scratch,\ntotal steps", "pretrained\n+ finetuned"]
        values = [row["scratch_same_finetune"], row["scratch_same_total"], row["pretrained"]]
        axis.bar(labels, values, color=["#bbbbbb", "#888888", "#1f77b4"])
        better = "higher" if row["higher_is_better"] else "lower"
        axis.set_title(f"{row['task']} ({row['metric']}, {better} is better)")
        axis.set_ylim(0, max(values) * 1.2)  # room for the value labels under the title
        for x, value in enumerate(values):
            axis.text(x, value, f"{value:.3g}", ha="center", va="bottom")
        axis.tick_params(axis="x", labelsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> list[dict]:
    # 1. Arguments and logging
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
    unknown = sorted(set(tasks) - set(HEADLINE))
    if unknown:
        raise ValueError(f"--tasks {unknown} are not among {sorted(HEADLINE)}.")
    root = Path(args.output_dir)
    total_steps = args.pretrain_steps + args.finetune_steps

    # 2. Pretrain once (its tokenizer is then every run's tokenizer)
    pretrain_dir = root / "pretrain"
    print(f"Pretraining for {args.pretrain_steps} steps...")
    pretrain = timed_run(
        ModelArguments(preset=args.preset),
        DataArguments(task="pretrain", data_dir=args.data_dir, max_eval_samples=500),
        training_arguments(args, pretrain_dir, args.pretrain_steps),
        args.rerun,
    )

    # 3. Per task: finetune from the pretrained model; train from scratch for the same total number of steps
    rows = []
    for task in tasks:
        metric, higher_is_better = HEADLINE[task]
        data = dict(task=task, data_dir=args.data_dir, max_new_tokens=MAX_NEW_TOKENS[task])
        print(f"{task}: finetuning the pretrained model for {args.finetune_steps} steps...")
        pretrained = timed_run(
            ModelArguments(model_name_or_path=str(pretrain_dir)),
            DataArguments(**data),
            training_arguments(args, root / f"{task}_pretrained", args.finetune_steps),
            args.rerun,
        )
        scratch_model = ModelArguments(preset=args.preset, tokenizer_name_or_path=str(pretrain_dir))
        print(f"{task}: training from scratch for {total_steps} steps...")
        scratch = timed_run(
            scratch_model,
            DataArguments(**data),
            training_arguments(args, root / f"{task}_scratch", total_steps),
            args.rerun,
        )
        print(f"{task}: training from scratch for {args.finetune_steps} steps...")
        short = timed_run(
            scratch_model,
            DataArguments(**data),
            training_arguments(args, root / f"{task}_scratch_{args.finetune_steps}", args.finetune_steps),
            args.rerun,
        )
        rows.append(
            {
                "task": task,
                "metric": metric,
                "higher_is_better": higher_is_better,
                "pretrained": pretrained[f"eval_{metric}"],
                "scratch_same_total": scratch[f"eval_{metric}"],
                "scratch_same_finetune": short[f"eval_{metric}"],
                "pretrained_minutes": (pretrain["wall_seconds"] + pretrained["wall_seconds"]) / 60,
                "scratch_minutes": scratch["wall_seconds"] / 60,
                "scratch_short_minutes": short["wall_seconds"] / 60,
            }
        )

    # 4. Table, plot, JSON
    header = (
        f"| task | metric | from scratch, {args.finetune_steps} steps | from scratch, {total_steps} steps | "
        f"pretrained {args.pretrain_steps} + finetuned {args.finetune_steps} steps |\n| --- | --- | --- | --- | --- |"
    )
    lines = [
        f"| {row['task']} | {row['metric']} "
        f"| {row['scratch_same_finetune']:.4g} ({row['scratch_short_minutes']:.1f} min) "
        f"| {row['scratch_same_total']:.4g} ({row['scratch_minutes']:.1f} min) "
        f"| {row['pretrained']:.4g} ({row['pretrained_minutes']:.1f} min) |"
        for row in rows
    ]
    table = "\n".join([header, *lines])
    print("\n" + table + "\n")
    (root / "results.md").write_text(table + "\n")
    (root / "results.json").write_text(json.dumps({"rows": rows, "args": asdict(args)}, indent=2))
    plot(rows, root / "pretraining_gain.png")
    return rows


if __name__ == "__main__":
    main()
