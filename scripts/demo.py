#!/usr/bin/env python
"""The main job, offline on any machine: generate the built-in data set, pretrain a tiny multimodal GPT-2 on it
(text, image-text and audio-text), finetune it for captioning, translation and speech recognition, and print a
results table against a model that ignores its input. About 4 minutes on 2 CPU cores.

    python scripts/demo.py                       # writes outputs/demo/
    python scripts/demo.py --asr_steps 3000      # any field of DemoArguments
"""

import json
import logging
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import transformers
from transformers import HfArgumentParser, TrainingArguments

from multimodal_gpt.data.sources import training_texts
from multimodal_gpt.data.synthetic import make_demo_splits
from multimodal_gpt.data.tasks import get_task
from multimodal_gpt.training import DataArguments, ModelArguments, run
from multimodal_gpt.training.metrics import compute_metrics_for_task
from multimodal_gpt.training.tokenizer import train_bpe_tokenizer

TASKS = {  # task -> (headline metric, higher is better)
    "captioning": ("bleu4", True),
    "translation": ("bleu", True),
    "asr": ("wer", False),
}


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


def main(argv: list[str] | None = None) -> list[dict]:
    # 1. Parse input arguments
    (args,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    # 2. Generate the built-in data set and train one tokenizer on all its training text
    print("Generating the built-in data set...")
    splits = make_demo_splits(seed=0)
    texts = [
        text
        for name, task_splits in splits.items()
        for text in training_texts(task_splits["train"], get_task("pretrain" if name == "pretraining" else name))
    ]
    tokenizer_dir = output_dir / "tokenizer"
    train_bpe_tokenizer(texts, vocab_size=args.vocab_size).save_pretrained(tokenizer_dir)

    # 3. Pretrain: next-token prediction over text, image-text and audio-text in one run
    print(f"Pretraining for {args.pretrain_steps} steps...")
    pretrain_dir = output_dir / "pretrain"
    run(
        ModelArguments(preset=args.preset, tokenizer_name_or_path=str(tokenizer_dir)),
        DataArguments(task="pretrain", dataset_name="synthetic", max_eval_samples=args.eval_samples),
        training_arguments(args, pretrain_dir, args.pretrain_steps),
    )

    # 4. Finetune each task from the pretrained model, and score it on the test split
    rows = []
    steps = {"captioning": args.captioning_steps, "translation": args.translation_steps, "asr": args.asr_steps}
    for task, (metric, _) in TASKS.items():
        print(f"Finetuning {task} for {steps[task]} steps...")
        task_started = time.perf_counter()
        results = run(
            ModelArguments(model_name_or_path=str(pretrain_dir)),
            DataArguments(
                task=task,
                dataset_name="synthetic",
                eval_split_name=["test"],
                max_new_tokens=32,
                max_eval_samples=args.eval_samples,
            ),
            training_arguments(args, output_dir / task, steps[task]),
        )
        baseline = constant_baseline(task, splits[task], test_samples=args.eval_samples)
        rows.append(
            {
                "task": task,
                "metric": metric,
                "trained": results[f"test_{metric}"],
                "baseline": baseline[metric],
                "seconds": time.perf_counter() - task_started,
            }
        )

    # 5. Results table and sample outputs
    table = print_table(rows)
    for task in TASKS:
        print(f"{task}, first test samples:")
        for line in (output_dir / task / "predictions_test.jsonl").read_text().splitlines()[:3]:
            sample = json.loads(line)
            expected = sample["references"][0]
            print(f"  input {sample['input'][:60]!r}: predicted {sample['prediction']!r}, expected {expected!r}")
    total = time.perf_counter() - started
    print(f"\nTotal time {total / 60:.1f} min. Hub-ready checkpoints: {', '.join(str(output_dir / t) for t in TASKS)}")
    (output_dir / "results.md").write_text(table + "\n")
    (output_dir / "results.json").write_text(
        json.dumps({"rows": rows, "args": asdict(args), "seconds": total}, indent=2)
    )
    return rows


if __name__ == "__main__":
    main()
