"""What a run writes beside its model: the loss-curve plot and the predictions file."""

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset


def plot_training_curves(log_history: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path | None:
    """Training and evaluation loss against the step, as a PNG (plus each generation metric, on a second axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry]
    evaluation = [(entry["step"], entry["eval_loss"]) for entry in log_history if "eval_loss" in entry]
    if not train and not evaluation:
        return None
    figure, axis = plt.subplots(figsize=(7, 4))
    for points, label in ((train, "train loss"), (evaluation, "eval loss")):
        if points:
            axis.plot(*zip(*points), marker="o" if len(points) < 30 else None, label=label)
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def write_predictions(
    path: str | os.PathLike, prompts: Sequence[str], predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> None:
    """One JSON object a line: the input, the prediction and its references."""
    with open(path, "w", encoding="utf-8") as file:
        for prompt, prediction, reference in zip(prompts, predictions, references):
            record = {"input": prompt, "prediction": prediction, "references": list(reference)}
            file.write(json.dumps(record, ensure_ascii=False) + "\n")


def describe_inputs(dataset: Dataset, task_name: str) -> list[str]:
    """A short readable description of each row's input, for the predictions file."""
    columns = dataset.column_names
    descriptions = []
    for index in range(len(dataset)):
        row = dataset[index]
        parts = []
        for column in ("source", "image", "audio"):
            if column in columns and row[column] is not None:
                value = row[column]
                parts.append(value if isinstance(value, str) else f"<{column}>")
        descriptions.append(" | ".join(parts) or task_name)
    return descriptions


__all__ = ["describe_inputs", "plot_training_curves", "write_predictions"]
