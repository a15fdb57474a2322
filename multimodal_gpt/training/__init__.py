"""The training side: the command-line arguments (`arguments`), the `Trainer` with generation-based evaluation
(`trainer`), one run from data to Hub-ready folder (`run`), metrics, presets and the offline tokenizer, LoRA,
distributed-launch checks and model cards."""

from .arguments import DataArguments, ModelArguments
from .run import run
from .trainer import MultimodalTrainer, generate_predictions

__all__ = ["DataArguments", "ModelArguments", "MultimodalTrainer", "generate_predictions", "run"]
