"""The training side: the command-line arguments (`arguments`), the `Trainer` with generation-based evaluation
(`trainer`, `predictions`), one run from data to Hub-ready folder (`run`), scoring a checkpoint (`evaluation`), the
`multimodal-gpt` command (`cli`) and the demo (`demo`), metrics, presets and the offline tokenizer, LoRA,
distributed-launch checks and model cards."""

from .arguments import (
    DataArguments,
    ModelArguments,
    MultimodalTrainingArguments,
    check_data_arguments,
    check_model_arguments,
)
from .evaluation import EvaluationArguments, evaluate_checkpoint
from .predictions import GenerationEvalPrediction, TaskMetrics
from .run import run
from .trainer import MultimodalTrainer

__all__ = [
    "DataArguments",
    "EvaluationArguments",
    "GenerationEvalPrediction",
    "ModelArguments",
    "MultimodalTrainer",
    "MultimodalTrainingArguments",
    "TaskMetrics",
    "check_data_arguments",
    "check_model_arguments",
    "evaluate_checkpoint",
    "run",
]
