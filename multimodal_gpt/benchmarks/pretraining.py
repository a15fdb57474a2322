"""Does pretraining pay? At equal total compute, one shared pretraining plus a finetuning per task against training
each task from scratch, on the real data, for several seeds.

    python -m multimodal_gpt.benchmarks.pretraining --seeds 0,1              # the measurement (about an hour, 2 CPUs)
    python -m multimodal_gpt.benchmarks.pretraining --quick                  # the machinery in minutes
    python scripts/benchmark_pretraining.py ...                              # the same

Per seed, one pretraining of --pretrain_steps (P) on the built-in mix (recipe `pretrain`: next-token text and
next-element media prediction), then each task (ASR on FSDD, translation on Multi30k, captioning on Flickr8k) is
finetuned from it for --finetune_steps (F) steps, and trained from scratch for F + P / 3 steps: the three scratch runs
together get exactly the steps of the pretrained route (P + 3F). Both arms of a task run the task's recipe (its
augmentation, learning rates, label smoothing, checkpoint averaging, beam search), with the pretraining's tokenizer,
and are scored on the validation split (WER, BLEU, CIDEr-D; for captioning also the number of distinct captions, which
tells a model that describes the images from one that writes its language prior for every image). The claim holds
when the pretrained route wins on at least two of the three tasks in every seed; the script prints whether it does.

Writes `results.json`, `results.md` (the table) and `pretraining_gain.png` (the chart) to --output_dir, with every
run's folder beside them. A run whose folder holds its `benchmark_run.json` is read back, and an interrupted one
resumes from its last checkpoint, so the benchmark picks up where it stopped (--rerun trains everything again).
"""

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import HfArgumentParser, TrainingArguments

from ..training import DataArguments, ModelArguments, run
from ..training.cpu import flush_denormals
from ..training.recipes import parse_arguments

# Per task: the validation metric, and whether higher is better.
HEADLINE = {"asr": ("wer", False), "translation": ("bleu", True), "captioning": ("cider", True)}
# --quick: minutes on 2 CPU cores, to check the machinery (the figures mean nothing).
QUICK = {
    "pretrain_steps": 12,
    "finetune_steps": 6,
    "batch_size": 8,
    "max_eval_samples": 16,
    "max_train_samples": 256,
    "preset": "tiny",
}


@dataclass
class BenchmarkArguments:
    output_dir: str = field(default="runs/pretraining_gain", metadata={"help": "Where every run and the table go."})
    data_dir: str | None = field(default=None, metadata={"help": "Default: $MMGPT_DATA_DIR, else ../shared/data."})
    tasks: str = field(default="asr,translation,captioning", metadata={"help": "Comma-separated finetuning tasks."})
    seeds: str = field(default="0,1", metadata={"help": "Comma-separated seeds: the whole comparison runs per seed."})
    pretrain_steps: int = field(default=400, metadata={"help": "Optimizer steps of the pretraining (P)."})
    finetune_steps: int = field(
        default=200, metadata={"help": "Optimizer steps of each finetuning (F); from scratch: F + P / 3."}
    )
    pretrain_recipe: str = field(default="pretrain", metadata={"help": "The recipe of the pretraining."})
    preset: str | None = field(
        default=None, metadata={"help": "Model preset of the new models (default: the recipes', small)."}
    )
    batch_size: int | None = field(
        default=None, metadata={"help": "Training batch size of every run (default: each recipe's)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Score at most this many validation rows per task (default: all)."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on at most this many rows per run (default: all)."}
    )
    quick: bool = field(
        default=False,
        metadata={
            "help": "Check the machinery in minutes: tiny preset, a few steps, a few rows (the figures mean nothing). "
            f"Sets {', '.join(f'--{name} {value}' for name, value in QUICK.items())} unless given."
        },
    )
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's choice)."})
    rerun: bool = field(default=False, metadata={"help": "Train again even where a run's results already exist."})


@dataclass
class Comparison:
    """One task in one seed: the validation metric of each arm."""

    seed: int
    task: str
    metric: str
    higher_is_better: bool
    pretrained: float
    scratch: float
    pretrained_minutes: float
    scratch_minutes: float
    pretrained_distinct: int | None = None
    scratch_distinct: int | None = None

    @property
    def pretrained_wins(self) -> bool:
        return self.pretrained > self.scratch if self.higher_is_better else self.pretrained < self.scratch


# ----- runs ------------------------------------------------------------------------------------------------------


def training_run(argv: list[str], rerun: bool = False) -> dict[str, Any]:
    """One `run()` from command-line flags (recipes applied as `scripts/train.py` applies them), with its wall time
    and its output folder; a finished one (its `benchmark_run.json` written) is read back unless `rerun`."""
    model_args, data_args, training_args = parse_arguments(
        HfArgumentParser((ModelArguments, DataArguments, TrainingArguments)), argv
    )
    record = Path(training_args.output_dir) / "benchmark_run.json"
    if record.is_file() and not rerun:
        print(f"Reusing {training_args.output_dir} (--rerun to train it again).")
        return json.loads(record.read_text()) | {"output_dir": training_args.output_dir}
    started = time.perf_counter()
    results = run(model_args, data_args, training_args)
    results["wall_seconds"] = time.perf_counter() - started
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(results, indent=2))
    return results | {"output_dir": training_args.output_dir}


def distinct_predictions(output_dir: str | Path, split: str = "validation") -> int | None:
    """How many different predictions a run wrote for the rows of `split` it scored (its `predictions_<split>.jsonl`,
    skipped rows left out); None without that file."""
    path = Path(output_dir) / f"predictions_{split}.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return len({row["prediction"] for row in rows if row.get("prediction") is not None})


def common_flags(args: BenchmarkArguments, seed: int) -> list[str]:
    flags = ["--seed", str(seed), "--report_to", "none", "--disable_tqdm", "true"]
    if args.data_dir:
        flags += ["--data_dir", args.data_dir]
    if args.batch_size:
        flags += ["--per_device_train_batch_size", str(args.batch_size)]
    if args.max_train_samples:
        flags += ["--max_train_samples", str(args.max_train_samples)]
    if not torch.cuda.is_available():
        flags.append("--use_cpu")
    return flags


def task_flags(args: BenchmarkArguments, task: str, output_dir: Path, steps: int) -> list[str]:
    flags = ["--recipe", task, "--output_dir", str(output_dir), "--max_steps", str(steps)]
    flags += ["--eval_split_name", "validation"]
    if args.max_eval_samples:
        flags += ["--max_eval_samples", str(args.max_eval_samples)]
    return flags


def compare_seed(args: BenchmarkArguments, seed: int, tasks: list[str]) -> list[Comparison]:
    """The pretraining of one seed, then both arms of every task."""
    root = Path(args.output_dir) / f"seed{seed}"
    pretrain_dir = root / "pretrain"
    new_model = ["--preset", args.preset] if args.preset else []
    print(f"seed {seed}: pretraining for {args.pretrain_steps} steps...")
    pretrain = training_run(
        ["--recipe", args.pretrain_recipe, "--output_dir", str(pretrain_dir), "--max_steps", str(args.pretrain_steps)]
        + (["--max_eval_samples", str(args.max_eval_samples)] if args.max_eval_samples else [])
        + new_model
        + common_flags(args, seed),
        args.rerun,
    )
    scratch_steps = args.finetune_steps + round(args.pretrain_steps / 3)
    comparisons = []
    for task in tasks:
        metric, higher_is_better = HEADLINE[task]
        print(f"seed {seed}, {task}: finetuning the pretrained model for {args.finetune_steps} steps...")
        pretrained = training_run(
            task_flags(args, task, root / f"{task}_pretrained", args.finetune_steps)
            + ["--model_name_or_path", str(pretrain_dir), "--media_loss_weight", "0"]
            + common_flags(args, seed),
            args.rerun,
        )
        print(f"seed {seed}, {task}: training from scratch for {scratch_steps} steps...")
        scratch = training_run(
            task_flags(args, task, root / f"{task}_scratch", scratch_steps)
            + ["--tokenizer_name_or_path", str(pretrain_dir), *new_model]
            + common_flags(args, seed),
            args.rerun,
        )
        comparisons.append(
            Comparison(
                seed=seed,
                task=task,
                metric=metric,
                higher_is_better=higher_is_better,
                pretrained=pretrained[f"eval_{metric}"],
                scratch=scratch[f"eval_{metric}"],
                pretrained_minutes=(pretrain["wall_seconds"] / len(tasks) + pretrained["wall_seconds"]) / 60,
                scratch_minutes=scratch["wall_seconds"] / 60,
                pretrained_distinct=distinct_predictions(pretrained["output_dir"]),
                scratch_distinct=distinct_predictions(scratch["output_dir"]),
            )
        )
    return comparisons


# ----- the verdict, the table, the chart -------------------------------------------------------------------------


def claim_holds(comparisons: list[Comparison]) -> tuple[bool, dict[int, int]]:
    """Whether the pretrained route wins on at least two tasks (all of them, with fewer than three) in every seed,
    and its wins per seed."""
    wins: dict[int, int] = {}
    tasks: dict[int, int] = {}
    for comparison in comparisons:
        wins[comparison.seed] = wins.get(comparison.seed, 0) + comparison.pretrained_wins
        tasks[comparison.seed] = tasks.get(comparison.seed, 0) + 1
    holds = bool(wins) and all(wins[seed] >= min(2, tasks[seed]) for seed in wins)
    return holds, wins


def markdown_table(args: BenchmarkArguments, comparisons: list[Comparison]) -> str:
    scratch_steps = args.finetune_steps + round(args.pretrain_steps / 3)
    lines = [
        f"| seed | task | metric | from scratch, {scratch_steps} steps | pretrained {args.pretrain_steps} (shared) + "
        f"finetuned {args.finetune_steps} steps | pretrained wins |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in comparisons:
        better = "higher" if row.higher_is_better else "lower"
        scratch, pretrained = f"{row.scratch:.4g} ", f"{row.pretrained:.4g} "
        if row.task == "captioning" and row.scratch_distinct is not None and row.pretrained_distinct is not None:
            scratch += f"({row.scratch_distinct} distinct, "
            pretrained += f"({row.pretrained_distinct} distinct, "
        else:
            scratch, pretrained = scratch + "(", pretrained + "("
        lines.append(
            f"| {row.seed} | {row.task} | {row.metric} ({better} is better) | {scratch}{row.scratch_minutes:.1f} min) "
            f"| {pretrained}{row.pretrained_minutes:.1f} min) | {'yes' if row.pretrained_wins else 'no'} |"
        )
    holds, wins = claim_holds(comparisons)
    per_seed = ", ".join(f"seed {seed}: {count} of {len(HEADLINE)}" for seed, count in sorted(wins.items()))
    verdict = "holds" if holds else "does not hold"
    lines += ["", f"The claim (pretrained wins on at least two tasks in every seed) {verdict}: wins {per_seed}."]
    for task in dict.fromkeys(row.task for row in comparisons):
        lines += ["", mermaid_chart([row for row in comparisons if row.task == task])]
    return "\n".join(lines) + "\n"


def mermaid_chart(rows: list[Comparison]) -> str:
    """One task's bars, scratch and pretrained per seed, as a Mermaid `xychart-beta` block: the chart of
    `pretraining_gain.png` in text, which renders where the Markdown does (a README on the Hub or GitHub)."""
    better = "higher" if rows[0].higher_is_better else "lower"
    labels, values = [], []
    for row in rows:
        labels += [f"seed {row.seed} scratch", f"seed {row.seed} pretrained"]
        values += [row.scratch, row.pretrained]
    top = max(values) * 1.25 or 1.0
    return "\n".join(
        [
            "```mermaid",
            "xychart-beta",
            f'    title "{rows[0].task}: {rows[0].metric}, {better} is better"',
            "    x-axis [" + ", ".join(f'"{label}"' for label in labels) + "]",
            f'    y-axis "{rows[0].metric}" 0 --> {top:.3g}',
            "    bar [" + ", ".join(f"{value:.4g}" for value in values) + "]",
            "```",
        ]
    )


def plot(comparisons: list[Comparison], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(row.task for row in comparisons))
    seeds = sorted({row.seed for row in comparisons})
    figure, axes = plt.subplots(1, len(tasks), figsize=(3.8 * len(tasks), 3.6), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        rows = {row.seed: row for row in comparisons if row.task == task}
        for offset, (arm, colour) in enumerate((("scratch", "#999999"), ("pretrained", "#1f77b4"))):
            values = [getattr(rows[seed], arm) for seed in seeds]
            positions = [index * 3 + offset for index in range(len(seeds))]
            axis.bar(positions, values, color=colour, label=arm)
            for x, value in zip(positions, values):
                axis.text(x, value, f"{value:.3g}", ha="center", va="bottom", fontsize=8)
        axis.set_xticks([index * 3 + 0.5 for index in range(len(seeds))], [f"seed {seed}" for seed in seeds])
        row = next(iter(rows.values()))
        axis.set_title(f"{task} ({row.metric}, {'higher' if row.higher_is_better else 'lower'} is better)")
        axis.set_ylim(0, max(max(r.pretrained, r.scratch) for r in rows.values()) * 1.25 or 1)
    axes[0][0].legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ----- entry point -----------------------------------------------------------------------------------------------


def parse_benchmark_arguments(argv: list[str]) -> BenchmarkArguments:
    parser = HfArgumentParser(BenchmarkArguments, prog="multimodal-gpt benchmark pretraining", description=__doc__)
    (args,) = parser.parse_args_into_dataclasses(argv)
    if args.quick:
        given = {arg.lstrip("-").split("=")[0] for arg in argv if arg.startswith("--")}
        for name, value in QUICK.items():
            if name not in given:
                setattr(args, name, value)
    tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
    unknown = sorted(set(tasks) - set(HEADLINE))
    if unknown or not tasks:
        raise ValueError(f"--tasks {args.tasks!r}: choose among {sorted(HEADLINE)}.")
    if args.pretrain_steps < 1 or args.finetune_steps < 1:
        raise ValueError("--pretrain_steps and --finetune_steps must be at least 1.")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    # 1. Arguments and logging
    args = parse_benchmark_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    flush_denormals()  # as `multimodal-gpt train` does (multimodal_gpt.training.cpu)
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
    seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]

    # 2. Per seed: pretrain once, then both arms of every task
    comparisons = [comparison for seed in seeds for comparison in compare_seed(args, seed, tasks)]

    # 3. Verdict, table, chart, JSON
    root = Path(args.output_dir)
    holds, wins = claim_holds(comparisons)
    table = markdown_table(args, comparisons)
    print("\n" + table)
    (root / "results.md").write_text(table)
    results = {
        "claim_holds": holds,
        "wins_per_seed": wins,
        "rows": [asdict(row) | {"pretrained_wins": row.pretrained_wins} for row in comparisons],
        "args": asdict(args),
    }
    (root / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(comparisons, root / "pretraining_gain.png")
    return results


if __name__ == "__main__":
    main()
