"""What the model card says about a training run (`training.run()`): its data sets, languages, licence, training
lines, the `Trainer`'s hyperparameters and per-evaluation table (as the `Trainer`'s own card has them, from
`transformers.modelcard`), framework versions and results. [`render_model_card`] turns them into the card."""

import importlib.metadata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers.modelcard import extract_hyperparameters_from_trainer, parse_log_history

from ..data.sources import BUILTIN_SOURCES, DEFAULT_SOURCES
from .arguments import DEFAULT_PRESET
from .model_card import DatasetInfo, _is_card_metric

# The licence of the weights a run writes: this package's (Apache-2.0; its code ships in every checkpoint). The data's
# own licences are named in the card's limitations.
CARD_LICENSE = "apache-2.0"
# The packages whose versions the card records (distribution names), as the Trainer's card does, plus this one.
FRAMEWORKS = {
    "multimodal_gpt": "multimodal-gpt",
    "transformers": "transformers",
    "torch": "torch",
    "datasets": "datasets",
    "tokenizers": "tokenizers",
    "peft": "peft",
}


def datasets_for_run(
    task: str,
    dataset_name: str | None = None,
    *,
    dataset_config_name: str | None = None,
    data_files: Sequence[str] = (),
    source_lang: str | None = None,
    target_lang: str | None = None,
) -> list[DatasetInfo]:
    """The data sets that a training run reads for `task` (its `--dataset_name`, `--dataset_config_name` and
    `--train_file`...; no name: the task's built-in corpus); the first is the one evaluated. Only a `--dataset_name`
    that is a Hub id (not a local folder) is `on_hub`: the card's `datasets` metadata lists those alone."""
    source_lang, target_lang = source_lang or "en", target_lang or "de"
    if data_files:
        return [DatasetInfo(Path(data_files[0]).stem, ", ".join(Path(file).name for file in data_files))]
    if dataset_name not in (None, *BUILTIN_SOURCES):
        local = Path(dataset_name).expanduser()
        if local.exists():  # a folder: its name, never a local path
            return [DatasetInfo(local.resolve().name, local.resolve().name, config=dataset_config_name)]
        return [DatasetInfo(dataset_name, dataset_name, config=dataset_config_name, on_hub=_is_repo_id(dataset_name))]
    if dataset_name == "synthetic":
        return [
            DatasetInfo(
                "multimodal_gpt-synthetic",
                "multimodal_gpt synthetic data",
                config=task,
                description="the package's built-in generated data (coloured shapes with captions, a synthetic "
                "voice speaking digits, a toy language): a demonstration, not real-world data",
            )
        ]
    pair = f"{source_lang}-{target_lang}"
    fsdd = DatasetInfo(
        "fsdd",
        "Free Spoken Digit Dataset (FSDD)",
        description="spoken English digits, 8 kHz, 6 speakers; recordings 5-44 trained on, 45-49 validation",
        license="CC BY-SA 4.0",
    )
    read_speech = DatasetInfo(
        "read_speech",
        "read speech",
        description="141 LJSpeech sentences read by one speaker, 16 kHz",
        license="Apache-2.0 (source repository)",
    )
    flickr_terms = "research and educational use (Flickr terms)"
    multi30k = DatasetInfo(
        "multi30k", "Multi30k", config=pair, description=f"task 1 sentence pairs, {pair}", license=flickr_terms
    )
    flickr8k = DatasetInfo(
        "flickr8k",
        "Flickr8k",
        description="800 training and 100 validation photos, 5 captions each",
        license=flickr_terms,
    )
    corpora = {"fsdd": [fsdd], "read_speech": [read_speech], "multi30k": [multi30k], "flickr8k": [flickr8k]}
    if dataset_name is None:
        dataset_name = DEFAULT_SOURCES.get(task)
    if task == "mmt" and dataset_name == "flickr8k":
        return [multi30k, flickr8k]
    return corpora.get(dataset_name, [multi30k, flickr8k, fsdd, read_speech])


def _is_repo_id(name: str) -> bool:
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def card_languages(data_args: Any) -> list[str] | None:
    """The languages of a run's text: the pair of a translation; English for the built-in corpora and the synthetic
    set; unknown (`None`) for a user's own captions or speech."""
    if data_args.task in ("translation", "mmt"):
        return [data_args.source_lang or "en", data_args.target_lang or "de"]
    builtin = data_args.dataset_name in (None, *BUILTIN_SOURCES) and not data_args.train_file
    return ["en"] if builtin else None


def framework_versions() -> dict[str, str]:
    """The installed versions of this package and the frameworks it runs on (the ones installed)."""
    versions = {}
    for name, distribution in FRAMEWORKS.items():
        try:
            versions[name] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def hyperparameters(trainer: Any) -> dict[str, Any]:
    """The hyperparameters the `Trainer`'s own card lists (`transformers.modelcard`), the optimizer by its flag
    value (`adamw_torch_fused`, not the enum's name)."""
    values = extract_hyperparameters_from_trainer(trainer)
    optimizer = trainer.args.optim
    if "optimizer" in values and hasattr(optimizer, "value"):
        values["optimizer"] = values["optimizer"].replace(str(optimizer), optimizer.value)
    return values


def evaluation_history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evaluations during training, one row each (training loss so far, epoch, step, validation loss and the
    metrics), as the `Trainer`'s card tabulates them (`transformers.modelcard.parse_log_history`)."""
    _, lines, _ = parse_log_history(log_history)
    return lines or []


def self_critical_objective(samples: int) -> str | None:
    """The card's line for `--self_critical_samples` (none for the teacher-forced loss)."""
    if not samples:
        return None
    return f"self-critical sequence training: {samples} samples per row, rewarded by the task's metric"


def run_card_kwargs(
    model_args: Any, data_args: Any, trainer: Any, *, task: str, results: Mapping[str, Any]
) -> dict[str, Any]:
    """[`render_model_card`]'s keyword arguments for a `training.run()`: its `ModelArguments` and `DataArguments`,
    the trainer after training and evaluation (its arguments, its `state.log_history`), the task, the metrics."""
    training_args = trainer.args
    frozen = [
        name
        for name, flag in (
            ("towers", model_args.freeze_towers),
            ("language model", model_args.freeze_language_model),
            ("all but the fusion", model_args.train_only_fusion),
        )
        if flag
    ]
    training = {
        "started from": model_args.model_name_or_path
        or f"a new model, preset `{model_args.preset or DEFAULT_PRESET}`",
        "frozen": ", ".join(frozen) or "nothing",
        "LoRA": f"rank {model_args.lora_r}, alpha {model_args.lora_alpha}" if model_args.lora_r else None,
        "objective": self_critical_objective(model_args.self_critical_samples),
        "steps": trainer.state.global_step,
        "training samples": results.get("train_samples"),
        "precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32",
        "evaluation decoding": "greedy" if data_args.num_beams == 1 else f"beam search, {data_args.num_beams} beams",
        "evaluation output": f"at most {data_args.max_new_tokens} new tokens",
    }
    return {
        "task": task,
        "datasets": datasets_for_run(
            data_args.task,
            data_args.dataset_name,
            dataset_config_name=data_args.dataset_config_name,
            data_files=[file for file in (data_args.train_file, data_args.validation_file) if file],
            source_lang=data_args.source_lang,
            target_lang=data_args.target_lang,
        ),
        "training": {label: value for label, value in training.items() if value is not None},
        "hyperparameters": hyperparameters(trainer),
        "evaluation_history": evaluation_history(trainer.state.log_history),
        "framework_versions": framework_versions(),
        "results": {key: value for key, value in results.items() if _is_card_metric(key, value, task)},
        "license": CARD_LICENSE,
        "language": card_languages(data_args),
    }


__all__ = [
    "CARD_LICENSE",
    "card_languages",
    "datasets_for_run",
    "evaluation_history",
    "framework_versions",
    "hyperparameters",
    "run_card_kwargs",
]
