"""Training recipes: named sets of flags (`TrainingArguments`, model and data arguments) shipped as JSON files in
`recipes/`, or any JSON / YAML file of flags, chosen with `--recipe <name or file>`.

A recipe gives the defaults of a run: a flag given on the command line (or in the run's own config file) wins over
it. `run()` records the recipe, its values and the flags that overrode it in `<output_dir>/recipe.json`.

    python scripts/train.py --recipe asr --output_dir runs/asr                  # the ASR recipe as it is
    python scripts/train.py --recipe asr --output_dir runs/asr --max_steps 200  # ... for 200 steps
"""

import argparse
import dataclasses
import enum
import json
import os
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

RECIPE_DIR = Path(__file__).parent / "recipes"
RECIPE_RECORD = "recipe.json"
RECIPE_SUFFIXES = (".json", ".yaml", ".yml")


def available_recipes() -> list[str]:
    """The names of the recipes shipped with the package."""
    return sorted(path.stem for path in RECIPE_DIR.iterdir() if path.suffix in RECIPE_SUFFIXES)


def recipe_path(name_or_path: str | os.PathLike) -> Path:
    """The file of a recipe: a shipped one by name, or a JSON / YAML file."""
    path = Path(name_or_path)
    if path.suffix in RECIPE_SUFFIXES and path.is_file():
        return path
    if not path.suffix:
        for suffix in RECIPE_SUFFIXES:
            if (RECIPE_DIR / f"{name_or_path}{suffix}").is_file():
                return RECIPE_DIR / f"{name_or_path}{suffix}"
    raise ValueError(
        f"Unknown recipe {str(name_or_path)!r}: use one of {available_recipes()} or a .json / .yaml file of flags."
    )


def load_recipe(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The flag values of a recipe (its `description` dropped), as `{flag name: value}`."""
    path = recipe_path(name_or_path)
    values = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    if not isinstance(values, dict):
        raise ValueError(
            f"The recipe {path} must hold a mapping of flag names to values, not {type(values).__name__}."
        )
    values.pop("description", None)
    if "recipe" in values:
        raise ValueError(f"The recipe {path} names another recipe ('recipe'): recipes do not nest.")
    return values


def apply_recipe(parser: HfArgumentParser, values: dict[str, Any], name: str) -> None:
    """Make `values` the defaults of `parser` (flags it sets are no longer required).

    Raises:
        `ValueError`: a value names no flag of the parser.
    """
    actions = {action.dest: action for action in parser._actions}
    unknown = sorted(set(values) - set(actions))
    if unknown:
        raise ValueError(f"The recipe {name!r} sets {unknown}, which are not flags of this script.")
    for dest in values:
        actions[dest].required = False
    parser.set_defaults(**values)


def parse_arguments(parser: HfArgumentParser, argv: list[str]) -> tuple[Any, ...]:
    """`parser.parse_args_into_dataclasses(argv)`, with the values of `--recipe` (when given) as defaults."""
    finder = argparse.ArgumentParser(add_help=False)
    finder.add_argument("--recipe")
    name = finder.parse_known_args(argv)[0].recipe
    if name:
        apply_recipe(parser, load_recipe(name), name)
    return parser.parse_args_into_dataclasses(argv)


def parse_config(parser: HfArgumentParser, config: dict[str, Any]) -> tuple[Any, ...]:
    """`parser.parse_dict(config)` for a run's config file, over the values of its `recipe` entry (when given)."""
    name = config.get("recipe")
    values = {**load_recipe(name), **config} if name else config
    return parser.parse_dict(values)


def parse_config_file(parser: HfArgumentParser, path: str | os.PathLike) -> tuple[Any, ...]:
    """A run's JSON or YAML config file, with its recipe (see [`parse_config`])."""
    text = Path(path).read_text()
    config = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    return parse_config(parser, config)


def check_training_options(model_args: Any, training_args: Any) -> None:
    """Fail before anything loads on the training options that recipes set (staged training, per-module learning
    rates, checkpoint averaging, media loss weights), and turn on DDP's search for unused parameters where staged
    training needs it (the parameters frozen in the first stage get no gradient then)."""
    from .averaging import check_checkpoint_averaging

    if model_args.train_only_fusion_steps < 0:
        raise ValueError(f"--train_only_fusion_steps must be >= 0, got {model_args.train_only_fusion_steps}.")
    if model_args.train_only_fusion_steps and model_args.train_only_fusion:
        raise ValueError(
            "--train_only_fusion freezes all but the fusion for the whole run; --train_only_fusion_steps "
            "for its first steps only: drop one."
        )
    if model_args.train_only_fusion_steps and training_args.world_size > 1:
        if training_args.ddp_find_unused_parameters is False:
            raise ValueError("--train_only_fusion_steps under DDP needs --ddp_find_unused_parameters true.")
        training_args.ddp_find_unused_parameters = True
    for name, rate in module_learning_rates(model_args).items():
        if rate is not None and rate < 0:
            raise ValueError(f"--{name}_learning_rate must be >= 0, got {rate}.")
    if model_args.average_checkpoints and model_args.lora_r:
        raise ValueError("--average_checkpoints averages full checkpoints; a LoRA run saves adapters: drop one.")
    check_checkpoint_averaging(model_args.average_checkpoints, training_args)
    media_loss_weight(model_args)


def module_learning_rates(model_args: Any) -> dict[str, float | None]:
    """`{module: learning rate}` from `--tower_learning_rate` and its siblings (`None`: `--learning_rate`)."""
    return {
        "towers": model_args.tower_learning_rate,
        "fusion": model_args.fusion_learning_rate,
        "embeddings": model_args.embedding_learning_rate,
        "language_model": model_args.language_model_learning_rate,
    }


def media_loss_weight(model_args: Any) -> float | dict[str, float] | None:
    """`--media_loss_weight` as the config takes it: `"0.5"` -> 0.5, `"vision=0.5,audio=1"` -> a dict."""
    spec = model_args.media_loss_weight
    if spec is None:
        return None
    try:
        if "=" not in spec:
            return float(spec)
        entries = (entry.split("=") for entry in spec.split(",") if entry.strip())
        return {modality.strip(): float(weight) for modality, weight in entries}
    except ValueError:
        raise ValueError(
            f"--media_loss_weight {spec!r}: give one weight ('0.5') or one per modality ('vision=0.5,audio=1')."
        ) from None


def write_recipe_record(output_dir: str | os.PathLike, recipe: str | None, *arguments: Any) -> dict[str, Any] | None:
    """`<output_dir>/recipe.json`: the recipe a run used, its values, and the flags that overrode them (with the
    values the run used). `arguments` are the run's argument dataclasses. Nothing without a recipe."""
    if not recipe:
        return None
    values = load_recipe(recipe)
    used = {}
    for instance in arguments:
        used.update({field.name: getattr(instance, field.name) for field in dataclasses.fields(instance)})
    overridden = {name: _plain(used[name]) for name, value in values.items() if _plain(used.get(name)) != value}
    record = {"recipe": recipe, "file": str(recipe_path(recipe)), "values": values, "overridden": overridden}
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / RECIPE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


def _plain(value: Any) -> Any:
    """A parsed flag value as a recipe file writes it (enums by their value)."""
    return value.value if isinstance(value, enum.Enum) else value


__all__ = [
    "RECIPE_DIR",
    "available_recipes",
    "check_training_options",
    "media_loss_weight",
    "module_learning_rates",
    "load_recipe",
    "parse_arguments",
    "parse_config",
    "parse_config_file",
    "write_recipe_record",
]
