"""Checkpoints that survive a crash, and runs that know their state.

The `Trainer` writes a checkpoint file by file, so a process killed during a save leaves a folder that looks like a
checkpoint but is not one (an empty folder, weights without `trainer_state.json`, a 0-byte `optimizer.pt`), and its
resume loads the weights with `load_state_dict(strict=False)`, which restores nothing of a tower whose keys
Transformers 5 renames on load (ViT, DINOv2) and says so in one warning line. Here:

- a checkpoint counts only once complete: [`begin_checkpoint`] marks the folder as being written (and unmarks a
  complete checkpoint of the same step that is about to be overwritten), [`finish_checkpoint`] flushes every file to
  disk and then writes `checkpoint_complete.json` (the size of every file) atomically;
- [`resumable_checkpoint`] picks the most recently completed checkpoint, says which it skipped, and removes the
  interrupted saves of this package (folders left marked as being written, and empty ones);
- [`load_weights_strictly`] reads a checkpoint's weights the way `from_pretrained` does (every key rename of
  Transformers 5 applied) and fails unless every parameter and buffer of the model is restored;
- [`RunLock`] refuses a second process on the same output folder; the operating system releases it when its process
  dies, so a crash leaves nothing to clean up;
- [`mark_run_finished`] / [`finished_run`]: `training_complete.json` in the output folder records the finished
  training (its global step and the plan of steps), so that rerunning the same command does not train again.

`MultimodalTrainer` and `multimodal_gpt.training.run` use these; the `Trainer` subclass is where they hook in.
"""

import json
import logging
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "checkpoint_complete.json"
IN_PROGRESS_MARKER = "checkpoint_in_progress.json"
RUN_COMPLETE_FILE = "training_complete.json"
# `Trainer.push_to_hub` ignores `_*` files
LOCK_FILE = "_run.lock"
CHECKPOINT_PATTERN = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


class IncompleteCheckpointError(ValueError):
    """A checkpoint folder is not a complete checkpoint (an interrupted save, or a file changed since)."""


class OutputDirInUseError(RuntimeError):
    """Another live process runs in the same output folder."""


# ----- files on disk -------------------------------------------------------------------------------------------


def _fsync_directory(folder: Path) -> None:
    """Makes the creation, renaming and removal of entries of `folder` durable (a no-op where unsupported)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open directories
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_json_atomically(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Writes `data` to `path` so that a crash leaves either the old file or the whole new one."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=2)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _file_sizes(folder: Path) -> dict[str, int]:
    markers = {COMPLETE_MARKER, IN_PROGRESS_MARKER}
    return {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in markers
    }


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _flush_to_disk(folder: Path, recursive: bool = True) -> None:
    """Flushes the files of `folder` (and of its subfolders) and their directory entries to disk."""
    entries = sorted(folder.rglob("*") if recursive else folder.iterdir())
    for path in entries:
        if path.is_file():
            _fsync_file(path)
    for directory in [folder, *(path for path in entries if path.is_dir())]:
        _fsync_directory(directory)


# ----- checkpoints ---------------------------------------------------------------------------------------------


def begin_checkpoint(folder: str | os.PathLike) -> None:
    """Marks `folder` as a checkpoint being written, before any of its files is. A complete checkpoint of the same
    step (a rerun from an earlier checkpoint reaches it again) stops counting until it is rewritten."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomically(folder / IN_PROGRESS_MARKER, {"pid": os.getpid(), "started": time.time()})
    (folder / COMPLETE_MARKER).unlink(missing_ok=True)
    _fsync_directory(folder)


def finish_checkpoint(folder: str | os.PathLike, global_step: int) -> None:
    """Flushes every file of `folder` to disk, then marks it complete with the size of each file."""
    folder = Path(folder)
    _flush_to_disk(folder)
    record = {"global_step": global_step, "completed": time.time(), "files": _file_sizes(folder)}
    write_json_atomically(folder / COMPLETE_MARKER, record)
    (folder / IN_PROGRESS_MARKER).unlink(missing_ok=True)
    _fsync_directory(folder)


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why `folder` is not a complete checkpoint, or `None` if it is one."""
    folder = Path(folder)
    if not (folder / COMPLETE_MARKER).is_file():
        if (folder / IN_PROGRESS_MARKER).is_file():
            return "its save was interrupted"
        if not any(folder.iterdir()):
            return "it is empty"
        return f"it has no {COMPLETE_MARKER} (interrupted, or not written by multimodal_gpt)"
    try:
        recorded = json.loads((folder / COMPLETE_MARKER).read_text())["files"]
    except (ValueError, KeyError, OSError) as error:
        return f"its {COMPLETE_MARKER} is unreadable ({error})"
    present = _file_sizes(folder)
    for name, size in recorded.items():
        if name not in present:
            return f"{name} is missing"
        if present[name] != size:
            return f"{name} has {present[name]} bytes where {size} were written"
    return None


def _is_ours_and_interrupted(folder: Path) -> bool:
    return (folder / IN_PROGRESS_MARKER).is_file() or not any(folder.iterdir())


def _completion_time(folder: Path) -> float:
    return json.loads((folder / COMPLETE_MARKER).read_text()).get("completed", 0.0)


def checkpoint_folders(output_dir: str | os.PathLike) -> list[Path]:
    """The `checkpoint-<step>` folders of `output_dir`, by step."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    folders = [path for path in output_dir.iterdir() if path.is_dir() and CHECKPOINT_PATTERN.match(path.name)]
    return sorted(folders, key=lambda path: int(CHECKPOINT_PATTERN.match(path.name).group(1)))


def resumable_checkpoint(output_dir: str | os.PathLike, *, remove_interrupted: bool = True) -> str | None:
    """The most recently completed checkpoint of `output_dir`, or `None`.

    Every other checkpoint folder that is not complete is named in a warning; with `remove_interrupted` (the main
    process only), those that this package left half-written, or empty, are deleted: their step is saved again when
    training gets there. Folders without any marker (another tool's, or an older version's) are left in place.
    """
    complete, skipped = [], []
    for folder in checkpoint_folders(output_dir):
        problem = checkpoint_problem(folder)
        if problem is None:
            complete.append(folder)
            continue
        if remove_interrupted and _is_ours_and_interrupted(folder):
            shutil.rmtree(folder, ignore_errors=True)
            problem += "; removed"
        skipped.append(f"{folder.name} ({problem})")
    if skipped:
        logger.warning("Skipped incomplete checkpoints: %s.", ", ".join(skipped))
    if not complete:
        return None
    newest = max(complete, key=lambda folder: (_completion_time(folder), folder.name))
    logger.warning("Resuming from %s, the most recently completed checkpoint.", newest)
    return str(newest)


def check_resumable(folder: str | os.PathLike) -> None:
    """Raise [`IncompleteCheckpointError`] for an explicit `--resume_from_checkpoint` that is not complete. A folder
    without any marker (another tool's checkpoint) is accepted with a warning: the strict loading still checks it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--resume_from_checkpoint {folder} is not a folder.")
    has_marker = (folder / COMPLETE_MARKER).is_file() or (folder / IN_PROGRESS_MARKER).is_file()
    if not has_marker and any(folder.iterdir()):
        logger.warning("%s has no %s: it cannot be checked for completeness.", folder, COMPLETE_MARKER)
        return
    problem = checkpoint_problem(folder)
    if problem is not None:
        raise IncompleteCheckpointError(
            f"Cannot resume from {folder}: {problem}. Resume from a complete checkpoint (leave out "
            "--resume_from_checkpoint to take the most recently completed one of the output folder)."
        )


def rotate_checkpoints(output_dir: str | os.PathLike, limit: int | None, protected: str | None = None) -> None:
    """Deletes the oldest complete checkpoints beyond `limit` (`save_total_limit`), never the most recently
    completed one nor `protected` (the best model's). Incomplete folders are neither counted nor deleted here."""
    if not limit or limit <= 0:
        return
    complete = [folder for folder in checkpoint_folders(output_dir) if checkpoint_problem(folder) is None]
    if not complete:
        return
    complete.sort(key=lambda folder: (_completion_time(folder), folder.name))
    kept = {complete[-1]} | ({Path(protected)} & set(complete) if protected else set())
    excess = len(complete) - max(limit, len(kept))
    for folder in [folder for folder in complete if folder not in kept][: max(excess, 0)]:
        shutil.rmtree(folder, ignore_errors=True)


# ----- weights -------------------------------------------------------------------------------------------------


def load_weights_strictly(model: PreTrainedModel, folder: str | os.PathLike) -> None:
    """Loads the weights of a checkpoint `folder` into `model`, as `from_pretrained` reads them.

    `from_pretrained` applies the key renames of Transformers 5 (ViT and DINOv2 towers are saved as
    `encoder.layer.N.attention.attention.query`, held as `layers.N.attention.q_proj`), which the `Trainer`'s
    `load_state_dict(strict=False)` does not. Raises `ValueError` when the checkpoint lacks a parameter of the model,
    holds one the model lacks, or one of another shape: a resume must restore every parameter.
    """
    loaded, info = type(model).from_pretrained(folder, config=model.config, output_loading_info=True)
    problems = {
        "missing from the checkpoint": sorted(info["missing_keys"]),
        "unknown to the model": sorted(info["unexpected_keys"]),
        "of another shape": sorted(str(key) for key in info["mismatched_keys"]),
    }
    problems = {kind: keys for kind, keys in problems.items() if keys}
    if problems:
        details = "; ".join(f"{len(keys)} {kind} ({', '.join(keys[:3])}...)" for kind, keys in problems.items())
        raise ValueError(
            f"The weights in {folder} do not fit the model: {details}. Resuming would leave parameters untrained: "
            "resume with the command (and --preset or --model_name_or_path) that wrote the checkpoint."
        )
    model.load_state_dict(loaded.state_dict(), strict=True)


# ----- runs ----------------------------------------------------------------------------------------------------


def training_plan(args: TrainingArguments, train_rows: int) -> dict[str, Any]:
    """What fixes the number of optimizer steps of a run: a rerun with the same plan has nothing more to train."""
    return {
        "train_rows": train_rows,
        "max_steps": args.max_steps,
        "num_train_epochs": args.num_train_epochs,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "world_size": args.world_size,
        "dataloader_drop_last": args.dataloader_drop_last,
    }


def mark_run_finished(output_dir: str | os.PathLike, plan: dict[str, Any], global_step: int) -> None:
    """Records, after the final model is on disk, that the run of `plan` finished training at `global_step`."""
    output_dir = Path(output_dir)
    _flush_to_disk(output_dir, recursive=False)
    record = {"global_step": global_step, "plan": plan, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json_atomically(output_dir / RUN_COMPLETE_FILE, record)


def finished_run(output_dir: str | os.PathLike, plan: dict[str, Any]) -> dict[str, Any] | None:
    """The record of a finished run of the same `plan` in `output_dir`, or `None` (nothing finished there, or a
    different plan, such as more epochs: then training goes on from the last checkpoint)."""
    path = Path(output_dir) / RUN_COMPLETE_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("plan") == plan else None


def forget_finished_run(output_dir: str | os.PathLike) -> None:
    """Training starts again in `output_dir` (another plan): its final model is about to be rewritten."""
    path = Path(output_dir) / RUN_COMPLETE_FILE
    if path.is_file():
        path.unlink()
        _fsync_directory(path.parent)


class RunLock:
    """An exclusive lock on an output folder for the life of a run: a second process is refused with
    [`OutputDirInUseError`] naming the first. The operating system drops the lock when its process ends, even by
    SIGKILL, so a crashed run never blocks the next one; a run that ends normally also removes the lock file.

    ```py
    >>> with RunLock("runs/asr"):
    ...     trainer.train()
    ```
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._descriptor: int | None = None

    def __enter__(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = _try_lock(descriptor)
            except OSError as error:  # a file system without locks (some network file systems)
                os.close(descriptor)
                logger.warning("Cannot lock %s (%s): nothing stops a second run on this folder.", self.path, error)
                return self
            if not locked:
                holder = self.path.read_text(errors="replace").strip() or "unknown"
                os.close(descriptor)
                raise OutputDirInUseError(
                    f"{self.folder} is in use by another run ({holder}). Wait for it to end, or choose another "
                    "--output_dir."
                )
            # A run that ended between our open and lock may have removed the file: lock the file at the path
            if _same_file(descriptor, self.path):
                break
            os.close(descriptor)
        holder = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
        os.ftruncate(descriptor, 0)
        os.write(descriptor, (holder + " ".join(sys.argv)).encode())
        self._descriptor = descriptor
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._descriptor is None:
            return
        if fcntl is not None:  # Windows cannot remove an open file; the lock file stays there, unlocked
            self.path.unlink(missing_ok=True)
        os.close(self._descriptor)
        self._descriptor = None


def _try_lock(descriptor: int) -> bool:
    """`True` once locked, `False` when another process holds the lock; other `OSError`s propagate."""
    try:
        if fcntl is not None:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
    except BlockingIOError:
        return False
    except PermissionError:  # what msvcrt raises for a region locked by another process
        return False
    return True


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)


__all__ = [
    "IncompleteCheckpointError",
    "OutputDirInUseError",
    "RunLock",
    "begin_checkpoint",
    "check_resumable",
    "checkpoint_problem",
    "finish_checkpoint",
    "finished_run",
    "forget_finished_run",
    "load_weights_strictly",
    "mark_run_finished",
    "resumable_checkpoint",
    "rotate_checkpoints",
    "training_plan",
]
