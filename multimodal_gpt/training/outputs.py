"""What a run writes beside its model: the loss-curve plot and the predictions file (one line per evaluated row)."""

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..data.tasks import Task

# The validation metric drawn beside the losses, by task: the first of these that evaluation logged.
CURVE_METRICS = ("wer", "bleu", "cider")


def plot_training_curves(log_history: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path | None:
    """Training and evaluation loss against the step, as a PNG, with the validation metric of the task (`eval_wer`,
    `eval_bleu` or `eval_cider`, when a periodic generation-based evaluation logged it) on a second axis, and the
    mean reward of self-critical training's samples (`reward`) on a third. `None` (nothing drawn) when the history
    has no loss."""
    figure = draw_training_curves(log_history, title)
    if figure is None:
        return None
    figure.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return Path(path)


def draw_training_curves(log_history: list[dict[str, Any]], title: str = "") -> Any:
    """The figure of [`plot_training_curves`] (a matplotlib `Figure`), or `None` without any loss."""
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
    handles, labels = axis.get_legend_handles_labels()
    metric, points = _validation_metric(log_history)
    if points:
        metric_axis = axis.twinx()
        metric_axis.plot(*zip(*points), color="tab:green", marker="s", linestyle="--", label=f"validation {metric}")
        metric_axis.set_ylabel(f"validation {metric}")
        more_handles, more_labels = metric_axis.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    rewards = [(entry["step"], entry["reward"]) for entry in log_history if "reward" in entry]
    if rewards:  # self-critical training: the mean reward of the samples, on an axis of its own
        reward_axis = axis.twinx()
        if points:
            reward_axis.spines["right"].set_position(("axes", 1.15))
        reward_axis.plot(*zip(*rewards), color="tab:red", linestyle=":", label="train reward (samples)")
        reward_axis.set_ylabel("train reward")
        more_handles, more_labels = reward_axis.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    axis.legend(handles, labels, loc="upper right")
    figure.tight_layout()
    return figure


def _validation_metric(log_history: list[dict[str, Any]]) -> tuple[str | None, list[tuple[int, float]]]:
    """The task's validation metric over the steps, one point per step (the last value logged at that step)."""
    for metric in CURVE_METRICS:
        points = {entry["step"]: entry[f"eval_{metric}"] for entry in log_history if f"eval_{metric}" in entry}
        if points:
            return metric, sorted(points.items())
    return None, []


@dataclass
class RowPrediction:
    """What evaluation made of one row: written as one line of `predictions_<split>.jsonl`.

    Args:
        index (`int`): the row's position in the evaluated split (0-based).
        input (`str`): the row's input, readable (see [`describe_input`]).
        references (`list[str]`): the row's references (empty where the row has none usable).
        prediction (`str`, *optional*): the generated text; `None` for a skipped row.
        skipped (`str`, *optional*): why the row made no prediction (a corrupt file, an empty target, a prompt longer
            than `max_length`...); `None` for a scored row.
    """

    index: int
    input: str
    references: list[str]
    prediction: str | None = None
    skipped: str | None = None


def write_predictions(path: str | os.PathLike, records: Sequence[RowPrediction]) -> None:
    """One JSON object a line, one line per evaluated row in split order: `index`, `input`, `references`, and the
    `prediction` or, for a skipped row, `"prediction": null` and `skipped` (the reason)."""
    with open(path, "w", encoding="utf-8") as file:
        for record in records:
            line = {key: value for key, value in asdict(record).items() if key != "skipped" or value is not None}
            file.write(json.dumps(line, ensure_ascii=False) + "\n")


def metric_prefix(split_name: str) -> str:
    """The metric key prefix of an evaluation split: `eval` for `validation` (as the Trainer names it), else the
    split's own name (`test_bleu`, `test_2016_flickr_bleu`)."""
    return "eval" if split_name == "validation" else split_name


def describe_input(row: Mapping[str, Any], task: Task) -> str:
    """A short readable description of a row's input for the predictions file: its source sentence and media (paths
    where they have one), joined with ` | `; the task name for a row with neither."""
    parts = []
    source = task.source_text(row)
    if source is not None:
        parts.append(source)
    for column in task.media_columns:
        value = row.get(column)
        if isinstance(value, Mapping) and value.get("path"):
            value = value["path"]
        if value is not None:
            parts.append(value if isinstance(value, str) else f"<{column}>")
    return " | ".join(parts) or task.name


__all__ = [
    "RowPrediction",
    "describe_input",
    "draw_training_curves",
    "metric_prefix",
    "plot_training_curves",
    "write_predictions",
]
