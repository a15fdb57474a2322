"""The training side: the command-line arguments (`arguments`), the `Trainer` with generation-based evaluation
(`trainer`), one run from data to Hub-ready folder (`run`), scoring a checkpoint (`evaluation`), metrics, presets and
the offline tokenizer, LoRA, distributed-launch checks and model cards."""

from .arguments import DataArguments, ModelArguments, check_data_arguments, check_model_arguments
from .evaluation import EvaluationArguments, evaluate_checkpoint
from .run import run
from .trainer import MultimodalTrainer, generate_predictions

__all__ = [
    "DataArguments",
    "EvaluationArguments",
    "ModelArguments",
    "MultimodalTrainer",
    "check_data_arguments",
    "check_model_arguments",
    "evaluate_checkpoint",
    "generate_predictions",
    "run",
]
