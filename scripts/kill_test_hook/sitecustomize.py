"""The kill hook of `scripts/kill_test.py`: with MMGPT_KILL_AT set ("kind" or "kind@step"), this process SIGKILLs
itself at that moment of a `scripts/train.py` run. Python imports it at startup when this folder is on PYTHONPATH
(the kill test puts it there for the attempts it kills); without MMGPT_KILL_AT it does nothing."""

import importlib
import os
import signal
import sys
import traceback
from pathlib import Path

KILL_AT = os.environ.get("MMGPT_KILL_AT")


def die(kind: str, at: int | None, why: str = "") -> None:
    sys.stderr.write(f"KILL_TEST: SIGKILL at {kind}@{at} {why}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def truncate_and_die(kind: str, at: int | None, path: str | os.PathLike) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as file:
        file.truncate(size // 2)
    die(kind, at, f"({path} cut from {size} to {size // 2} bytes)")


def wrap(owner: object, name: str, make) -> None:
    setattr(owner, name, make(getattr(owner, name)))


def install(kind: str, at: int | None) -> None:
    import torch
    import transformers.modeling_utils as modeling_utils
    from transformers.trainer_callback import TrainerState

    # the modules: the package's `run` attribute is the function
    run_module = importlib.import_module("multimodal_gpt.training.run")
    trainer_module = importlib.import_module("multimodal_gpt.training.trainer")
    trainer_class = trainer_module.MultimodalTrainer

    def in_checkpoint(path) -> bool:
        return f"checkpoint-{at}" in Path(path).parts

    def kill() -> None:
        die(kind, at)

    if kind == "startup":  # data loaded, before the model is built
        wrap(run_module, "load_task_data", lambda f: lambda *a, **k: (f(*a, **k), kill())[0])
    elif kind == "step":  # forward and backward of step `at` done, not its optimizer update

        def make_step(f):
            def training_step(self, *a, **k):
                loss = f(self, *a, **k)
                if self.state.global_step == at - 1:
                    kill()
                return loss

            return training_step

        wrap(trainer_class, "training_step", make_step)
    elif kind == "save-begun":
        wrap(
            trainer_module, "begin_checkpoint", lambda f: lambda folder: (f(folder), in_checkpoint(folder) and kill())
        )
    elif kind in ("weights-partial", "final-weights-partial"):

        def make_save_file(f):
            def save_file(tensors, filename, *a, **k):
                f(tensors, filename, *a, **k)
                is_checkpoint = any(part.startswith("checkpoint-") for part in Path(filename).parts)
                if (kind == "final-weights-partial" and not is_checkpoint) or (
                    kind == "weights-partial" and in_checkpoint(filename)
                ):
                    truncate_and_die(kind, at, filename)

            return save_file

        wrap(modeling_utils, "safe_save_file", make_save_file)
    elif kind in ("optimizer-empty", "optimizer-partial", "before-scheduler", "before-rng"):
        target = {"before-scheduler": "scheduler.pt", "before-rng": "rng_state.pth"}.get(kind, "optimizer.pt")

        def make_torch_save(f):
            def save(obj, path, *a, **k):
                if not (isinstance(path, (str, os.PathLike)) and in_checkpoint(path) and Path(path).name == target):
                    return f(obj, path, *a, **k)
                if kind == "optimizer-empty":
                    open(path, "wb").close()
                    die(kind, at, f"({path} empty)")
                if kind == "optimizer-partial":
                    f(obj, path, *a, **k)
                    truncate_and_die(kind, at, path)
                kill()

            return save

        wrap(torch, "save", make_torch_save)
    elif kind == "before-trainer-state":
        wrap(TrainerState, "save_to_json", lambda f: lambda self, p: kill() if in_checkpoint(p) else f(self, p))
    elif kind == "before-marker":
        wrap(trainer_module, "finish_checkpoint", lambda f: lambda folder, s: kill() if s == at else f(folder, s))
    elif kind == "before-rotation":

        def make_rotate(f):
            def rotate(run_dir, *a, **k):
                if (Path(run_dir) / f"checkpoint-{at}" / "checkpoint_complete.json").exists():
                    kill()
                return f(run_dir, *a, **k)

            return rotate

        wrap(trainer_module, "rotate_checkpoints", make_rotate)
    elif kind == "resume-loaded":
        wrap(trainer_module, "load_weights_strictly", lambda f: lambda model, folder: (f(model, folder), kill()))
    elif kind == "before-finished-record":
        wrap(run_module, "mark_run_finished", lambda f: lambda *a, **k: kill())
    elif kind == "evaluation":
        wrap(trainer_class, "evaluate", lambda f: lambda self, *a, **k: kill())
    else:
        raise ValueError(f"Unknown kill moment {kind!r}")


if KILL_AT:
    try:
        kind, _, step = KILL_AT.partition("@")
        install(kind, int(step) if step else None)
    except BaseException:  # a hook that fails must stop the attempt, not let it run unkilled
        traceback.print_exc()
        os._exit(3)
