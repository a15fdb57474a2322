"""The optional packages a run needs, checked before any work starts.

The package installs without tensorboard, peft or any experiment tracker. Left to itself, a run that needs one of
them fails only when the `Trainer` builds its callbacks or LoRA wraps the model: after the data is loaded and the
model built. `check_optional_packages` names every missing package at once, before any of that, with the command that
installs it (the project's extras: `pip install ".[tensorboard]"`, `pip install ".[peft]"`).
"""

import importlib.util
from collections.abc import Callable

from transformers import TrainingArguments
from transformers.integrations import integration_utils

from .arguments import ModelArguments
from .lora import is_lora_folder

# `--report_to` integration -> (whether it can be imported, how to install it). The project's extras where it has one;
# the tracker's own package otherwise.
REPORTING_PACKAGES: dict[str, tuple[Callable[[], bool], str]] = {
    "tensorboard": (integration_utils.is_tensorboard_available, 'pip install ".[tensorboard]"'),
    "wandb": (integration_utils.is_wandb_available, "pip install wandb"),
    "trackio": (integration_utils.is_trackio_available, "pip install trackio"),
    "mlflow": (integration_utils.is_mlflow_available, "pip install mlflow"),
    "comet_ml": (integration_utils.is_comet_available, "pip install comet_ml"),
    "neptune": (integration_utils.is_neptune_available, "pip install neptune"),
    "clearml": (integration_utils.is_clearml_available, "pip install clearml"),
    "codecarbon": (integration_utils.is_codecarbon_available, "pip install codecarbon"),
    "dagshub": (integration_utils.is_dagshub_available, "pip install dagshub"),
    "dvclive": (integration_utils.is_dvclive_available, "pip install dvclive"),
    "swanlab": (integration_utils.is_swanlab_available, "pip install swanlab"),
    "azure_ml": (integration_utils.is_azureml_available, "pip install azureml-core"),
    "flyte": (integration_utils.is_flytekit_available, "pip install flytekit flytekitplugins-deck-standard"),
    "kubeflow": (integration_utils.is_kubeflow_available, "pip install kubeflow"),
}
PEFT_INSTALL = 'pip install ".[peft]"'


def missing_optional_packages(model_args: ModelArguments, training_args: TrainingArguments) -> list[str]:
    """What the run needs but cannot import: one line per package, `"<what needs it>: <install command>"`."""
    missing = []
    report_to = training_args.report_to or []  # TrainingArguments turns "none" into [] and "all" into what's there
    for integration in [report_to] if isinstance(report_to, str) else report_to:
        if integration in REPORTING_PACKAGES and not REPORTING_PACKAGES[integration][0]():
            missing.append(f"--report_to {integration}: {REPORTING_PACKAGES[integration][1]}")
    path = model_args.model_name_or_path
    needs_peft = model_args.lora_r > 0 or (path is not None and is_lora_folder(path))
    if needs_peft and importlib.util.find_spec("peft") is None:
        what = "--lora_r" if model_args.lora_r > 0 else f"--model_name_or_path {path} (a LoRA adapter)"
        missing.append(f"{what} (LoRA, with peft): {PEFT_INSTALL}")
    return missing


def check_optional_packages(model_args: ModelArguments, training_args: TrainingArguments) -> None:
    """Raise an `ImportError` naming every optional package the run needs but lacks, with the command that installs
    it. Called first thing in `multimodal_gpt.training.run`, so that nothing is loaded or trained for nothing."""
    missing = missing_optional_packages(model_args, training_args)
    if missing:
        raise ImportError(
            "This run needs optional packages that are not installed (run from the repository root):\n  "
            + "\n  ".join(missing)
            + '\nOr drop the option: e.g. --report_to none. All extras at once: pip install ".[tensorboard,peft]".'
        )


__all__ = ["REPORTING_PACKAGES", "check_optional_packages", "missing_optional_packages"]
