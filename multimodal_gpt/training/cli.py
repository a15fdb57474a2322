"""The `multimodal-gpt` command (pyproject's `[project.scripts]`; `scripts/*.py` are thin wrappers over it):

    multimodal-gpt train --task asr --output_dir runs/asr                  # or: multimodal-gpt train config.json
    multimodal-gpt train --recipe asr --output_dir runs/asr                # a recipe: its values are defaults
    multimodal-gpt evaluate --model_name_or_path runs/asr --task asr --eval_split_name test
    multimodal-gpt demo                                                    # the main job, offline
    multimodal-gpt benchmark model --batch_size 16                         # any module of multimodal_gpt.benchmarks

Each verb's `--help` lists its flags. A benchmark is a module of `multimodal_gpt.benchmarks` that defines
`main(argv: list[str] | None = None)`; `multimodal-gpt benchmark --help` lists them.
"""

import ast
import json
import logging
import sys
import textwrap
from collections.abc import Callable, Sequence
from importlib import import_module, resources
from typing import Any

import transformers
from transformers import HfArgumentParser

from .arguments import DataArguments, ModelArguments, MultimodalTrainingArguments
from .cpu import flush_denormals
from .demo import DemoArguments, run_demo
from .distributed import end_distributed_run
from .evaluation import EvaluationArguments, evaluate_checkpoint
from .recipes import parse_arguments, parse_config_file
from .run import run

PROGRAM = "multimodal-gpt"
BENCHMARKS_PACKAGE = "multimodal_gpt.benchmarks"


def _parser(dataclass_types: Any, verb: str, description: str) -> HfArgumentParser:
    return HfArgumentParser(dataclass_types, prog=f"{PROGRAM} {verb}", description=description)


def _log_as_the_scripts_do() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()


def _arguments(argv: Sequence[str] | None) -> list[str]:
    return list(sys.argv[1:] if argv is None else argv)


def train_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """`multimodal-gpt train`: pretrain or finetune with the standard `Trainer`, then evaluate with generation (see
    [`run`]); the flags of `ModelArguments`, `DataArguments` and `MultimodalTrainingArguments` (every
    `Seq2SeqTrainingArguments` flag), or one `.json` / `.yaml` file of them. Returns the metrics."""
    # 1. Parse input arguments (command line, or one .json / .yaml file)
    parser = _parser(
        (ModelArguments, DataArguments, MultimodalTrainingArguments),
        "train",
        "Train (pretrain or finetune) a multimodal GPT-2 with the standard Trainer, evaluate it with generation, "
        "and leave a Hub-ready folder (model, processor, card, results, predictions, loss curve). Every "
        "Seq2SeqTrainingArguments flag works. One .json or .yaml file may hold the arguments instead.",
    )
    argv = _arguments(argv)
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        model_args, data_args, training_args = parse_config_file(parser, argv[0])
    else:  # --recipe (multimodal_gpt/training/recipes/): its values are defaults, the flags given win
        model_args, data_args, training_args = parse_arguments(parser, argv)

    # 2. Logging, and denormals flushed before torch starts its worker threads (multimodal_gpt.training.cpu)
    _log_as_the_scripts_do()
    flush_denormals(training_args.flush_denormal)

    # 3. Train, evaluate, predict, push (see multimodal_gpt.training.run for the steps); under torchrun or
    # `accelerate launch`, the process group is destroyed before the process exits
    try:
        return run(model_args, data_args, training_args)
    finally:
        end_distributed_run()


def evaluate_main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """`multimodal-gpt evaluate`: score a checkpoint on any split of any data source, with generation; writes the
    metrics as JSON (printed too) and one predictions file per split. Returns the metrics."""
    # 1. Parse input arguments: the checkpoint, and the data arguments shared with `train`
    parser = _parser(
        (EvaluationArguments, DataArguments),
        "evaluate",
        "Score a checkpoint on any split of any data source with generation (the data flags are train's), and "
        "write the metrics as JSON and each split's predictions, one line per row.",
    )
    evaluation_args, data_args = parser.parse_args_into_dataclasses(_arguments(argv))

    # 2. Logging
    _log_as_the_scripts_do()

    # 3. Generate and score every evaluation split
    metrics = evaluate_checkpoint(evaluation_args, data_args)
    print(json.dumps(metrics, indent=2))
    return metrics


def demo_main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """`multimodal-gpt demo`: the main job, offline (see `multimodal_gpt.training.demo`). Returns the table's rows."""
    parser = _parser(
        DemoArguments,
        "demo",
        "The main job, offline: generate the built-in data set, pretrain a tiny multimodal GPT-2 on it, finetune it "
        "for captioning, translation and speech recognition, and print its results against a model that ignores "
        "its input (about 4 minutes on 2 CPU cores).",
    )
    (args,) = parser.parse_args_into_dataclasses(_arguments(argv))
    _log_as_the_scripts_do()
    return run_demo(args)


def benchmark_names() -> dict[str, str]:
    """The benchmarks, by name: the modules of `multimodal_gpt.benchmarks` that define `main(argv)`, with the first
    line of their docstring. Read from the files (nothing is imported), so a new module is found as it is added."""
    names = {}
    for path in sorted(resources.files(BENCHMARKS_PACKAGE).iterdir(), key=lambda path: path.name):
        if not path.name.endswith(".py") or path.name.startswith("_"):
            continue
        module = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in module.body):
            paragraph = " ".join((ast.get_docstring(module) or "").strip().split("\n\n")[0].split())
            names[path.name.removesuffix(".py")] = paragraph.split(". ")[0].removesuffix(".")
    return names


def _benchmark_usage(names: dict[str, str]) -> str:
    width = max(map(len, names), default=0)
    indent = " " * (width + 4)
    lines = [
        textwrap.fill(summary, 116, initial_indent=f"  {name:<{width}}  ", subsequent_indent=indent)
        for name, summary in names.items()
    ]
    return "\n".join(
        [
            f"usage: {PROGRAM} benchmark <name> [flags]    ({PROGRAM} benchmark <name> --help lists its flags)",
            "",
            "benchmarks (modules of multimodal_gpt.benchmarks with a main):",
            *lines,
        ]
    )


def benchmark_main(argv: Sequence[str] | None = None) -> Any:
    """`multimodal-gpt benchmark <name> [flags]`: run `multimodal_gpt.benchmarks.<name>.main(flags)`."""
    argv = _arguments(argv)
    names = benchmark_names()
    if not argv or argv[0] in ("-h", "--help"):
        print(_benchmark_usage(names))
        return None
    name, flags = argv[0], argv[1:]
    if name not in names:
        raise SystemExit(
            f"{PROGRAM} benchmark: unknown benchmark {name!r}; the benchmarks are {', '.join(names)}.\n\n"
            + _benchmark_usage(names)
        )
    return import_module(f"{BENCHMARKS_PACKAGE}.{name}").main(flags)


VERBS: dict[str, tuple[Callable[[Sequence[str] | None], Any], str]] = {
    "train": (train_main, "train, evaluate and predict with the standard Trainer; a Hub-ready output folder"),
    "evaluate": (evaluate_main, "score a checkpoint on any split of any data source, with generation"),
    "demo": (demo_main, "the main job, offline: pretrain and finetune a tiny model, print its results"),
    "benchmark": (benchmark_main, "run a benchmark (multimodal-gpt benchmark --help lists them)"),
}


def usage() -> str:
    from .. import __version__

    width = max(map(len, VERBS))
    lines = [f"  {verb:<{width}}  {summary}" for verb, (_, summary) in VERBS.items()]
    return "\n".join(
        [
            f"usage: {PROGRAM} <command> [flags]    ({PROGRAM} <command> --help lists its flags)",
            "",
            f"multimodal_gpt {__version__}: a GPT-2 that sees and hears, for Hugging Face Transformers.",
            "",
            "commands:",
            *lines,
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The `multimodal-gpt` console entry point: dispatch to the verb's function; returns the exit status."""
    argv = _arguments(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    verb, flags = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"{PROGRAM}: unknown command {verb!r}.\n\n{usage()}", file=sys.stderr)
        return 2
    VERBS[verb][0](flags)
    return 0


__all__ = ["benchmark_main", "benchmark_names", "demo_main", "evaluate_main", "main", "train_main", "usage"]


if __name__ == "__main__":
    sys.exit(main())
