"""Named model configurations (JSON files in `presets/`) and building a fresh model + processor from one."""

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..configuration_multimodal_gpt import MultimodalGPTConfig, add_multimodal_tokens
from ..generation_multimodal_gpt import DEFAULT_MAX_NEW_TOKENS
from ..modeling_multimodal_gpt import MultimodalGPTForConditionalGeneration
from ..processing_multimodal_gpt import MultimodalGPTProcessor
from .tokenizer import load_or_train_tokenizer

PRESET_DIR = Path(__file__).parent / "presets"


def available_presets() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.json"))


def load_preset(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The `MultimodalGPTConfig` keyword arguments of a preset: a name from `presets/` or a JSON file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise ValueError(
            f"Unknown preset {str(name_or_path)!r}: use one of {available_presets()} or a JSON file path."
        )
    preset = json.loads(path.read_text())
    preset.pop("description", None)
    return preset


def preset_config(
    preset: str | os.PathLike,
    *,
    vocab_size: int,
    token_ids: dict[str, int],
    fusion: str | dict[str, str] | None = None,
    max_length: int | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> MultimodalGPTConfig:
    """The `MultimodalGPTConfig` of `preset` for a tokenizer of `vocab_size` tokens whose special-token ids are
    `token_ids` (`bos_token_id`, `eos_token_id`, `pad_token_id`, `image_token_id`, `audio_token_id`).
    `n_positions` is raised to `max_length` if needed; `fusion` and `config_overrides` (e.g. `media_loss_weight`)
    override the preset's."""
    config_kwargs = load_preset(preset) | (config_overrides or {})
    text_config = dict(config_kwargs.pop("text_config"))
    text_config.update({key: token_ids[key] for key in ("bos_token_id", "eos_token_id", "pad_token_id")})
    text_config["vocab_size"] = vocab_size
    if max_length is not None:
        text_config["n_positions"] = max(text_config.get("n_positions", 1024), max_length)
    if fusion is not None:
        config_kwargs["fusion"] = fusion
    return MultimodalGPTConfig(
        text_config=text_config,
        image_token_id=token_ids["image_token_id"] if config_kwargs.get("vision_config") else None,
        audio_token_id=token_ids["audio_token_id"] if config_kwargs.get("audio_config") else None,
        **config_kwargs,
    )


def build_model_and_processor(
    preset: str | os.PathLike,
    *,
    texts: Iterable[str] | None = None,
    tokenizer_name_or_path: str | None = None,
    vocab_size: int = 8000,
    fusion: str | dict[str, str] | None = None,
    max_length: int | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> tuple[MultimodalGPTForConditionalGeneration, MultimodalGPTProcessor]:
    """A new model from `preset` and its processor. The tokenizer is loaded (`tokenizer_name_or_path`) or trained
    offline on `texts` (`vocab_size` tokens); the GPT-2 vocabulary and special-token ids follow it.
    `config_overrides` replace preset values (e.g. `{"media_loss_weight": 1.0}`)."""
    tokenizer = load_or_train_tokenizer(tokenizer_name_or_path, texts, vocab_size=vocab_size)
    token_ids = add_multimodal_tokens(tokenizer)
    token_ids.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    config = preset_config(
        preset,
        vocab_size=len(tokenizer),
        token_ids=token_ids,
        fusion=fusion,
        max_length=max_length,
        config_overrides=config_overrides,
    )
    model = MultimodalGPTForConditionalGeneration(config)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.generation_config, key, token_ids[key])
    model.generation_config.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    return model, MultimodalGPTProcessor.from_config(config, tokenizer)


__all__ = ["available_presets", "build_model_and_processor", "load_preset", "preset_config"]
