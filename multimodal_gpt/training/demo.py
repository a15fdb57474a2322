"""The main job, offline on any machine (`multimodal-gpt demo`, `make demo`): generate the built-in data set,
pretrain a tiny multimodal GPT-2 on it (text, image-text and audio-text), finetune it for captioning, translation and
speech recognition, and print a results table against a model that ignores its input. About 4 minutes on 2 CPU
cores.

    multimodal-gpt demo                                   # writes outputs/demo/
    multimodal-gpt demo --asr_steps 3000                  # any field of DemoArguments
    multimodal-gpt demo --stages pretrain                 # the first stage only

Each stage is a `training.run()`: rerun, a finished stage trains nothing more (its model is evaluated again).
"""

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from ..data.sources import training_texts
from ..data.synthetic import make_demo_splits
from ..data.tasks import get_task
from .arguments import DataArguments, ModelArguments
from .metrics import compute_metrics_for_task
from .run import run
from .tokenizer import train_bpe_tokenizer

TASKS = {  # task -> (headline metric, higher is better)
    "captioning": ("bleu4", True),
    "translation": ("bleu", True),
    "asr": ("wer", False),
}
STAGES = ("pretrain", *TASKS)


@dataclass
class DemoArguments:
    output_dir: str = field(default="outputs/demo", metadata={"help": "Where the checkpoints and results go."})
    preset: str = field(default="tiny", metadata={"help": "Model preset (see multimodal_gpt/training/presets/)."})
    pretrain_steps: int = field(default=600, metadata={"help": "Optimizer steps of pretraining."})
    captioning_steps: int = field(default=800, metadata={"help": "Optimizer steps of captioning finetuning."})
    translation_steps: int = field(default=600, metadata={"help": "Optimizer steps of translation finetuning."})
    asr_steps: int = field(default=1200, metadata={"help": "Optimizer steps of ASR finetuning."})
    batch_size: int = field(default=32, metadata={"help": "Training batch size."})
    learning_rate: float = field(
        default=2e-3, metadata={"help": "Peak learning rate (warmup over a tenth of the steps, then linear decay)."}
    )
    vocab_size: int = field(default=2000, metadata={"help": "Size of the BPE tokenizer trained on the demo text."})
    eval_samples: int | None = field(default=None, metadata={"help": "Score only this many test rows (default all)."})
    seed: int = field(default=0, metadata={"help": "Seed of the training runs."})
    stages: list[str] = field(
        default_factory=lambda: list(STAGES),
        metadata={
            "help": "The stages to run, in order: pretrain, then finetuning for captioning, translation, asr "
            "(several: '--stages pretrain asr'). A finetuning stage without pretrain starts from the pretrained "
            "model already in <output_dir>/pretrain."
        },
    )

    def __post_init__(self):
        unknown = [stage for stage in self.stages if stage not in STAGES]
        if unknown or not self.stages:
            raise ValueError(f"--stages takes some of {', '.join(STAGES)}; got {' '.join(self.stages) or 'none'}.")


def training_arguments(args: DemoArguments, output_dir: Path, steps: int) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=50,
        learning_rate=args.learning_rate,
        warmup_steps=steps // 10,
        weight_decay=0.01,
        logging_steps=max(steps // 10, 1),
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=args.seed,
        do_train=True,
        do_eval=True,
    )


def constant_baseline(task: str, splits, test_samples: int | None = None, candidates: int = 50) -> dict[str, float]:
    """What a model that ignores its input scores: one output for every input. Of the `candidates` most common
    training targets, the one that scores best on the validation split, scored on the test split."""
    metric, higher_is_better = TASKS[task]
    column = "captions" if task == "captioning" else ("target" if task == "translation" else "text")

    def references(split):
        return [value if isinstance(value, list) else [value] for value in splits[split][column]]

    targets = [value[0] if isinstance(value, list) else value for value in splits["train"][column]]
    validation = references("validation")

    def validation_score(constant: str) -> float:
        return compute_metrics_for_task(task, [constant] * len(validation), validation)[metric]

    scores = {constant: validation_score(constant) for constant, _ in Counter(targets).most_common(candidates)}
    best = (max if higher_is_better else min)(scores, key=scores.get)
    test = references("test")[:test_samples]
    return compute_metrics_for_task(task, [best] * len(test), test)


def print_table(rows: list[dict]) -> str:
    header = "| task | metric | trained | ignores its input | training time |\n| --- | --- | --- | --- | --- |"
    lines = [header] + [
        f"| {row['task']} | {row['metric']} | {row['trained']:.3g} | {row['baseline']:.3g} | {row['seconds']:.0f} s |"
        for row in rows
    ]
    table = "\n".join(lines)
    print("\n" + table + "\n")
    return table


def run_demo(args: DemoArguments) -> list[dict[str, Any]]:
    """Run the demo's stages (see the module docstring); returns the results table's rows (one per finetuned task)."""
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pretrain_dir = output_dir / "pretrain"
    if "pretrain" not in args.stages and not (pretrain_dir / "config.json").is_file():
        raise ValueError(
            f"--stages without pretrain finetunes the model in {pretrain_dir}, but there is none: add pretrain."
        )

    # 1. Generate the built-in data set and train one tokenizer on all its training text
    print("Generating the built-in data set...")
    splits = make_demo_splits(seed=0)
    texts = [
        text
        for name, task_splits in splits.items()
        for text in training_texts(task_splits["train"], get_task("pretrain" if name == "pretraining" else name))
    ]
    tokenizer_dir = output_dir / "tokenizer"
    train_bpe_tokenizer(texts, vocab_size=args.vocab_size).save_pretrained(tokenizer_dir)

    # 2. Pretrain: next-token prediction over text, image-text and audio-text in one run
    if "pretrain" in args.stages:
        print(f"Pretraining for {args.pretrain_steps} steps...")
        pretrained = run(
            ModelArguments(preset=args.preset, tokenizer_name_or_path=str(tokenizer_dir)),
            DataArguments(task="pretrain", dataset_name="synthetic", max_eval_samples=args.eval_samples),
            training_arguments(args, pretrain_dir, args.pretrain_steps),
        )
        print(f"Pretrained: validation loss {pretrained['eval_loss']:.3f} after {args.pretrain_steps} steps.")

    # 3. Finetune each task from the pretrained model, and score it on the test split
    rows = [finetune(args, task, splits[task], pretrain_dir) for task in TASKS if task in args.stages]

    # 4. Results table and sample outputs
    table = print_table(rows) if rows else ""
    for row in rows:
        print(f"{row['task']}, first test samples:")
        for line in (output_dir / row["task"] / "predictions_test.jsonl").read_text().splitlines()[:3]:
            sample = json.loads(line)
            expected = sample["references"][0]
            print(f"  input {sample['input'][:60]!r}: predicted {sample['prediction']!r}, expected {expected!r}")
    total = time.perf_counter() - started
    folders = [str(output_dir / stage) for stage in args.stages]
    print(f"\nTotal time {total / 60:.1f} min. Hub-ready checkpoints: {', '.join(folders)}")
    (output_dir / "results.md").write_text(table + "\n")
    (output_dir / "results.json").write_text(
        json.dumps({"rows": rows, "args": asdict(args), "seconds": total}, indent=2)
    )
    return rows


def finetune(args: DemoArguments, task: str, task_splits: Any, pretrain_dir: Path) -> dict[str, Any]:
    """Finetune `task` from the pretrained model, score it on the test split and against the constant baseline."""
    metric, _ = TASKS[task]
    steps = {"captioning": args.captioning_steps, "translation": args.translation_steps, "asr": args.asr_steps}
    print(f"Finetuning {task} for {steps[task]} steps...")
    started = time.perf_counter()
    results = run(
        ModelArguments(model_name_or_path=str(pretrain_dir)),
        DataArguments(
            task=task,
            dataset_name="synthetic",
            eval_split_name=["test"],
            max_new_tokens=32,
            max_eval_samples=args.eval_samples,
        ),
        training_arguments(args, Path(args.output_dir) / task, steps[task]),
    )
    baseline = constant_baseline(task, task_splits, test_samples=args.eval_samples)
    return {
        "task": task,
        "metric": metric,
        "trained": results[f"test_{metric}"],
        "baseline": baseline[metric],
        "seconds": time.perf_counter() - started,
    }


__all__ = ["DemoArguments", "constant_baseline", "print_table", "run_demo"]
