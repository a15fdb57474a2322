"""Checkpoint averaging (`--average_checkpoints k`): the final model is the mean of the weights of the last `k`
completed checkpoints of the run, as translation systems have long done (Vaswani et al. average the last 5 or 20
checkpoints): a cheap ensemble of nearby points of one trajectory, usually a little better than its last point.

Every checkpoint is read as `from_pretrained` reads it (`load_weights_strictly`: renamed ViT / DINOv2 keys included,
and every parameter must be there). Floating-point tensors are averaged in float64; integer buffers are the last
checkpoint's.
"""

import logging
from pathlib import Path

import torch
from transformers import TrainingArguments

from .checkpoints import checkpoint_folders, checkpoint_problem, load_weights_strictly

logger = logging.getLogger(__name__)


def check_checkpoint_averaging(count: int, args: TrainingArguments) -> None:
    """Fail before training when the run cannot leave `count` checkpoints to average.

    Raises:
        `ValueError`: naming the flag to change.
    """
    if count == 0:
        return
    if count < 2:
        raise ValueError(f"--average_checkpoints {count}: average at least 2 checkpoints (0: off).")
    if args.save_strategy == "no":
        raise ValueError(
            f"--average_checkpoints {count} averages saved checkpoints, but --save_strategy is 'no': save with "
            "--save_strategy steps --save_steps N (the last checkpoints should be near the end)."
        )
    if args.save_total_limit is not None and args.save_total_limit < count:
        raise ValueError(
            f"--save_total_limit {args.save_total_limit} keeps fewer checkpoints than --average_checkpoints {count}."
        )
    if args.load_best_model_at_end:
        raise ValueError("--average_checkpoints and --load_best_model_at_end each choose the final model: drop one.")


def last_checkpoints(output_dir: str | Path, count: int) -> list[Path]:
    """The last `count` completed checkpoints of `output_dir`, oldest first.

    Raises:
        `ValueError`: fewer than `count` completed checkpoints.
    """
    complete = [folder for folder in checkpoint_folders(output_dir) if checkpoint_problem(folder) is None]
    if len(complete) < count:
        raise ValueError(
            f"--average_checkpoints {count}, but {output_dir} holds {len(complete)} completed checkpoint(s): save "
            "more often (--save_steps) or average fewer."
        )
    return complete[-count:]


def average_checkpoints(model: torch.nn.Module, folders: list[Path]) -> None:
    """Loads into `model` the mean of the weights of the checkpoint `folders`."""
    sums: dict[str, torch.Tensor] = {}
    for folder in folders:
        load_weights_strictly(model, folder)
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                sums[name] = sums.get(name, 0) + tensor.detach().to(torch.float64)
    averaged = model.state_dict()  # the last checkpoint's, for the integer buffers
    for name, total in sums.items():
        averaged[name] = (total / len(folders)).to(averaged[name].dtype)
    model.load_state_dict(averaged, strict=True)
    logger.info("The final model is the average of %s.", ", ".join(folder.name for folder in folders))


__all__ = ["average_checkpoints", "check_checkpoint_averaging", "last_checkpoints"]
